"""The webhook acknowledges instant-SMS notifications after one INSERT; store runs store them in batches.
Nothing acknowledged is ever lost, nothing is stored twice, and storing a batch costs the same number
of statements whatever its size."""
import json
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from channels_ingest.base import counted
from channels_ingest.models import PendingNotification
from channels_ingest.ringcentral import webhooks
from channels_ingest.ringcentral.sync import sync_messages
from channels_ingest.ringcentral.tasks import store_notifications
from inbox.models import Message
from tests.concurrency import race

from .conftest import RC_VERIFICATION_TOKEN

URL = "/ringcentral/webhook/"
# SQLite (newcomer mode) takes at most 999 parameters a statement: 100 new conversations are two INSERTs.
SPLIT_BY_PARAMETER_LIMIT = 0 if connection.vendor == "postgresql" else 1


def notify(client, payload):
    return client.post(URL, data=json.dumps(payload), content_type="application/json",
                       HTTP_VERIFICATION_TOKEN=RC_VERIFICATION_TOKEN)


def queue(client, ringcentral, count, *, first=0):
    """count notifications from count different numbers, acknowledged and not stored yet."""
    for n in range(first, first + count):
        record = ringcentral.add_message(from_number=f"+1415555{n:04d}", text=f"Party for {n}?")
        assert notify(client, ringcentral.notification(record)).json() == {"queued": 1}


def sms():
    return Message.objects.filter(channel="sms")


def test_the_webhook_answers_after_one_insert_and_the_sms_is_stored_right_after(
        client, ringcentral, django_assert_num_queries):
    record = ringcentral.add_message(from_number="+14155550123", text="Do you do weddings?")
    with TestCase.captureOnCommitCallbacks() as started:
        with django_assert_num_queries(1):
            response = notify(client, ringcentral.notification(record))
    assert response.status_code == 200 and response.json() == {"queued": 1}
    assert not sms().exists()
    assert json.loads(PendingNotification.objects.get().body)["body"]["id"] == str(record["id"])

    for run in started:  # the store run the webhook queued on commit (a worker's, in production)
        run()
    message = sms().get()
    assert (message.text, message.external_id, message.metadata["from"]) == (
        "Do you do weddings?", str(record["id"]), "+14155550123")
    assert not PendingNotification.objects.exists()
    assert counted("ringcentral", "accepted") == 1


def test_a_notification_whose_store_run_was_lost_is_stored_by_the_next_one(client, ringcentral):
    queue(client, ringcentral, 3)  # acknowledged; their runs never came (the broker was away)
    assert PendingNotification.objects.count() == 3 and not sms().exists()
    assert store_notifications()["accepted"] == 3  # beat's run, a minute later
    assert sms().count() == 3 and not PendingNotification.objects.exists()


def test_a_run_that_fails_half_way_stores_nothing_and_the_next_stores_everything_once(client, ringcentral):
    queue(client, ringcentral, 4)
    with mock.patch.object(webhooks, "after_ingest", side_effect=RuntimeError("worker lost its database")):
        totals = store_notifications()
    assert totals["accepted"] == 0
    assert not sms().exists()  # rolled back with the deletions: every row is still queued
    assert list(PendingNotification.objects.values_list("attempts", flat=True)) == [1, 1, 1, 1]
    assert "worker lost its database" in PendingNotification.objects.first().last_error

    assert store_notifications()["accepted"] == 4
    assert sms().count() == 4 and not PendingNotification.objects.exists()
    assert counted("ringcentral", "accepted") == 4


def test_a_notification_that_keeps_failing_is_kept_for_ops_and_the_sync_still_brings_its_sms(
        client, ringcentral):
    queue(client, ringcentral, 3)
    poison = ringcentral.messages[1]["id"]
    real_dispatch = webhooks.dispatch

    def dispatch(source, events):
        if any(getattr(event, "external_id", None) == str(poison) for event in events):
            raise RuntimeError("cannot store this one")
        return real_dispatch(source, events)

    with mock.patch.object(webhooks, "dispatch", side_effect=dispatch):
        for _ in range(webhooks.MAX_ATTEMPTS + 2):
            store_notifications()
    assert sms().count() == 2
    kept = PendingNotification.objects.get()
    assert kept.attempts == webhooks.MAX_ATTEMPTS and "cannot store this one" in kept.last_error
    assert counted("ringcentral", "failed") == 1

    assert sync_messages().stored == 1  # the message-sync reads RingCentral's store: nothing is missing
    assert sms().count() == 3


def test_a_notification_during_a_run_is_left_to_it_and_one_after_it_queues_its_own(client, ringcentral):
    cache.add(webhooks.STORE_RUNNING, 1)  # a run is storing a batch
    with TestCase.captureOnCommitCallbacks(execute=True):
        queue(client, ringcentral, 1)
    assert PendingNotification.objects.count() == 1  # no second run: the running one takes it next
    store_notifications()
    assert sms().count() == 1
    with TestCase.captureOnCommitCallbacks(execute=True):  # the run has let go: this one queues a run
        queue(client, ringcentral, 1, first=1)
    assert sms().count() == 2 and not PendingNotification.objects.exists()


def test_a_notification_committed_as_a_run_finds_nothing_left_is_still_stored_by_it(client, ringcentral):
    late = ringcentral.notification(ringcentral.add_message(text="Just in time?"))
    real = webhooks._store_batch
    claims = []

    def store_batch(totals):
        claimed = real(totals)
        if not claims:  # the run has found nothing left; a webhook commits now, its run not queued
            PendingNotification.objects.create(body=json.dumps(late))
        claims.append(claimed)
        return claimed

    with mock.patch.object(webhooks, "_store_batch", side_effect=store_batch):
        store_notifications()
    assert claims == [0, 1, 0] and sms().get().text == "Just in time?"


def test_a_workers_run_gathers_what_arrives_into_batches_and_waits_a_moment_for_more(client, ringcentral):
    queue(client, ringcentral, 2)
    clock, arrivals, claims = [0.0], iter([3, 0, 4]), []  # notifications arriving during each wait
    real = webhooks._store_batch

    def sleep(seconds):
        clock[0] += seconds
        arriving = next(arrivals, 0)
        if arriving:
            queue(client, ringcentral, arriving, first=100 + len(claims) * 10)

    def store_batch(totals):
        claims.append(real(totals))
        return claims[-1]

    with mock.patch.object(webhooks.time, "sleep", side_effect=sleep), \
            mock.patch.object(webhooks.time, "monotonic", side_effect=lambda: clock[0]), \
            mock.patch.object(webhooks, "_store_batch", side_effect=store_batch):
        totals = webhooks.store_pending(interval=0.1, linger=0.3)
    assert [n for n in claims if n] == [2, 3, 4]  # one batch per interval, one run for all of them
    assert claims[-4:] == [0, 0, 0, 0] and clock[0] >= 0.3  # then it looked for a while before ending
    assert totals["accepted"] == sms().count() == 9


def test_a_notification_synced_before_its_store_run_is_stored_once(client, ringcentral):
    queue(client, ringcentral, 1)
    assert sync_messages().stored == 1
    assert store_notifications()["duplicates"] == 1
    assert sms().count() == 1 and not PendingNotification.objects.exists()


def test_only_instant_sms_notifications_are_queued(client, ringcentral):
    store_event = {"event": "/restapi/v1.0/account/~/extension/~/message-store", "body": {"changes": []}}
    assert notify(client, store_event).json() == {"accepted": 0, "duplicates": 0, "invalid": 0, "updated": 0,
                                                 "unmatched": 0}
    unreadable = ringcentral.notification(ringcentral.add_message(text="x"))
    del unreadable["body"]["id"]
    assert notify(client, unreadable).status_code == 400  # refused now, not a failed store later
    assert not PendingNotification.objects.exists()


def _store_queries(client, ringcentral, count, first):
    queue(client, ringcentral, count, first=first)
    with CaptureQueriesContext(connection) as queries:
        assert store_notifications()["accepted"] == count
    return len(queries)


def test_storing_a_batch_takes_the_same_statements_for_10_or_100_notifications(client, ringcentral):
    _store_queries(client, ringcentral, 1, first=0)  # today's count rows exist from here on
    ten = _store_queries(client, ringcentral, 10, first=100)
    hundred = _store_queries(client, ringcentral, 100, first=200)
    assert ten <= 21
    assert hundred - ten == SPLIT_BY_PARAMETER_LIMIT


def _sync_queries(ringcentral, count, first):
    for n in range(first, first + count):
        ringcentral.add_message(from_number=f"+1415556{n:04d}", text=f"Synced {n}")
    with CaptureQueriesContext(connection) as queries:
        assert sync_messages().stored == count
    return len(queries)


def test_a_sync_page_takes_the_same_statements_for_10_or_100_records(ringcentral):
    _sync_queries(ringcentral, 1, first=0)  # the first run: an FSync, the sync state and count rows made
    ten = _sync_queries(ringcentral, 10, first=100)
    hundred = _sync_queries(ringcentral, 100, first=200)
    assert ten <= 25
    assert hundred - ten == SPLIT_BY_PARAMETER_LIMIT


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_store_runs_at_once_never_store_a_notification_twice(client, ringcentral):
    with mock.patch.object(webhooks, "_start_store"):  # no run yet: each commits at once here
        queue(client, ringcentral, 60)
        replayed = ringcentral.notification(ringcentral.messages[0])
        for _ in range(5):
            notify(client, replayed)  # and five replays of one
    with mock.patch.object(webhooks, "STORE_BATCH", 7):  # many small batches, interleaved
        totals = race(2, lambda i: store_notifications())
    assert sum(t["notifications"] for t in totals) == 65
    assert sum(t["accepted"] for t in totals) == 60
    assert sms().count() == 60
    assert not PendingNotification.objects.exists()


def test_managers_see_what_is_queued_and_agents_do_not(client, ringcentral, manager, agent):
    queue(client, ringcentral, 1)
    PendingNotification.objects.update(attempts=webhooks.MAX_ATTEMPTS, last_error="RuntimeError: cannot store")
    url = "/admin/channels_ingest/pendingnotification/"
    client.force_login(agent)
    assert "/admin/login/" in client.get(url)["Location"]
    client.force_login(manager)
    page = client.get(url)
    assert page.status_code == 200 and b"RuntimeError: cannot store" in page.content
    assert client.get(url + "add/").status_code == 403
