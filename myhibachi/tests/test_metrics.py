"""/metrics: who may scrape it, what it shows, and that its labels stay bounded."""
import collections
from datetime import timedelta

import pytest
from channels.layers import InMemoryChannelLayer
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from channels_ingest.base import count
from channels_ingest.models import Mailbox
from inbox import events, services
from inbox.consumers import MAX_BACKLOG, NodeCounts, StaffFanout

OUTSIDE = "203.0.113.7"  # not loopback
TOKEN = "metrics-token-for-tests-0123456789"


def scrape(client, **extra):
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


def parse(text):
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def labels_of(samples, name, label):
    return {dict(key)[label] for (sample, key) in samples if sample == name}


def test_loopback_scrape_shows_requests_by_url_name_with_bounded_labels(agent_client, agent):
    first = services.receive_message(channel="email", sender="ann@example.com", text="Hi", external_id="m-1")
    second = services.receive_message(channel="email", sender="bob@example.com", text="Hi", external_id="m-2")
    before = scrape(agent_client)

    for received in (first, second):
        assert agent_client.get(f"/inbox/{received.message.conversation_id}/").status_code == 200
    assert agent_client.get("/no/such/page").status_code == 404
    after = scrape(agent_client)

    thread = {"view": "inbox:thread", "method": "GET", "status": "200"}
    assert value(after, "myhibachi_http_requests_total", **thread) - \
        value(before, "myhibachi_http_requests_total", **thread) == 2
    assert value(after, "myhibachi_http_request_duration_seconds_count", view="inbox:thread") - \
        value(before, "myhibachi_http_request_duration_seconds_count", view="inbox:thread") == 2
    assert value(after, "myhibachi_http_request_duration_seconds_sum", view="inbox:thread") > \
        value(before, "myhibachi_http_request_duration_seconds_sum", view="inbox:thread")
    # Two conversations, one label value; an unknown path is "unresolved", never the path.
    views = labels_of(after, "myhibachi_http_requests_total", "view")
    assert {"inbox:thread", "metrics", "unresolved"} <= views
    assert not any("/" in view or str(first.message.conversation_id) in view for view in views)
    assert value(after, "myhibachi_http_requests_total", view="unresolved", method="GET", status="404") >= 1


def test_a_made_up_method_is_counted_as_other(client, db):
    client.generic("BREW", "/health")
    samples = scrape(client)
    assert "BREW" not in labels_of(samples, "myhibachi_http_requests_total", "method")
    assert value(samples, "myhibachi_http_requests_total", view="health", method="other", status="405") >= 1


def test_scrape_reads_ingest_counts_and_imap_lag(client, db, settings):
    settings.REDIS_URL = None
    count("sendgrid-inbound", "accepted", 3)
    count("sendgrid-inbound", "refused_auth")
    count("imap", "accepted", 5)
    yesterday = timezone.localdate() - timedelta(days=1)
    from channels_ingest.models import IngestCount  # an old row is not today's
    IngestCount.objects.create(source="imap", outcome="duplicates", day=yesterday, count=9)
    now = timezone.now()
    Mailbox.objects.create(name="sales", host="imap.example.com", username="s", last_polled_at=now - timedelta(seconds=120))
    Mailbox.objects.create(name="fresh", host="imap.example.com", username="f", created_at=now - timedelta(seconds=30))
    Mailbox.objects.create(name="off", host="imap.example.com", username="o", active=False,
                           last_polled_at=now - timedelta(days=3))

    samples = scrape(client)

    assert value(samples, "myhibachi_ingest_today", source="sendgrid-inbound", outcome="accepted") == 3
    assert value(samples, "myhibachi_ingest_today", source="sendgrid-inbound", outcome="refused_auth") == 1
    assert value(samples, "myhibachi_ingest_today", source="imap", outcome="accepted") == 5
    assert ("myhibachi_ingest_today", (("outcome", "duplicates"), ("source", "imap"))) not in samples
    assert 120 <= value(samples, "myhibachi_imap_poll_lag_seconds", mailbox="sales") < 180
    assert 30 <= value(samples, "myhibachi_imap_poll_lag_seconds", mailbox="fresh") < 90  # never polled
    assert labels_of(samples, "myhibachi_imap_poll_lag_seconds", "mailbox") == {"sales", "fresh"}
    # No Redis: no queue length, and every part read.
    assert not labels_of(samples, "myhibachi_celery_queue_length", "queue")
    for part in ("ingest", "imap", "celery_queue"):
        assert value(samples, "myhibachi_metrics_part_up", part=part) == 1


def test_a_part_that_fails_is_reported_not_fatal(client, db, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    samples = scrape(client)
    assert value(samples, "myhibachi_metrics_part_up", part="celery_queue") == 0
    assert value(samples, "myhibachi_metrics_part_up", part="ingest") == 1
    assert ("myhibachi_staff_sockets", ()) in samples


@pytest.mark.redis
def test_celery_queue_length_is_read_from_redis(client, db, settings):
    import redis

    from myhibachi.celery import app

    queue = "metrics-test-queue"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    connection = redis.Redis.from_url(settings.REDIS_URL)
    connection.delete(queue)
    connection.rpush(queue, "a", "b", "c")
    try:
        samples = scrape(client)
    finally:
        connection.delete(queue)
        connection.close()
        app.conf.task_default_queue = previous
    assert value(samples, "myhibachi_celery_queue_length", queue=queue) == 3
    assert value(samples, "myhibachi_metrics_part_up", part="celery_queue") == 1


class FakeSocket:
    write_frame = None  # not under Uvicorn: every frame through send_frame

    def __init__(self):
        self.frames = []

    async def send_frame(self, message):
        self.frames.append(message)


@pytest.mark.asyncio
async def test_staff_sockets_events_and_drops_are_counted():
    fanout = StaffFanout(InMemoryChannelLayer())
    sockets, events_before, dropped_before = NodeCounts.sockets, NodeCounts.events, NodeCounts.dropped
    fast, slow = FakeSocket(), FakeSocket()
    try:
        await fanout.add(fast)
        await fanout.add(slow)
        await fanout.add(slow)  # a re-add is not a second socket
        assert NodeCounts.sockets == sockets + 2
        fanout.backlogs[slow] = collections.deque([{}] * MAX_BACKLOG)  # a held-back send, backlog full
        fanout.deliver({"id": 1})
        assert fast.frames and fanout.dropped == 1
        assert (NodeCounts.events, NodeCounts.dropped) == (events_before + 1, dropped_before + 1)
        fanout.discard(slow)
        fanout.discard(slow)  # end() then disconnect(): one socket less, not two
        assert NodeCounts.sockets == sockets + 1
    finally:
        fanout.discard(fast)
        for task in fanout.tasks:
            task.cancel()
    assert NodeCounts.sockets == sockets


def test_scrape_shows_the_fanout_and_publish_counters(client, db, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(NodeCounts, "sockets", 4)
    monkeypatch.setattr(NodeCounts, "dropped", 11)
    monkeypatch.setattr(events, "publish_failures", 7)
    published = events.published
    with django_capture_on_commit_callbacks(execute=True):
        services.receive_message(channel="email", sender="cy@example.com", text="Hi", external_id="m-3")
    assert events.published > published  # the in-memory layer took them

    samples = scrape(client)

    assert value(samples, "myhibachi_staff_sockets") == 4
    assert value(samples, "myhibachi_fanout_dropped_total") == 11
    assert value(samples, "myhibachi_events_publish_failures_total") == 7
    assert value(samples, "myhibachi_events_published_total") == events.published
    assert ("myhibachi_fanout_events_total", ()) in samples


def test_publish_failures_are_counted(db, monkeypatch, django_capture_on_commit_callbacks):
    class BrokenLayer:
        async def group_send(self, group, message):
            raise ConnectionError("layer down")

    monkeypatch.setattr(events, "get_channel_layer", lambda: BrokenLayer())
    failures, published = events.publish_failures, events.published
    with django_capture_on_commit_callbacks(execute=True):
        services.receive_message(channel="email", sender="dee@example.com", text="Hi", external_id="m-4")
    assert events.publish_failures > failures
    assert events.published == published


@pytest.mark.asyncio
async def test_channel_layer_errors_of_a_socket_are_counted_by_operation():
    class DownLayer(InMemoryChannelLayer):  # Redis gone: every call raises
        async def group_add(self, group, channel):
            raise ConnectionError("layer down")

    fanout = StaffFanout(DownLayer())
    before = NodeCounts.layer_errors["group_add"]
    with pytest.raises(ConnectionError):
        await fanout.add(FakeSocket())  # the socket's connect fails; the error is counted
    for task in fanout.tasks:
        task.cancel()
    assert NodeCounts.layer_errors["group_add"] == before + 1


def test_scrape_shows_channel_layer_errors_by_operation(client, db, monkeypatch):
    import collections as counters

    monkeypatch.setattr(events, "publish_failures", 3)
    monkeypatch.setattr(NodeCounts, "layer_errors", counters.Counter({"receive": 2, "group_add": 5}))
    samples = scrape(client)
    assert {operation: value(samples, "myhibachi_channel_layer_errors_total", operation=operation)
            for operation in ("publish", "receive", "group_add", "group_discard")} == {
        "publish": 3, "receive": 2, "group_add": 5, "group_discard": 0}


# --- who may scrape -------------------------------------------------------------------

def test_refused_from_outside_without_a_token(client, db):
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE).status_code == 404


def test_loopback_through_a_proxy_is_not_loopback(client, db):
    # The same-host nginx connects from 127.0.0.1 and names the real client.
    assert client.get("/metrics", HTTP_X_REAL_IP=OUTSIDE).status_code == 404
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR=OUTSIDE).status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


def test_the_token_opens_it_from_anywhere(client, db, settings):
    settings.METRICS_TOKEN = TOKEN
    samples = scrape(client, REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert ("myhibachi_staff_sockets", ()) in samples
    assert client.get("/metrics", HTTP_X_REAL_IP=OUTSIDE, HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200


@pytest.mark.parametrize("header", [
    f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN, f"Token {TOKEN}",
])
def test_a_wrong_token_is_refused(client, db, settings, header):
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=header).status_code == 404


def test_no_token_configured_means_no_token_works(client, db, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer ").status_code == 404
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer x").status_code == 404


def test_only_get(client, db):
    assert client.post("/metrics").status_code == 405


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_the_async_middleware_path_counts_too(async_client):
    # Nodes run under ASGI: the middleware's async path.
    response = await async_client.get("/health")
    assert response.status_code == 200
    metrics = await async_client.get("/metrics")
    assert metrics.status_code == 200
    samples = parse(metrics.content.decode())
    assert value(samples, "myhibachi_http_requests_total", view="health", method="GET", status="200") >= 1
