"""RingCentral's webhook: the subscription handshake and the notifications.

- A request with a ``Validation-Token`` header (RingCentral creating or renewing
  the subscription) is answered 200, JSON, with the same header: nothing is
  read or stored.
- Every notification must carry ``Verification-Token`` equal to
  settings.RINGCENTRAL_VERIFICATION_TOKEN (compared in constant time); anything
  else is refused with 403 and counted (outcome "refused"), nothing read.
- Bodies over RINGCENTRAL_WEBHOOK_MAX_BYTES: 413, counted. Unreadable JSON: 400, counted.
- An instant SMS event is checked (a message record with an id: else 400) and
  written as received to PendingNotification, one INSERT committed before the
  200 {"queued": 1}; ``store_pending()`` stores such rows in batches (below).
  Any other message-store event queues an SMS sync (delivery statuses), a
  telephony event a call-log sync: at most one queued per feed every
  SYNC_DEBOUNCE_SECONDS, so a burst of notifications does not queue a burst of syncs.

Why the webhook does not store the SMS itself: storing one message costs about a
dozen statements and a commit, most of them the same whatever the number of
messages; two senders each waiting for their answer would get about 20 stored
per second, RingCentral's bursts far more. The rows are stored by
``store_pending()`` (the ``store_notifications`` task) up to STORE_BATCH at a
time through the adapter base's batch store, the path the message-sync takes.

Never losing one (docs/sms-calls.md, "Acknowledged, then stored"):
- the row is committed before RingCentral hears 200: a crash before that gets
  no 200 and RingCentral sends the notification again;
- a batch's messages are stored and its rows deleted in one transaction: a
  crash, deadlock or error rolls back both, and the rows wait for the next run;
- a run is queued after a notification's commit unless one is queued or running
  (a cache key the run deletes before its last look for rows, so a row committed
  after that look queues another run), and by beat every minute (a lost start,
  the broker away); rows are claimed with FOR UPDATE SKIP LOCKED, so runs never
  share one;
- a batch that fails is retried one row at a time; a row that fails alone
  MAX_ATTEMPTS times is kept with its error, counted ("failed") and left: the
  message-sync stores its SMS (RingCentral's id dedupes every path).
"""
import json
import logging
import re
import time

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.http import JsonResponse

from inbox import services

from ..base import BadPayload, Refused, WebhookAdapter, count, dispatch, secrets_match
from .models import PendingNotification
from .records import after_ingest, message_events

logger = logging.getLogger(__name__)
SOURCE = "ringcentral"
TOKEN_SHAPE = re.compile(r"[\x21-\x7e]{1,200}")
SYNC_DEBOUNCE_SECONDS = 10
STORE_BATCH = 500  # notifications per transaction
MAX_ATTEMPTS = 5  # failed attempts of one notification on its own before it is left for ops
STORE_RUNNING = "ringcentral:store-running"  # cache key: a store run is queued or running
STORE_RUNNING_SECONDS = 10  # after a worker died in a run, notifications queue runs again after this long
STORE_INTERVAL = 0.25  # a worker's run: seconds at least between two batches that were not full
STORE_LINGER = 1.0  # a worker's run: seconds it keeps looking once nothing is left


class RingCentralWebhook(WebhookAdapter):
    source = SOURCE

    def post(self, request, *args, **kwargs):
        validation = request.headers.get("Validation-Token")
        if validation is not None:
            if not TOKEN_SHAPE.fullmatch(validation):
                count(self.source, "bad_validation_token")
                return JsonResponse({"error": "Validation-Token must be 1-200 printable characters."}, status=400)
            count(self.source, "validation")
            response = JsonResponse({})
            response["Validation-Token"] = validation
            return response
        return super().post(request, *args, **kwargs)

    def validate_request(self, request) -> None:
        if not secrets_match(request.headers.get("Verification-Token", ""), settings.RINGCENTRAL_VERIFICATION_TOKEN):
            raise Refused("Verification-Token missing or wrong.", status=403)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.RINGCENTRAL_WEBHOOK_MAX_BYTES:
            raise Refused(f"Notification of {length:,} bytes refused; the limit is "
                          f"{settings.RINGCENTRAL_WEBHOOK_MAX_BYTES:,}.", status=413, outcome="too_large")

    def parse_events(self, request) -> list:
        payload = _payload(request.body)
        event = str(payload.get("event") or "")
        if "/message-store/instant" in event:
            return message_events(payload["body"])
        from . import tasks

        if "/telephony/sessions" in event:
            count(self.source, "call_event")
            _soon(tasks.sync_calls, "calls")
        elif "/message-store" in event:
            count(self.source, "store_event")
            _soon(tasks.sync_sms, "sms")
        else:
            count(self.source, "ignored_event")
        return []

    def receive(self, request, events) -> dict:
        if not events:
            return super().receive(request, events)
        PendingNotification.objects.create(body=request.body.decode())
        transaction.on_commit(_start_store, robust=True)
        return {"queued": 1}


def _payload(body) -> dict:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadPayload(f"not JSON ({exc})")
    if not isinstance(payload, dict) or not isinstance(payload.get("body"), dict):
        raise BadPayload("a notification is a JSON object with a 'body' object")
    return payload


def _soon(task, feed: str) -> None:
    """Queue one sync of the feed; a burst of notifications within SYNC_DEBOUNCE_SECONDS queues one."""
    if cache.add(f"ringcentral:sync-queued:{feed}", 1, timeout=SYNC_DEBOUNCE_SECONDS):
        transaction.on_commit(task.delay)


def _start_store() -> None:
    """Queue a store run unless one is queued or running."""
    from .tasks import store_notifications

    if cache.add(STORE_RUNNING, 1, timeout=STORE_RUNNING_SECONDS):
        store_notifications.delay()


# --- storing what the webhook queued ----------------------------------------------------

def store_pending(*, interval: float = 0, linger: float = 0) -> dict:
    """Store the pending notifications, STORE_BATCH per transaction, until none is left
    (or a batch fails: the next run retries). Returns what became of them.

    While it runs, notifications do not queue other runs (STORE_RUNNING): what
    arrives while a batch is stored is the next batch. When nothing is left it
    lets go of STORE_RUNNING and then looks once more, so a notification
    committed after its last look queues a run of its own, and one committed
    before it is stored by this one.

    A worker's run (tasks.store_notifications) also waits: at least `interval`
    seconds from one batch that was not full to the next, so what arrives
    meanwhile shares one batch's fixed cost (about a dozen statements), and it
    keeps looking for `linger` seconds once nothing is left, so a burst's next
    notifications need no new task. Both are 0 elsewhere (tests, and a run
    inside the request where no worker runs tasks)."""
    totals = {"notifications": 0, "accepted": 0, "duplicates": 0, "invalid": 0, "updated": 0, "failed": 0}
    idle_since = None
    while True:
        began = time.monotonic()
        claimed = _store_batch(totals)
        if claimed is None:  # failed: retried one by one; the next run tries again
            break
        if claimed:
            idle_since = None
            cache.touch(STORE_RUNNING, STORE_RUNNING_SECONDS)
        elif idle_since is None:
            idle_since = began
        if not claimed and began - idle_since >= linger:
            cache.delete(STORE_RUNNING)
            if not PendingNotification.objects.filter(attempts__lt=MAX_ATTEMPTS).exists():
                return totals
            cache.add(STORE_RUNNING, 1, timeout=STORE_RUNNING_SECONDS)
            idle_since = None
            continue
        if claimed < STORE_BATCH and interval:
            time.sleep(max(0.0, interval - (time.monotonic() - began)))
    cache.delete(STORE_RUNNING)
    return totals


def _store_batch(totals) -> int | None:
    """Claim and store up to STORE_BATCH rows in one transaction: how many, or None if that failed."""
    ids = []
    try:
        with services.receiving_in_bulk(), transaction.atomic():
            rows = list(PendingNotification.objects.select_for_update(skip_locked=True)
                        .filter(attempts__lt=MAX_ATTEMPTS).order_by("id")[:STORE_BATCH])
            ids = [row.pk for row in rows]
            if rows:
                _store(rows, totals)
    except Exception:
        if not ids:
            raise  # not even the claim worked (the database is away): the task fails, a later run retries
        logger.exception("RingCentral: storing %s queued notifications failed; trying them one by one", len(ids))
        _store_one_by_one(ids, totals)
        return None
    return len(ids)


def _store(rows, totals) -> None:
    events = []
    for row in rows:
        try:
            events += message_events(_payload(row.body)["body"])
        except BadPayload as exc:  # checked by the webhook; only a row written some other way
            totals["invalid"] += 1
            count(SOURCE, "invalid")
            logger.warning("RingCentral: queued notification %s unreadable, dropped: %s", row.pk, exc)
    outcome = dispatch(SOURCE, events)
    after_ingest(events)
    PendingNotification.objects.filter(pk__in=[row.pk for row in rows]).delete()
    totals["notifications"] += len(rows)
    for name in ("accepted", "duplicates", "invalid", "updated"):
        totals[name] += getattr(outcome, name)


def _store_one_by_one(ids, totals) -> None:
    for pk in ids:
        try:
            with services.receiving_in_bulk(), transaction.atomic():
                row = PendingNotification.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
                if row is not None:
                    _store([row], totals)
        except Exception as exc:
            logger.exception("RingCentral: queued notification %s could not be stored", pk)
            PendingNotification.objects.filter(pk=pk).update(attempts=F("attempts") + 1,
                                                             last_error=f"{type(exc).__name__}: {exc}"[:500])
            if PendingNotification.objects.filter(pk=pk, attempts__gte=MAX_ATTEMPTS).exists():
                totals["failed"] += 1
                count(SOURCE, "failed")


webhook_view = RingCentralWebhook.as_view()
