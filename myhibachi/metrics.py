"""What ops can see of one node: /metrics in Prometheus' text format.

prometheus-client, not django-prometheus: we need a few metrics of our own
(sockets, fan-out drops, queue length, ingest counts, IMAP lag) read at scrape
time, one cheap middleware, and nothing wrapped around the database backend
(django-prometheus swaps it, and nodes run our own pooled backend).

One process per node: production runs one Uvicorn process per node (no
--workers, docs/operations.md), so this process's registry is the node's and
prometheus-client's multiprocess mode (an mmap file write per observation, a
directory to clean at every start, gauges that cannot be read live) is not
used. Celery workers are other processes and are not counted here.

Labels are bounded by construction: the resolved URL name (never the path),
the method from a fixed list, the status code; mailboxes and ingest sources
are rows ops create. Scrape-time reads cost one query each (today's
IngestCount rows, the active mailboxes) and one Redis LLEN.

Access (docs/security.md): a direct request from loopback (no proxy header),
or `Authorization: Bearer <METRICS_TOKEN>`; anything else gets the same 404 as
an unknown URL.
"""
import hmac
import ipaddress
import logging
import time

from django.conf import settings
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, disable_created_metrics, generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .middleware import AroundRequest

logger = logging.getLogger(__name__)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNRESOLVED = "unresolved"  # no URL pattern matched (404s, WhiteNoise's static files)

disable_created_metrics()  # no *_created series: half the output, no use to ops

REQUESTS = Counter("myhibachi_http_requests", "HTTP requests answered, by URL name, method and status.",
                   ["view", "method", "status"])
LATENCY = Histogram("myhibachi_http_request_duration_seconds",
                    "Time from the first middleware to the response, by URL name.", ["view"],
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))


def view_label(request) -> str:
    match = getattr(request, "resolver_match", None)
    return match.view_name if match is not None else UNRESOLVED


def _record(request, response, started):
    view = view_label(request)
    method = request.method if request.method in METHODS else "other"
    REQUESTS.labels(view, method, str(response.status_code)).inc()
    LATENCY.labels(view).observe(time.perf_counter() - started)


class MetricsMiddleware(AroundRequest):
    """Outermost: counts and times every request. No query, one observe."""

    def before(self, request):
        return time.perf_counter()

    def after(self, request, response, started):
        _record(request, response, started)
        return response


# --- read at scrape time ------------------------------------------------------------

class NodeCollector:
    """Metrics read when scraped: this process's counters and a few cheap reads."""

    def describe(self):
        return []  # registered without a collect() (which would query the database at import)

    def collect(self):
        yield from self._live()
        parts = GaugeMetricFamily("myhibachi_metrics_part_up",
                                  "1 when this part of the scrape could be read, 0 when it failed (logged).",
                                  labels=["part"])
        for name, read in (("ingest", self._ingest), ("imap", self._imap), ("celery_queue", self._celery_queue)):
            try:
                families = list(read())
            except Exception:
                logger.exception("metrics: could not read %s", name)
                parts.add_metric([name], 0)
            else:
                parts.add_metric([name], 1)
                yield from families
        yield parts

    def _live(self):
        from inbox import events
        from inbox.consumers import NodeCounts

        yield GaugeMetricFamily("myhibachi_staff_sockets", "Staff sockets open on this node.",
                                value=NodeCounts.sockets)
        yield _counter("myhibachi_fanout_events", "Staff events this node handed to its sockets.",
                       NodeCounts.events)
        yield _counter("myhibachi_fanout_dropped",
                       "Events not sent to a slow socket whose backlog was full (the page refetches them).",
                       NodeCounts.dropped)
        yield _counter("myhibachi_events_published", "Events this process handed to the channel layer.",
                       events.published)
        yield _counter("myhibachi_events_publish_failures",
                       "Events this process could not hand to the channel layer (clients catch up).",
                       events.publish_failures)
        errors = CounterMetricFamily("myhibachi_channel_layer_errors",
                                     "Channel-layer calls of this process that failed, by operation.",
                                     labels=["operation"])
        counts = {"publish": events.publish_failures, **NodeCounts.layer_errors}
        for operation in ("publish", "receive", "group_add", "group_discard"):
            errors.add_metric([operation], counts.get(operation, 0))
        yield errors

    def _ingest(self):
        from channels_ingest.models import IngestCount

        family = GaugeMetricFamily("myhibachi_ingest_today",
                                   "Today's count (business day) of each channel source's outcome, all nodes.",
                                   labels=["source", "outcome"])
        rows = IngestCount.objects.filter(day=timezone.localdate()).values_list("source", "outcome", "count")
        for source, outcome, count in rows:
            family.add_metric([source, outcome], count)
        yield family

    def _imap(self):
        from channels_ingest.models import Mailbox

        family = GaugeMetricFamily("myhibachi_imap_poll_lag_seconds",
                                   "Seconds since each active mailbox was last polled (never: since it was made).",
                                   labels=["mailbox"])
        now = timezone.now()
        for name, polled, created in Mailbox.objects.filter(active=True).values_list(
                "name", "last_polled_at", "created_at"):
            family.add_metric([name], max(0.0, (now - (polled or created)).total_seconds()))
        yield family

    def _celery_queue(self):
        if not settings.REDIS_URL:
            return
        import redis

        from .celery import app

        queue = app.conf.task_default_queue
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            length = client.llen(queue)
        finally:
            client.close()
        family = GaugeMetricFamily("myhibachi_celery_queue_length", "Tasks waiting in the Celery queue (Redis).",
                                   labels=["queue"])
        family.add_metric([queue], length)
        yield family


def _counter(name, documentation, value):
    return CounterMetricFamily(name, documentation, value=value)


REGISTRY.register(NodeCollector())


# --- the view -----------------------------------------------------------------------

def _from_loopback(request) -> bool:
    """A direct local request: loopback address and no proxy header. Through the same-host
    nginx every request comes from 127.0.0.1, but carries X-Real-IP / X-Forwarded-For."""
    meta = request.META
    if meta.get("HTTP_X_REAL_IP") or meta.get("HTTP_X_FORWARDED_FOR"):
        return False
    try:
        return ipaddress.ip_address(meta.get("REMOTE_ADDR") or "").is_loopback
    except ValueError:
        return False


def _has_token(request) -> bool:
    expected = settings.METRICS_TOKEN
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if not expected or scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def allowed(request) -> bool:
    return _from_loopback(request) or _has_token(request)


@never_cache
@require_GET
def metrics(request):
    if not allowed(request):
        raise Http404  # refused looks like nothing is there
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
