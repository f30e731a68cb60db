"""inbox/sql.py: the hand-written statements keep PostgreSQL's parameter limit by design."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inbox import receiving, sql
from inbox.models import Conversation, Message
from tests.factories import make_customer

pytestmark = pytest.mark.django_db


def _messages(count):
    customer = make_customer("many@example.com")
    conversation = Conversation.objects.create(customer=customer, last_activity_at=timezone.now())
    return [Message(conversation=conversation, customer=customer, channel="email", direction="inbound",
                    text=f"message {n}", external_id=f"many-{n}", created_at=timezone.now())
            for n in range(count)]


def test_insert_splits_rows_so_no_statement_passes_the_parameter_limit():
    columns = len(receiving.INBOUND_FIELDS)
    rows = sql.MAX_PARAMETERS // columns + 7  # one statement would need more than the limit
    messages = _messages(rows)
    with CaptureQueriesContext(connection) as queries:
        sql.insert(messages, receiving.INBOUND_FIELDS)
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    if connection.vendor == "postgresql":
        assert len(inserts) == 1 and "UNNEST" in inserts[0]  # one array parameter per column, any number of rows
    elif connection.features.can_return_rows_from_bulk_insert:
        assert len(inserts) == 2  # split by the limit, whatever size the caller's group has
    assert Message.objects.filter(external_id__startswith="many-").count() == rows
    assert all(m.pk is not None for m in messages)
    assert len({m.pk for m in messages}) == rows


@pytest.mark.postgres  # elsewhere update_many is Django's bulk_update
def test_update_many_writes_every_row_past_the_parameter_limit():
    messages = _messages(sql.MAX_PARAMETERS // 3 + 5)  # id + two columns per row
    sql.insert(messages, receiving.INBOUND_FIELDS)
    for message in messages:
        message.text, message.delivery_status = "changed", "failed"
    sql.update_many(messages, ["text", "delivery_status"])
    assert Message.objects.filter(external_id__startswith="many-", text="changed", delivery_status="failed").count() \
        == len(messages)


def test_insert_gives_each_object_its_own_row_with_every_value_as_written():
    messages = _messages(300)
    for n, message in enumerate(messages):
        message.metadata = {"n": n, "to": [f"+1415555{n:04d}"], "note": 'quote " and \\ backslash', "none": None}
        message.subject = "" if n % 2 else f"Subject {n} – ünïcode {{braces}}"
        message.external_id = None if n % 7 == 0 else f"many-{n}"
        message.created_at = timezone.now() - timedelta(minutes=n)
    sql.insert(messages, receiving.INBOUND_FIELDS)
    stored = Message.objects.in_bulk([m.pk for m in messages])
    for message in messages:
        row = stored[message.pk]
        assert (row.metadata, row.subject, row.external_id, row.created_at, row.text) == \
            (message.metadata, message.subject, message.external_id, message.created_at, message.text)
