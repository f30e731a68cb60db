"""The only writer of the rollups (analytics/models.py).

refresh_all():    rebuild every rollup from the source tables (nightly, and
                  `manage.py refresh_analytics`), reporting progress.
refresh_recent(): the incremental step run every ANALYTICS_REFRESH_SECONDS by
                  Celery beat and before an analytics read whose rollups are older
                  than that: the revenue days of bookings and payments saved since
                  the last run (plus days marked dirty by analytics/signals.py),
                  the booking rollups of those bookings (analytics/rollups.py: their
                  facts, and the old and new days, months and customers they feed),
                  and the response cycles, resolutions and history rollups of
                  conversations with history rows newer than the last one read.
Both rebuild whole units (a local day, a conversation) in a transaction, so
running them twice, or both at once, leaves the same rows.
"""
import secrets
from collections import defaultdict, namedtuple
from functools import reduce
from itertools import groupby
from operator import itemgetter, or_
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, DecimalField, F, Max, Q, Sum, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from crm.models import Booking, Lead, Payment
from inbox.models import Conversation, ConversationActivity

from . import narrowing, rollups, timebase
from .models import BookingFact, CustomerFact, DirtyDay, DirtyUnit, RefreshState, Resolution, ResponseCycle, RevenueDay

CHUNK = 2000
Kind = ConversationActivity.Kind
HistoryRow = namedtuple("HistoryRow", "conversation_id kind actor_id from_value to_value channel at")
# The history kinds as plain strings: compared once per history row.
RECEIVED, REOPENED, BOT_HANDOFF, REPLIED, STATUS_CHANGED = (
    str(k) for k in (Kind.RECEIVED, Kind.REOPENED, Kind.BOT_HANDOFF, Kind.REPLIED, Kind.STATUS_CHANGED))


def mark_dirty(moments) -> None:
    """Rebuild the local revenue days of these instants at the next refresh."""
    days = {timebase.local_date(m) for m in moments}
    DirtyDay.objects.bulk_create([DirtyDay(day=d) for d in days], ignore_conflicts=True)


def mark_units(kind, keys) -> None:
    """Rebuild these units at the next refresh: kind "booking" or "customer" (ids), "lead_day" (local dates)."""
    DirtyUnit.objects.bulk_create([DirtyUnit(kind=kind, key=str(k)) for k in set(keys) if k is not None],
                                  ignore_conflicts=True)


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
    """(lens, queryset of day/count/amount) for each lens, optionally bounded."""
    tz = timebase.zone()
    out = []
    for lens in RevenueDay.Lens.values:
        qs, field, amount, _ = lens_rows(lens)
        if since is not None:
            qs = qs.filter(**{f"{field}__gte": since, f"{field}__lt": until})
        out.append((lens, qs.annotate(day=TruncDate(field, tzinfo=tz)).values("day")
                    .annotate(n=Count("id"), money=Sum(amount)).order_by()))
    return out


def _revenue_rows(lens, qs):
    return [RevenueDay(day=r["day"], lens=lens, count=r["n"], amount=r["money"] or 0) for r in qs]


def rebuild_revenue_days(days) -> int:
    """Recompute the rows of these local days; returns how many rows were written."""
    written = 0
    with transaction.atomic():
        for first, last in rollups.spans(days):
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

    # Plain tuples unpacked (HistoryRow's order): 2.5 million rows at the scale, where a
    # named tuple per row and attribute reads cost a tenth of the full refresh's walk.
    for _, kind, actor_id, from_value, to_value, channel, at in rows:
        if kind == RECEIVED:
            cycle["inbound"] = True
            cycle["channel"] = cycle["channel"] or channel
        elif kind == REOPENED:
            close(cycle)
            cycle = {"number": cycle["number"] + 1, "start": at, "inbound": False, "channel": channel,
                     "replied": None, "agent": None}
            opened = at
        elif kind == BOT_HANDOFF and cycle["replied"] is None:
            cycle["start"] = max(cycle["start"], at)
        elif kind == REPLIED and actor_id and cycle["replied"] is None and cycle["inbound"]:
            cycle["replied"], cycle["agent"] = at, actor_id
            cycle["channel"] = cycle["channel"] or channel
        elif kind == STATUS_CHANGED:
            if to_value == "resolved" and from_value != "resolved":
                wall = (at - opened).total_seconds()
                resolutions.append((conversation_id, cycle["channel"], opened, at, actor_id, wall,
                                    timebase.business_seconds(opened, at), narrowing.bucket_of(wall)))
            elif from_value in ("resolved", "closed") and to_value in ("open", "pending"):
                opened = at
    close(cycle)
    out = []
    for c in cycles:
        replied = c["replied"]
        wall = (replied - c["start"]).total_seconds() if replied else None
        out.append((conversation_id, c["number"], c["channel"], c["start"], replied, c["agent"], wall,
                    timebase.business_seconds(c["start"], replied) if replied else None, narrowing.bucket_of(wall)))
    return out, resolutions


# What conversation_facts returns per cycle and per resolution, in this order.
CYCLE_FIELDS = ["conversation", "number", "channel", "started_at", "replied_at", "agent", "wall_seconds",
                "business_seconds", "bucket"]
RESOLUTION_FIELDS = ["conversation", "channel", "started_at", "resolved_at", "agent", "wall_seconds",
                     "business_seconds", "bucket"]


def _facts_of(history, created):
    """(cycles, resolutions) of the conversations whose history rows (ordered by conversation, time, id) these are."""
    cycles, resolutions = [], []
    with timebase.remembered_hours():
        for pk, rows in groupby(history, key=itemgetter(0)):
            if pk not in created:  # started after `created` was read: the next incremental step has it
                continue
            c, r = conversation_facts(pk, created[pk], rows)
            cycles += c
            resolutions += r
    return cycles, resolutions


HISTORY_ORDER = ("conversation_id", "at", "id")


def rebuild_conversations(ids) -> set:
    """The response cycles and resolutions of these conversations, their old and new rows applied to
    DurationMonth's counts; returns the local days their cycles started or were answered on, before
    and after (the CycleDay units they touch)."""
    ids = list(ids)
    # The cycles as they stand: the days CycleDay holds of them, and what DurationMonth counts of them
    # and of the resolutions, (answered or resolved at, agent, bucket).
    days, removed = set(), {"wait": [], "resolution": list(Resolution.objects.filter(conversation_id__in=ids)
                                                             .values_list("resolved_at", "agent_id", "bucket"))}
    for started, replied, agent, bucket, wall in ResponseCycle.objects.filter(conversation_id__in=ids).values_list(
            "started_at", "replied_at", "agent_id", "bucket", "wall_seconds"):
        days.add(timebase.local_date(started))
        if replied:
            days.add(timebase.local_date(replied))
            if wall is not None:
                removed["wait"].append((replied, agent, bucket))
    created = dict(Conversation.objects.filter(pk__in=ids).values_list("pk", "created_at"))
    # Plain tuples: model instances cost more than the work.
    history = rollups.read_rows(ConversationActivity.objects.filter(conversation_id__in=ids)
                                .order_by(*HISTORY_ORDER).values_list(*HistoryRow._fields))
    cycles, resolutions = _facts_of(history, created)
    for c in cycles:
        days.add(timebase.local_date(c[3]))
        if c[4]:
            days.add(timebase.local_date(c[4]))
    added = {"wait": [(c[4], c[5], c[8]) for c in cycles if c[4] and c[6] is not None],
             "resolution": [(r[3], r[4], r[7]) for r in resolutions]}
    with transaction.atomic():
        ResponseCycle.objects.filter(conversation_id__in=ids).delete()
        Resolution.objects.filter(conversation_id__in=ids).delete()
        rollups.write_rows(ResponseCycle, CYCLE_FIELDS, cycles)
        rollups.write_rows(Resolution, RESOLUTION_FIELDS, resolutions)
        narrowing.apply_changes(removed, added)
    return days


def rebuild_all_conversations(progress) -> int:
    """Every conversation's cycles and resolutions: the history read in conversation-id ranges (by its
    (conversation, at) index), each range's facts written before the next is read."""
    created = dict(rollups.read_rows(Conversation.objects.order_by().values_list("pk", "created_at")))
    ids = sorted(created)
    step = 20_000
    with rollups.replacing(ResponseCycle, "conversation") as cycles, \
            rollups.replacing(Resolution, "conversation") as resolutions:
        for first in range(0, len(ids), step):
            last = ids[min(first + step, len(ids)) - 1]
            rows = rollups.read_rows(ConversationActivity.objects.filter(
                conversation_id__gte=ids[first], conversation_id__lte=last).order_by(*HISTORY_ORDER)
                .values_list(*HistoryRow._fields))
            found = _facts_of(rows, created)
            rollups.write_rows(ResponseCycle, CYCLE_FIELDS, found[0], table=cycles)
            rollups.write_rows(Resolution, RESOLUTION_FIELDS, found[1], table=resolutions)
            progress("conversations", min(first + step, len(ids)), len(ids))
    return len(ids)


# --- entry points -----------------------------------------------------------------
def _state(name):
    """The fill state, locked until the transaction ends: one refresh at a time rebuilds."""
    return RefreshState.objects.select_for_update().get_or_create(name=name)[0]


def _written(state) -> None:
    """This part's rollups were written: a new generation, committed with them (analytics/figure_cache.py).
    Random, never a counter: a restored database or a rolled-back test cannot meet an old number."""
    RefreshState.objects.filter(pk=state.pk).update(generation=secrets.randbits(62) | 1)


# (step, rebuild, the table later steps read from, analyzed once it is filled)
BOOKING_ROLLUPS = [("booking facts", rollups.rebuild_booking_facts, BookingFact), ("funnel", rollups.rebuild_funnel, None),
                   ("cash", rollups.rebuild_cash, None), ("pace", rollups.rebuild_pace, None),
                   ("customers", rollups.rebuild_customers, CustomerFact), ("cohorts", rollups.rebuild_cohorts, None),
                   ("customer days", rollups.rebuild_customer_days, None), ("leads", rollups.rebuild_leads, None)]
HISTORY_ROLLUPS = [("activity days", rollups.rebuild_activity_days), ("reply days", rollups.rebuild_reply_days),
                   ("activity months", rollups.rebuild_activity_months),
                   ("cycle days", rollups.rebuild_cycle_days), ("duration months", narrowing.rebuild_months)]


def refresh_all(progress=None) -> dict:
    """Rebuild everything; progress(step, done, total) is called as it goes."""
    progress = progress or (lambda *args: None)
    started = timezone.now()
    last_activity = ConversationActivity.objects.aggregate(m=Max("id"))["m"] or 0
    with transaction.atomic():
        rollups.without_jit(work_mem=rollups.REFRESH_WORK_MEM_MB)
        revenue = _state("revenue")  # locked: an incremental step waits for this part
        RevenueDay.objects.all().delete()
        DirtyDay.objects.all().delete()
        DirtyUnit.objects.all().delete()
        lenses = _lens_queries()
        for n, (lens, qs) in enumerate(lenses, 1):
            RevenueDay.objects.bulk_create(_revenue_rows(lens, qs), batch_size=CHUNK)
            progress("revenue", n, len(lenses))
        for n, (name, rebuild, read_next) in enumerate(BOOKING_ROLLUPS, 1):
            rebuild()
            if read_next:
                rollups.analyze(read_next)
            progress(name, n, len(BOOKING_ROLLUPS))
        _written(revenue)
    with transaction.atomic():
        rollups.without_jit(work_mem=rollups.REFRESH_WORK_MEM_MB)
        state = _state("conversations")
        conversations = rebuild_all_conversations(progress)
        rollups.analyze(ResponseCycle, Resolution)
        for n, (name, rebuild) in enumerate(HISTORY_ROLLUPS, 1):
            rebuild()
            progress(name, n, len(HISTORY_ROLLUPS))
        _written(state)
    for name, last_id in (("revenue", 0), ("conversations", last_activity)):
        RefreshState.objects.update_or_create(name=name, defaults={
            "last_id": last_id, "refreshed_at": started, "full_refreshed_at": started})
    return {"revenue_rows": RevenueDay.objects.count(), "conversations": conversations, "written": True}


def refresh_recent() -> dict:
    """The incremental step (see the module docstring)."""
    with transaction.atomic():
        rollups.without_jit()
        return _refresh_recent()


def _take_dirty(kind) -> set:
    keys = set(DirtyUnit.objects.filter(kind=kind).values_list("key", flat=True))
    DirtyUnit.objects.filter(kind=kind, key__in=keys).delete()
    return keys


def _booking_units(ids) -> dict:
    """What the facts of these bookings feed, as they stand: inquiry and event days, event months,
    customers, and the days whose first waits a confirmation can convert: the local start days of
    the customer's first waits that started within the conversion window before it (CycleDay's
    "booked"; no other day's counts can change)."""
    units = defaultdict(set)
    window = timedelta(days=settings.ANALYTICS_CONVERSION_WINDOW_DAYS)
    converts = []
    for inquiry, event, month, customer, confirmed in BookingFact.objects.filter(booking_id__in=list(ids)).values_list(
            "inquiry_day", "event_day", "event_month", "customer_id", "confirmed_at"):
        units["inquiry"].add(inquiry)
        units["event"].add(event)
        units["month"].add(month)
        units["customer"].add(customer)
        if confirmed:
            converts.append(Q(conversation__customer_id=customer, started_at__gte=confirmed - window,
                              started_at__lte=confirmed))
    if converts:
        units["cycle"].update(timebase.local_date(at) for at in ResponseCycle.objects.filter(
            reduce(or_, converts), number=0).values_list("started_at", flat=True))
    return units


def _refresh_bookings(since) -> dict:
    """The booking rollups of bookings saved since `since` (or whose payments were), and of the units
    analytics/signals.py marked; old and new units alike."""
    customers = {int(k) for k in _take_dirty("customer")}
    lead_days = {date.fromisoformat(k) for k in _take_dirty("lead_day")}
    ids = {int(k) for k in _take_dirty("booking")}
    ids.update(Booking.objects.filter(updated_at__gte=since).values_list("pk", flat=True))
    ids.update(Payment.objects.filter(updated_at__gte=since).values_list("booking_id", flat=True))
    if customers:
        ids.update(Booking.objects.filter(customer_id__in=customers).values_list("pk", flat=True))
    if not ids and not customers and not lead_days:
        return {"bookings": 0, "cycle_days": set(), "written": False}
    units = _booking_units(ids)
    rollups.rebuild_booking_facts(ids)
    for key, values in _booking_units(ids).items():
        units[key] |= values
    customers |= units["customer"]
    first_days = set(CustomerFact.objects.filter(customer_id__in=list(customers)).values_list("first_day", flat=True))
    rollups.rebuild_funnel(units["inquiry"])
    rollups.rebuild_cash(units["event"])
    rollups.rebuild_pace(units["month"])
    rollups.rebuild_customers(customers)
    first_days |= set(CustomerFact.objects.filter(customer_id__in=list(customers)).values_list("first_day", flat=True))
    rollups.rebuild_cohorts({timebase.bucket(day, "month") for day in first_days})
    rollups.rebuild_customer_days(units["event"] | first_days)
    lead_days.update(timebase.local_date(at) for at in Lead.objects.filter(booking_id__in=list(ids)).values_list(
        "created_at", flat=True))
    rollups.rebuild_leads(lead_days)
    return {"bookings": len(ids), "cycle_days": units["cycle"], "written": True}


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
    booked = _refresh_bookings(since)
    wrote = bool(days or booked["written"])
    if wrote:
        _written(revenue)
    revenue.refreshed_at = started
    revenue.save(update_fields=["refreshed_at"])

    conversations = _state("conversations")
    newest = ConversationActivity.objects.aggregate(m=Max("id"))["m"] or 0
    new_rows = ConversationActivity.objects.filter(id__gt=conversations.last_id, id__lte=newest)
    # A new conversation has history (its first message is a history row): the new rows name it.
    ids = set(new_rows.values_list("conversation_id", flat=True).distinct())
    cycle_days = set(booked["cycle_days"])
    for chunk in range(0, len(ids), CHUNK):
        cycle_days |= rebuild_conversations(sorted(ids)[chunk:chunk + CHUNK])
    activity_days = {timebase.local_date(at) for at in new_rows.values_list("at", flat=True)}
    rollups.rebuild_activity_days(activity_days)
    reply_days = rollups.rebuild_reply_days(ids)
    rollups.rebuild_activity_months({timebase.bucket(day, "month") for day in activity_days | reply_days})
    rollups.rebuild_cycle_days(cycle_days)
    if ids or activity_days or cycle_days:
        _written(conversations)
        wrote = True
    conversations.last_id, conversations.refreshed_at = newest, started
    conversations.save(update_fields=["last_id", "refreshed_at"])
    return {"revenue_days": len(days), "bookings": booked["bookings"], "conversations": len(ids), "written": wrote}


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
            or Payment.objects.filter(updated_at__gt=moment).exists() or DirtyDay.objects.exists()
            or DirtyUnit.objects.exists())
