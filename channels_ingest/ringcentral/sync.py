"""The periodic reads that make sure nothing is lost while webhooks are down.

- SMS: message-sync. The first run (or one whose token RingCentral no longer
  accepts) is an FSync from SMS_FIRST_SYNC_HOURS ago; every later run an ISync
  from the stored token, which is saved only after the records it returned are
  stored: a run that fails (RingCentral answering 503) leaves the token where
  it was, and the next run reads the same records again (stored once: the
  RingCentral id is the dedupe key). ``sync_sms --since`` reads the
  message-store page by page instead (a backfill), then takes a fresh token.
- Calls: the call log (view=Detailed, no result filter) from the newest call
  read minus an hour of overlap, page by page.

One run per feed at a time: a lease on the feed's SyncState row, taken by one
conditional UPDATE (works on PostgreSQL and SQLite alike) and expiring after
SYNC_LEASE_SECONDS, so a killed worker blocks the feed only that long.
"""
import logging
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ..base import BadPayload
from . import client as rc
from .models import SyncState
from .records import call_events, ingest, message_events

logger = logging.getLogger(__name__)
SYNC_PATH = f"{rc.EXTENSION}/message-sync"
STORE_PATH = f"{rc.EXTENSION}/message-store"
CALL_LOG_PATH = f"{rc.EXTENSION}/call-log"
SYNC_LEASE_SECONDS = 600
BATCH = 500  # records per transaction
CALL_OVERLAP = timedelta(hours=1)
STORE_PAGE = 1000  # message-store records per page of a backfill (RingCentral's most)
CALL_PAGE = 250  # call-log records per page


@dataclass
class Stats:
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    updated: int = 0
    invalid: int = 0
    skipped: bool = False  # another run holds the feed
    error: str = ""

    def as_dict(self):
        return asdict(self)

    def add(self, outcome):
        self.stored += outcome.accepted
        self.duplicates += outcome.duplicates
        self.updated += outcome.updated
        self.invalid += outcome.invalid


class Busy(Exception):
    pass


@contextmanager
def leased(feed: str):
    state, _ = SyncState.objects.get_or_create(feed=feed)
    owner = uuid.uuid4().hex
    now = timezone.now()
    taken = SyncState.objects.filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now), pk=state.pk).update(
        locked_until=now + timedelta(seconds=SYNC_LEASE_SECONDS), lock_owner=owner)
    if not taken:
        raise Busy(feed)
    state.refresh_from_db()
    try:
        yield state
    finally:
        SyncState.objects.filter(pk=state.pk, lock_owner=owner).update(locked_until=None, lock_owner="")


def _iso(moment: datetime) -> str:
    return moment.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _store(source: str, records: list, to_events, stats: Stats) -> None:
    stats.fetched += len(records)
    for start in range(0, len(records), BATCH):
        events = []
        for record in records[start:start + BATCH]:
            try:
                events += to_events(record)
            except BadPayload as exc:
                stats.invalid += 1
                logger.warning("%s: unreadable record skipped: %s", source, exc)
        stats.add(ingest(source, events))


def _run(feed: str, body) -> Stats:
    stats = Stats()
    try:
        with leased(feed) as state:
            try:
                body(state, stats)
                state.last_error = ""
            except rc.RingCentralError as exc:
                stats.error = state.last_error = exc.message[:500]
                logger.warning("RingCentral %s sync stopped (the next run continues): %s", feed, exc.message)
            state.last_run_at = timezone.now()
            state.save(update_fields=["sync_token", "cursor_at", "last_run_at", "last_error"])
    except Busy:
        stats.skipped = True
    return stats


def sync_messages(*, since: datetime | None = None, progress=None, transport=None) -> Stats:
    """One SMS sync run; progress(done, total) is called after each page of a backfill."""

    def body(state, stats):
        with rc.client(transport=transport) as api:
            if since is not None:
                _backfill(api, since, stats, progress)
                state.sync_token = ""  # the FSync below starts afresh from now
            if state.sync_token:
                try:
                    answer = api.get_json(SYNC_PATH, {"syncType": "ISync", "syncToken": state.sync_token})
                except rc.Refused as exc:
                    logger.warning("RingCentral refused our sync token (%s); starting a full sync", exc.message)
                    state.sync_token = ""
            if not state.sync_token:
                date_from = since or (state.last_run_at or timezone.now()) - timedelta(
                    hours=settings.SMS_FIRST_SYNC_HOURS)
                if since is not None:
                    date_from = timezone.now() - timedelta(minutes=5)
                answer = api.get_json(SYNC_PATH, {"syncType": "FSync", "messageType": "SMS", "dateFrom": _iso(date_from)})
            records = answer.get("records") or []
            _store("ringcentral-sync", list(reversed(records)), message_events, stats)  # oldest first
            if progress and since is None:
                progress(stats.fetched, stats.fetched)
            state.sync_token = (answer.get("syncInfo") or {}).get("syncToken") or state.sync_token

    return _run("sms", body)


def _backfill(api, since, stats, progress):
    page = 1
    while True:
        answer = api.get_json(STORE_PATH, {"messageType": "SMS", "dateFrom": _iso(since), "page": page,
                                           "perPage": STORE_PAGE})
        _store("ringcentral-sync", list(reversed(answer.get("records") or [])), message_events, stats)
        paging = answer.get("paging") or {}
        if progress:
            progress(stats.fetched, paging.get("totalElements") or stats.fetched)
        if not (answer.get("navigation") or {}).get("nextPage"):
            return
        page += 1


def sync_calls(*, since: datetime | None = None, progress=None, transport=None) -> Stats:
    """One call-log run: every call since the newest one read (an hour of overlap), all results."""

    def body(state, stats):
        start = since or (state.cursor_at - CALL_OVERLAP if state.cursor_at else
                          timezone.now() - timedelta(hours=settings.SMS_FIRST_SYNC_HOURS))
        newest = state.cursor_at
        page = 1
        with rc.client(transport=transport) as api:
            while True:
                answer = api.get_json(CALL_LOG_PATH, {"dateFrom": _iso(start), "view": "Detailed", "page": page,
                                                      "perPage": CALL_PAGE})
                records = answer.get("records") or []
                _store("ringcentral-calls", list(reversed(records)), call_events, stats)
                for record in records:
                    moment = record.get("startTime") if isinstance(record, dict) else None
                    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00")) if isinstance(moment, str) else None
                    if parsed and (newest is None or parsed > newest):
                        newest = parsed
                if progress:
                    progress(stats.fetched, (answer.get("paging") or {}).get("totalElements") or stats.fetched)
                if not (answer.get("navigation") or {}).get("nextPage"):
                    break
                page += 1
        state.cursor_at = newest  # only after every page is stored

    return _run("calls", body)
