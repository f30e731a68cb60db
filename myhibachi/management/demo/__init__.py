"""What seed_demo writes beyond customers, bookings and conversations, one module per channel,
each shaped like what that channel's real adapter stores (so the demo looks like use, not a mock):

- phone.py: SMS and calls, through channels_ingest/ringcentral/records.py's own parsing;
- chatbot.py: website chat lines from a visitor, the chatbot's sessions and their transcripts;
- mail.py: what SendGrid was given and said back (replies, booking mail, campaigns).

Everything is drawn from the caller's seeded random.Random, so the same seed gives the same data.
"""
from inbox import sql


def insert(objs: list) -> list:
    """Write unsaved rows of one model, every column, with inbox/sql.py's hand-written INSERT, and set
    their ids (as bulk_create does): on SQLite the ORM's statement building cost the seed more time
    than the database spent on them; on PostgreSQL both send a column as one array (UNNEST).
    Foreign keys must be set by id or to saved rows by then."""
    if objs:
        sql.insert(objs, tuple(f.name for f in type(objs[0])._meta.concrete_fields if not f.primary_key))
    return objs
