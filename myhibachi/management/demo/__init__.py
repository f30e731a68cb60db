"""What seed_demo writes beyond customers, bookings and conversations, one module per channel,
each shaped like what that channel's real adapter stores (so the demo looks like use, not a mock):

- phone.py: SMS and calls, through channels_ingest/ringcentral/records.py's own parsing;
- chatbot.py: website chat lines from a visitor, the chatbot's sessions and their transcripts;
- mail.py: what SendGrid was given and said back (replies, booking mail, campaigns).

Everything is drawn from the caller's seeded random.Random, so the same seed gives the same data.
"""
from django.db import connection

from inbox import sql


def insert(objs: list) -> list:
    """Write unsaved rows of one model, every column, and set their ids. On PostgreSQL with
    bulk_create, which sends many rows as one array per column (UNNEST); elsewhere with inbox/sql.py's
    hand-written INSERT, since building the ORM's statements (a placeholder per value) cost the seed
    more time than the database spent on them. Foreign keys must be set by id or to saved rows."""
    if not objs:
        return objs
    model = type(objs[0])
    if connection.vendor == "postgresql":
        return model.objects.bulk_create(objs, batch_size=5000)
    sql.insert(objs, tuple(f.name for f in model._meta.concrete_fields if not f.primary_key))
    return objs
