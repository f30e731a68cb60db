"""The only writer of the rollups (analytics/models.py).

refresh_all():    rebuild every rollup from the source tables (nightly, and
                  `manage.py refresh_analytics`), reporting progress.
refresh_recent(): the incremental step run every ANALYTICS_REFRESH_SECONDS by
                  Celery beat and before an analytics read whose rollups are older
                  than that: the revenue days of bookings and payments saved since
                  the last run (plus days marked dirty by analytics/signals.py),
                  and the response cycles and resolutions of conversations with
                  history rows newer than the last one read.
Both rebuild whole units (a local day, a conversation) in a transaction, so
running them twice, or both at once, leaves the same rows.
"""
from collections import defaultdict, namedtuple
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, DecimalField, F, Max, Sum, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from crm.models import Booking, Payment
from inbox.models import Conversation, ConversationActivity

from . import timebase
from .models import DirtyDay, RefreshState, Resolution, ResponseCycle, RevenueDay

CHUNK = 2000
Kind = ConversationActivity.Kind
HistoryRow = namedtuple("HistoryRow", "conversation_id kind actor_id from_value to_value channel at")


def mark_dirty(moments) -> None:
    """Rebuild the local days of these instants at the next refresh."""
    days = {timebase.local_date(m) for m in moments}
    DirtyDay.objects.bulk_create([DirtyDay(day=d) for d in days], ignore_conflicts=True)


# --- revenue ------------------------------------------------------------------
def signed_amount():
    """A payment's amount as cash: refunds negative."""
    return Case(When(kind=Payment.Kind.REFUND, then=-F("amount")), default=F("amount"),
                output_field=DecimalField(max_digits=14, decimal_places=2))


def lens_rows(lens):
    """The source rows of a revenue lens, unbounded: (queryset, the field that dates a row, what a row adds,
    the path from a row to its booking's fields).

    booked: bookings with a confirmation that are not cancelled or lost, dated by confirmed_at, adding total;
    event:  completed bookings, dated by event_at, adding total;
    cash:   payments, dated by paid_at, adding deposits and balances and subtracting refunds.
    The rollup (RevenueDay) and the report builder (analytics/builder.py) both read these.
    """
    if lens == RevenueDay.Lens.BOOKED:
        return (Booking.objects.filter(confirmed_at__isnull=False)
                .exclude(status__in=[Booking.Status.CANCELLED, Booking.Status.LOST]), "confirmed_at", F("total"), "")
    if lens == RevenueDay.Lens.EVENT:
        return Booking.objects.filter(status=Booking.Status.COMPLETED), "event_at", F("total"), ""
    return Payment.objects.all(), "paid_at", signed_amount(), "booking__"


def _lens_queries(since=None, until=None):
    """(lens, queryset of day/source/event_type/location/count/amount) for each lens, optionally bounded."""
    tz = timebase.zone()
    dims = ("source", "event_type", "location")
    out = []
    for lens in RevenueDay.Lens.values:
        qs, field, amount, booking = lens_rows(lens)
        if since is not None:
            qs = qs.filter(**{f"{field}__gte": since, f"{field}__lt": until})
        out.append((lens, qs.annotate(day=TruncDate(field, tzinfo=tz), **{d: F(booking + d) for d in dims if booking})
                    .values("day", *dims).annotate(n=Count("id"), money=Sum(amount)).order_by()))
    return out


def _revenue_rows(lens, qs):
    return [RevenueDay(day=r["day"], lens=lens, source=r["source"], event_type=r["event_type"],
                       location=r["location"], count=r["n"], amount=r["money"] or 0) for r in qs]


def _day_spans(days):
    """Consecutive runs of dates as (first, last)."""
    spans = []
    for day in sorted(days):
        if spans and day == spans[-1][1] + timedelta(days=1):
            spans[-1][1] = day
        else:
            spans.append([day, day])
    return spans


def rebuild_revenue_days(days) -> int:
    """Recompute the rows of these local days; returns how many rows were written."""
    written = 0
    with transaction.atomic():
        for first, last in _day_spans(days):
            RevenueDay.objects.filter(day__gte=first, day__lte=last).delete()
            span = timebase.Range(first, last)
            rows = [row for lens, qs in _lens_queries(span.since, span.until) for row in _revenue_rows(lens, qs)]
            RevenueDay.objects.bulk_create(rows, batch_size=CHUNK)
            written += len(rows)
    return written


def _changed_revenue_days(since) -> set:
    moments = set()
    for row in Booking.objects.filter(updated_at__gte=since).values_list("confirmed_at", "event_at"):
        moments.update(m for m in row if m)
    moments.update(Payment.objects.filter(updated_at__gte=since).values_list("paid_at", flat=True))
    return {timebase.local_date(m) for m in moments}


# --- conversations --------------------------------------------------------------
def conversation_facts(conversation_id, created_at, rows):
    """The response cycles and resolutions of one conversation from its history rows (in time order).

    A wait for a first response opens at conversation start and at each reopen by
    the customer; a bot hand-off before the first staff reply moves the start to
    the hand-off (the clock does not run while a bot talks). It ends at the first
    reply by a staff member (a reply row with an actor), and counts only if a
    customer message came in before that reply. A resolution is a status change to
    "resolved", timed from conversation start or the latest reopen before it.
    """
    cycles, resolutions = [], []
    cycle = {"number": 0, "start": created_at, "inbound": False, "channel": "", "replied": None, "agent": None}
    opened = created_at

    def close(current):
        if current["inbound"]:
            cycles.append(current)

    for row in rows:
        if row.kind == Kind.RECEIVED:
            cycle["inbound"] = True
            cycle["channel"] = cycle["channel"] or row.channel
        elif row.kind == Kind.REOPENED:
            close(cycle)
            cycle = {"number": cycle["number"] + 1, "start": row.at, "inbound": False, "channel": row.channel,
                     "replied": None, "agent": None}
            opened = row.at
        elif row.kind == Kind.BOT_HANDOFF and cycle["replied"] is None:
            cycle["start"] = max(cycle["start"], row.at)
        elif row.kind == Kind.REPLIED and row.actor_id and cycle["replied"] is None and cycle["inbound"]:
            cycle["replied"], cycle["agent"] = row.at, row.actor_id
            cycle["channel"] = cycle["channel"] or row.channel
        elif row.kind == Kind.STATUS_CHANGED:
            if row.to_value == "resolved" and row.from_value != "resolved":
                resolutions.append(Resolution(
                    conversation_id=conversation_id, channel=cycle["channel"], started_at=opened,
                    resolved_at=row.at, agent_id=row.actor_id, wall_seconds=(row.at - opened).total_seconds(),
                    business_seconds=timebase.business_seconds(opened, row.at)))
            elif row.from_value in ("resolved", "closed") and row.to_value in ("open", "pending"):
                opened = row.at
    close(cycle)
    out = []
    for c in cycles:
        replied = c["replied"]
        out.append(ResponseCycle(
            conversation_id=conversation_id, number=c["number"], channel=c["channel"], started_at=c["start"],
            replied_at=replied, agent_id=c["agent"],
            wall_seconds=(replied - c["start"]).total_seconds() if replied else None,
            business_seconds=timebase.business_seconds(c["start"], replied) if replied else None))
    return out, resolutions


def rebuild_conversations(ids) -> None:
    ids = list(ids)
    created = dict(Conversation.objects.filter(pk__in=ids).values_list("pk", "created_at"))
    history = defaultdict(list)
    for row in (ConversationActivity.objects.filter(conversation_id__in=ids).order_by("conversation_id", "at", "id")
                .values_list(*HistoryRow._fields)):  # plain tuples: model instances cost more than the work
        history[row[0]].append(HistoryRow(*row))
    cycles, resolutions = [], []
    for pk, started in created.items():
        c, r = conversation_facts(pk, started, history.get(pk, []))
        cycles += c
        resolutions += r
    with transaction.atomic():
        ResponseCycle.objects.filter(conversation_id__in=ids).delete()
        Resolution.objects.filter(conversation_id__in=ids).delete()
        ResponseCycle.objects.bulk_create(cycles, batch_size=CHUNK)
        Resolution.objects.bulk_create(resolutions, batch_size=CHUNK)


# --- entry points -----------------------------------------------------------------
def _state(name):
    """The fill state, locked until the transaction ends: one refresh at a time rebuilds."""
    return RefreshState.objects.select_for_update().get_or_create(name=name)[0]


def refresh_all(progress=None) -> dict:
    """Rebuild everything; progress(step, done, total) is called as it goes."""
    progress = progress or (lambda *args: None)
    started = timezone.now()
    last_activity = ConversationActivity.objects.aggregate(m=Max("id"))["m"] or 0
    with transaction.atomic():
        RevenueDay.objects.all().delete()
        DirtyDay.objects.all().delete()
        lenses = _lens_queries()
        for n, (lens, qs) in enumerate(lenses, 1):
            RevenueDay.objects.bulk_create(_revenue_rows(lens, qs), batch_size=CHUNK)
            progress("revenue", n, len(lenses))
    ids = list(Conversation.objects.order_by("pk").values_list("pk", flat=True))
    with transaction.atomic():
        ResponseCycle.objects.all().delete()
        Resolution.objects.all().delete()
    for start in range(0, len(ids), CHUNK):
        rebuild_conversations(ids[start:start + CHUNK])
        progress("conversations", min(start + CHUNK, len(ids)), len(ids))
    for name, last_id in (("revenue", 0), ("conversations", last_activity)):
        RefreshState.objects.update_or_create(name=name, defaults={
            "last_id": last_id, "refreshed_at": started, "full_refreshed_at": started})
    return {"revenue_rows": RevenueDay.objects.count(), "conversations": len(ids)}


def refresh_recent() -> dict:
    """The incremental step (see the module docstring)."""
    with transaction.atomic():
        return _refresh_recent()


def _refresh_recent() -> dict:
    started = timezone.now()
    revenue = _state("revenue")
    # Rows saved in the second before the last run could have committed after it read: look back a minute.
    since = (revenue.refreshed_at or started - timedelta(days=36500)) - timedelta(minutes=1)
    if revenue.refreshed_at is None:
        return refresh_all()
    dirty = list(DirtyDay.objects.values_list("day", flat=True))
    DirtyDay.objects.filter(day__in=dirty).delete()
    days = set(dirty) | _changed_revenue_days(since)
    rebuild_revenue_days(days)
    revenue.refreshed_at = started
    revenue.save(update_fields=["refreshed_at"])

    conversations = _state("conversations")
    newest = ConversationActivity.objects.aggregate(m=Max("id"))["m"] or 0
    ids = set(ConversationActivity.objects.filter(id__gt=conversations.last_id, id__lte=newest)
              .values_list("conversation_id", flat=True).distinct())
    ids |= set(Conversation.objects.filter(created_at__gte=since).values_list("pk", flat=True))
    for chunk in range(0, len(ids), CHUNK):
        rebuild_conversations(sorted(ids)[chunk:chunk + CHUNK])
    conversations.last_id, conversations.refreshed_at = newest, started
    conversations.save(update_fields=["last_id", "refreshed_at"])
    return {"revenue_days": len(days), "conversations": len(ids)}


def ensure_fresh(max_age: int | None = None) -> None:
    """Run the incremental step first when the last one is older than max_age seconds (default
    ANALYTICS_REFRESH_SECONDS: no beat in a newcomer's set-up; a stalled beat in production)."""
    state = RefreshState.objects.filter(name="conversations").values_list("refreshed_at", "last_id").first()
    age = settings.ANALYTICS_REFRESH_SECONDS if max_age is None else max_age
    if state is None or state[0] is None or timezone.now() - state[0] > timedelta(seconds=age):
        refresh_recent()
    elif max_age is not None and (ConversationActivity.objects.filter(id__gt=state[1]).exists()
                                  or _money_changed_since(state[0])):
        # A live reload follows an event or a booking's hint: what changed after the last step
        # is what it came for, however recent that step was (indexed probes when nothing is new).
        refresh_recent()


def _money_changed_since(moment) -> bool:
    return (Booking.objects.filter(updated_at__gt=moment).exists()
            or Payment.objects.filter(updated_at__gt=moment).exists() or DirtyDay.objects.exists())
