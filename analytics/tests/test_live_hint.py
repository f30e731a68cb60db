"""A booking or payment change tells open dashboards, once committed, and only then."""
import pytest
from django.db import transaction
from django.utils import timezone

from analytics.tests.helpers import booking
from inbox import events
from tests.factories import make_customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(monkeypatch):
    sent = []
    monkeypatch.setattr(events, "_publish", lambda items: sent.extend(frame for _, frame in items))
    return sent


def test_a_saved_booking_hints_after_commit(published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        made = booking(make_customer(), status="confirmed", confirmed_at=timezone.now(),
                       event_at=timezone.now(), total=500)
        assert published == []  # nothing before the commit
    assert {"type": "analytics.changed", "data": {"model": "booking"}} in published
    published.clear()
    with django_capture_on_commit_callbacks(execute=True):
        made.delete()
    assert published == [{"type": "analytics.changed", "data": {"model": "booking"}}]


def test_a_rolled_back_booking_hints_nothing(published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                booking(make_customer(), status="confirmed", confirmed_at=timezone.now(),
                        event_at=timezone.now(), total=500)
                raise RuntimeError("undone")
    assert published == []
