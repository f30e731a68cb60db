"""Every figure the analytics API and screens show, each defined in its docstring
(docs/analytics.md says the same in prose).

Conventions shared by all metrics:
- Dates are local dates in settings.BUSINESS_TIME_ZONE; a timestamp is converted
  to that zone first and then truncated (analytics/timebase.py). Weeks start Monday.
- A range is start..end inclusive; every period of the interval is present in a
  series, empty ones too: counts and money 0, averages/medians/rates None.
- Money is Decimal (net of refunds where it says so); durations are seconds.
- Medians and 90th percentiles are percentile_cont (analytics/percentiles.py).
Each function returns {"series": [...], "totals": {...}} and some add tables
("by_source", "by_agent", ...). entity_rows() yields per-booking / per-conversation
rows for CSV export.
"""
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, DateField, F, Q, Sum
from django.db.models.functions import Coalesce, Trunc

from channels_ingest.chat.models import ChatbotSession
from channels_ingest.email.models import Campaign, SentEmail, TrackingEvent
from crm.models import Booking, LostReason, MarketingSpend
from inbox.models import ConversationActivity

from . import narrowing, parallel, percentiles, rollups, timebase
from .models import (ActivityDay, ActivityMonth, BookingFact, CashDay, CohortMonth, CustomerDay, CustomerFact, CycleDay,
                     FunnelDay, FunnelMonth, LeadDay, PaceDay, ReplyDay, Resolution, ResponseCycle, RevenueDay)

ZERO = Decimal("0")
Kind = ConversationActivity.Kind
SPEED_BUCKETS = [("5m", 300), ("1h", 3600), ("4h", 14400), ("24h", 86400)]

# The figures the dashboard does not show (analytics/views.py, dashboard.html), left out of its reads
# (brief=True): each is a sort of a range's values. The API, its CSV, the PDF report and the
# builder read every figure.
BRIEF = {
    "bookings": ["totals.order_value_median"],
    "inbox": ["first_response_by_channel"],
    "staff": ["totals.first_response_business_median", "totals.first_response_business_p90",
              "totals.resolution_median", "totals.resolution_p90",
              "by_agent.first_response_business", "by_agent.resolution_business"],
}


# --- helpers ------------------------------------------------------------------------
def _period(day_field, interval):
    """The period start of a local date column (rollups store local dates: no zone to convert)."""
    return F(day_field) if interval == "day" else Trunc(day_field, interval, output_field=DateField())


def period_of(field, interval):
    """The local period start (a date) of a timestamp field, converted to the business zone before truncating."""
    return Trunc(field, interval, output_field=DateField(), tzinfo=timebase.zone())


def ratio(part, whole, digits=4):
    if not whole:
        return None
    return round(float(part) / float(whole), digits)


def money_ratio(part, whole):
    if not whole:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("0.01"))


def _series(rng, values: dict, fields: dict):
    """One row per period: values[period][field] or the field's empty value."""
    return [{"period": b.isoformat(), **{f: values.get(b, {}).get(f, empty) for f, empty in fields.items()}}
            for b in rng.buckets()]


def _in_range(field, rng):
    return {f"{field}__gte": rng.since, f"{field}__lt": rng.until}


def _months(rng):
    first, months = rng.start.replace(day=1), []
    while first <= rng.end:
        months.append(first)
        first = timebase.next_bucket(first, "month")
    return months


def _add_months(day: date, months: int) -> date:
    y, m = divmod(day.month - 1 + months, 12)
    first = date(day.year + y, m + 1, 1)
    last = (timebase.next_bucket(first, "month") - timedelta(days=1)).day
    return first.replace(day=min(day.day, last))


# --- revenue ----------------------------------------------------------------------------
def _revenue_by_bucket(rng):
    """{lens: {bucket: {"count", "amount"}}} read from the RevenueDay rollup."""
    out = {lens: defaultdict(lambda: {"count": 0, "amount": ZERO}) for lens in RevenueDay.Lens.values}
    rows = (RevenueDay.objects.filter(day__gte=rng.start, day__lte=rng.end)
            .values("lens", period=_period("day", rng.interval))
            .annotate(n=Sum("count"), money=Sum("amount")).order_by().values_list("lens", "period", "n", "money"))
    for lens, period, n, money in rows:
        out[lens][period] = {"count": n, "amount": money}
    return out


def revenue(rng):
    """Revenue in three lenses that are never added together (RevenueDay rollup):

    booked  total of bookings by the local date they were confirmed, left out if
            later cancelled or lost;
    event   total of completed bookings by the local date of the event;
    cash    payments by the local date paid: deposits + balances - refunds.
    Each series row has count and amount per lens, and the amount of the same
    position in the previous period (the same number of days just before) and in
    the same period last year (null where that period has fewer buckets).
    """
    current, previous, last_year = (_revenue_by_bucket(r) for r in (rng, rng.previous(), rng.last_year()))
    buckets, prev_buckets, ly_buckets = rng.buckets(), rng.previous().buckets(), rng.last_year().buckets()
    series = []
    for i, b in enumerate(buckets):
        row = {"period": b.isoformat()}
        for lens in RevenueDay.Lens.values:
            cell = current[lens].get(b, {"count": 0, "amount": ZERO})
            row[f"{lens}_count"], row[f"{lens}_amount"] = cell["count"], cell["amount"]
            for name, data, bs in (("previous", previous, prev_buckets), ("last_year", last_year, ly_buckets)):
                row[f"{lens}_amount_{name}"] = (data[lens].get(bs[i], {"amount": ZERO})["amount"]
                                                if i < len(bs) else None)
        series.append(row)
    totals = {}
    for lens in RevenueDay.Lens.values:
        for name, data in (("", current), ("_previous", previous), ("_last_year", last_year)):
            totals[f"{lens}_amount{name}"] = sum((c["amount"] for c in data[lens].values()), ZERO)
        totals[f"{lens}_count"] = sum(c["count"] for c in current[lens].values())
        totals[f"{lens}_change"] = ratio(totals[f"{lens}_amount"] - totals[f"{lens}_amount_previous"],
                                         totals[f"{lens}_amount_previous"])
    return {"series": series, "totals": totals}


# --- pace ----------------------------------------------------------------------------------
def _on_books(months, moments):
    """{(month, as_of): (count, amount)}: confirmed revenue for events in each local month as it stood
    at each instant as_of (confirmed by then, and not cancelled or lost by then).

    The PaceDay ledger gives the books at the start of as_of's local day (its rows before that
    day); the bookings confirmed, cancelled or lost since that midnight, up to as_of, are then
    read from their facts by an index and applied one by one."""
    out = {}
    midnights = {at: timebase.local_midnight(timebase.local_date(at)) for at in moments}
    ledger = PaceDay.objects.filter(month__in=months).values("month").annotate(**{
        f"{name}{i}": Sum(name, filter=Q(day__lt=timebase.local_date(at)))
        for i, at in enumerate(moments) for name in ("count", "amount")}).order_by()
    for row in ledger:
        for i, at in enumerate(moments):
            out[(row["month"], at)] = [row[f"count{i}"] or 0, row[f"amount{i}"] or ZERO]
    today = Q()
    for at, midnight in midnights.items():
        today |= Q(confirmed_at__gte=midnight, confirmed_at__lte=at) | Q(off_at__gte=midnight, off_at__lte=at)
    for month, total, confirmed, off in rollups.on_books_rows().filter(today, event_month__in=months).values_list(
            "event_month", "total", "confirmed_at", "off_at"):
        for at, midnight in midnights.items():
            now_on = confirmed <= at and (off is None or off > at)
            was_on = confirmed < midnight and (off is None or off >= midnight)
            if now_on != was_on:
                cell = out.setdefault((month, at), [0, ZERO])
                sign = 1 if now_on else -1
                cell[0] += sign
                cell[1] += sign * total
    return out


def pace(rng, *, now=None):
    """On the books: for each local month from start to end, the confirmed revenue of events in that
    month as of now, against what was on the books for the same month a year earlier on the same day
    one year ago (confirmed by then and not cancelled by then). pace = this year / last year - 1."""
    now = now or datetime.now(dt_timezone.utc)
    ago = now - (timebase.local_midnight(timebase.local_date(now))
                 - timebase.local_midnight(timebase.shift_year(timebase.local_date(now), -1)))
    months = _months(rng)
    books = _on_books(months + [timebase.shift_year(m, -1) for m in months], [now, ago])
    series, totals = [], {"count": 0, "amount": ZERO, "count_last_year": 0, "amount_last_year": ZERO}
    for month in months:
        n, money = books.get((month, now), (0, ZERO))
        n_ly, money_ly = books.get((timebase.shift_year(month, -1), ago), (0, ZERO))
        series.append({"period": month.isoformat(), "count": n, "amount": money, "count_last_year": n_ly,
                       "amount_last_year": money_ly, "pace": ratio(money - money_ly, money_ly)})
        totals["count"] += n
        totals["amount"] += money
        totals["count_last_year"] += n_ly
        totals["amount_last_year"] += money_ly
    totals["pace"] = ratio(totals["amount"] - totals["amount_last_year"], totals["amount_last_year"])
    return {"series": series, "totals": totals, "as_of": now.isoformat()}


# --- bookings: funnel ------------------------------------------------------------------------
STEPS = ("inquiries", "quoted", "confirmed", "completed", "lost", "cancelled")


def _funnel_counts(c):
    c = {k: c.get(k, 0) for k in STEPS}
    c["quote_rate"] = ratio(c["quoted"], c["inquiries"])
    c["confirm_rate"] = ratio(c["confirmed"], c["quoted"])
    c["complete_rate"] = ratio(c["completed"], c["confirmed"])
    c["conversion"] = ratio(c["completed"], c["inquiries"])
    return c


def _order_value_median(rng, database=None):
    """The median total of the completed bookings whose inquiry falls in the range, read from the
    (inquiry_day, status, total) index of their facts."""
    done = BookingFact.objects.filter(inquiry_day__gte=rng.start, inquiry_day__lte=rng.end,
                                      status=Booking.Status.COMPLETED)
    return percentiles.overall(done, "total", (0.5,), database=database)[0]


def bookings(rng, *, database=None):
    """The funnel of bookings whose inquiry falls in the range (local inquiry date):
    inquiries -> quoted (ever quoted) -> confirmed (ever confirmed) -> completed, each step's
    conversion from the one before and overall (completed / inquiries); lost (never confirmed,
    with reasons) and cancelled (confirmed, then undone) are counted apart. by_source splits it
    by the booking's source and by_first_touch by the source of the customer's earliest lead
    ("none" without a lead). Of the completed ones: mean guests, revenue per guest (total /
    guests), order value mean and median. turned_away: bookings lost to "date unavailable" by
    local event date, valued at the mean completed order value of the range.
    (FunnelDay rollup, FunnelMonth for whole months; the median from the completed bookings' facts.)
    """
    return with_reason_names(bookings_figures(rng, database=database))


def bookings_figures(rng, *, database=None, brief=False):
    """bookings() with lost_reasons as counts by reason id ({"bookings": {id: n}, "leads": {id: n}}):
    every figure read from the rollups, none from the lost reasons' names (what the dashboard caches).
    brief: without the order value median (see BRIEF)."""
    def funnel(dims, read, per_period=False):
        # Whole months from FunnelMonth, the rest from FunnelDay, in one statement; a key's months and
        # its other days come as two rows, added up below.
        return rollups.months_and_days(rng, FunnelDay.objects.filter(dim__in=dims),
                                       FunnelMonth.objects.filter(dim__in=dims), read, per_period=per_period)

    # Lost reasons and turned-away dates (keyed by event date: hundreds of keys) need one count each,
    # not a row per period with every sum.
    reasons_n, turned = defaultdict(int), defaultdict(int)
    for dim, key, n in funnel(["reason", "turned"], lambda rows, _: rows.values("dim", "key").annotate(
            n=Sum("inquiries")).order_by().values_list("dim", "key", "n")):
        if dim == "reason":
            reasons_n[int(key)] += n
        else:
            turned[key] += n
    rows = funnel(["source", "first_touch"], lambda rows, period: rows.values("dim", "key", period=period).annotate(
        **{k: Sum(k) for k in (*STEPS, "guests", "value")}).order_by(), per_period=True)
    by_period, by_source, by_touch = (defaultdict(lambda: defaultdict(int)) for _ in range(3))
    guests, value = 0, ZERO
    for r in rows:
        cells = [by_touch[r["key"] or "none"]] if r["dim"] == "first_touch" else [
            by_source[r["key"]], by_period[r["period"]]]
        for cell in cells:
            for k in STEPS:
                cell[k] += r[k]
        if r["dim"] == "source":
            guests += r["guests"]
            value += r["value"]
    empty = {"inquiries": 0, "quoted": 0, "confirmed": 0, "completed": 0, "lost": 0, "cancelled": 0,
             "quote_rate": None, "confirm_rate": None, "complete_rate": None, "conversion": None}
    series = _series(rng, {p: _funnel_counts(c) for p, c in by_period.items()}, empty)
    total = defaultdict(int)
    for c in by_source.values():
        for k in STEPS:
            total[k] += c[k]
    totals = _funnel_counts(total)
    done = totals["completed"]
    totals.update(
        average_guests=round(guests / done, 2) if done else None,
        revenue_per_guest=money_ratio(value, guests),
        order_value_mean=money_ratio(value, done),
    )
    if not brief:
        totals["order_value_median"] = _order_value_median(rng, database) if done else None
    lead_reasons = dict(LeadDay.objects.filter(day__gte=rng.start, day__lte=rng.end, lost_reason_id__isnull=False)
                        .values("lost_reason_id").annotate(n=Sum("leads")).order_by()
                        .values_list("lost_reason_id", "n"))
    mean = totals["order_value_mean"]
    return {
        "series": series, "totals": totals, "lost_reasons": {"bookings": dict(reasons_n), "leads": lead_reasons},
        "by_source": [{"source": s, **_funnel_counts(c)} for s, c in sorted(by_source.items())],
        "by_first_touch": [{"source": s, **_funnel_counts(c)} for s, c in sorted(by_touch.items())],
        "turned_away": [{"date": d, "inquiries": n, "value": mean * n if mean is not None else None}
                        for d, n in sorted(turned.items())],
    }


def with_reason_names(figures):
    """bookings_figures() made bookings(): lost_reasons as one row per lost reason, by its current name."""
    counts = figures["lost_reasons"]
    return {**figures, "lost_reasons": [
        {"reason": name, "bookings": counts["bookings"].get(pk, 0), "leads": counts["leads"].get(pk, 0)}
        for pk, name in LostReason.objects.values_list("pk", "name")]}


# --- customers -------------------------------------------------------------------------------
def customers(rng, *, today=None, database=None):
    """Customers whose first completed event (their cohort: its local month) falls in the range.

    ltv: completed booking totals minus every refund to the customer, to date; mean and
    median, overall and per cohort. repeat_6/12/24: share of the cohort with another
    completed event within 6/12/24 months of their first; None (blank) until every member
    had that long (the cohort's last day + N months has passed). days_to_second: median
    days between first and second completed events. churn: of customers with a completed
    event, those whose latest booking of any live status (not lost/cancelled) is more than
    CHURN_DAYS before the end date. new / returning per period: completed events in the
    period that are a customer's first / a later one.
    (CustomerFact: one row per customer; CohortMonth: a whole month's cohort; CustomerDay: completed and
    first events per day.)
    """
    today = today or timebase.local_date(datetime.now(dt_timezone.utc))
    members = CustomerFact.objects.filter(first_day__gte=rng.start, first_day__lte=rng.end)
    # The range's whole months: each cohort's figures as the refresh kept them (CohortMonth); the other
    # days: each cohort's median and its counts and sums in one read of its members. database=False (the
    # Python path, which tests compare) reads every cohort from the members.
    months, rest = rollups.whole_months(rng) if database is not False else (None, [(rng.start, rng.end)])
    cohorts = {}
    if months:
        for c in CohortMonth.objects.filter(first_month__gte=months[0], first_month__lte=months[1]):
            cohorts[c.first_month] = {"n": c.customers, "ltv_sum": c.ltv_sum, "ltv": [c.ltv_median], "r6": c.repeat_6,
                                      "r12": c.repeat_12, "r24": c.repeat_24}
    if rest:
        cohorts.update(rollups.cohorts_of(CustomerFact.objects.filter(rollups.span_filter("first_day", rest)),
                                          database=database))
    cohort_rows = []
    cohort_sums = [{"first_month": month, **cells} for month, cells in sorted(cohorts.items())]
    for row in cohort_sums:
        month = row["first_month"]
        out = {"cohort": month.isoformat(), "customers": row["n"], "ltv_mean": money_ratio(row["ltv_sum"], row["n"]),
               "ltv_median": row["ltv"][0]}
        month_end = timebase.next_bucket(month, "month") - timedelta(days=1)
        for n in (6, 12, 24):
            out[f"repeat_{n}"] = None if _add_months(month_end, n) >= today else ratio(row[f"r{n}"], row["n"])
        cohort_rows.append(out)
    count = sum(r["customers"] for r in cohort_rows)
    ltv_sum = sum((r["ltv_sum"] for r in cohort_sums), ZERO)
    overall = percentiles.summary(members, [], ["ltv", "days_to_second"], (0.5,), database=database)[()]
    ltv_all, to_second = overall["ltv"][0], overall["days_to_second"][0]

    # Churn: of the customers whose first completed event is on or before the end (CustomerDay's "new"
    # up to the end: a sum over days, not a count over every customer), those churned (one count of
    # the customers whose latest live booking is before the cut-off).
    churn_before = rng.end - timedelta(days=settings.CHURN_DAYS)
    churned = CustomerFact.objects.filter(first_day__lte=rng.end, last_live_day__lt=churn_before).count()

    new, returning, with_event = defaultdict(int), defaultdict(int), 0
    for row in CustomerDay.objects.filter(day__lte=rng.end).values("day").annotate(
            done=Sum("completed"), first=Sum("new")).order_by():
        with_event += row["first"]
        if row["day"] >= rng.start:
            b = timebase.bucket(row["day"], rng.interval)
            new[b] += row["first"]
            returning[b] += row["done"] - row["first"]
    series = [{"period": b.isoformat(), "new": new.get(b, 0), "returning": returning.get(b, 0)}
              for b in rng.buckets()]
    totals = {
        "customers": count,
        "ltv_mean": money_ratio(ltv_sum, count),
        "ltv_median": ltv_all,
        "days_to_second_median": to_second,
        "customers_with_event": with_event, "churned": churned,
        "churn_rate": ratio(churned, with_event), "churn_days": settings.CHURN_DAYS,
        "new": sum(new.values()), "returning": sum(returning.values()),
    }
    return {"series": series, "totals": totals, "cohorts": cohort_rows}


# --- staff -----------------------------------------------------------------------------------
def _durations(qs, group, field, *, database=None):
    """{group: {"median", "p90"}} of a duration field (wall or business seconds)."""
    return {key[0] if len(key) == 1 else key: {"median": v[0], "p90": v[1]}
            for key, v in percentiles.grouped(qs, group, field, database=database).items()}


def _durations_of(summary):
    """{group: {field: {"median", "p90"}}} from percentiles.summary's answer (one group field)."""
    return {key[0]: {f: {"median": v[0], "p90": v[1]} for f, v in cells.items() if isinstance(v, list)}
            for key, cells in summary.items()}


def staff(rng, *, agent_id=None, database=None):
    """Per agent and period, from the conversation history (ConversationActivity and its rollups):

    replies: reply rows by the agent; notes: note rows; resolutions: status changes to
    "resolved" by the agent (Resolution rows; the same count in cards, series and tables);
    conversations: distinct conversations the agent replied in. first_response: waits whose
    first staff reply (by this agent) falls in the range, from the latest of conversation
    start, reopen and bot hand-off (ResponseCycle); median and p90 in wall seconds and in
    business seconds (None without BUSINESS_HOURS), and within_target: the share answered
    within FIRST_RESPONSE_TARGET_MINUTES of wall time. resolution: median and p90 of the
    Resolution rows in the range, from conversation start or the reopen before.
    agent_id limits everything to one agent (an agent's own view).
    (Counts from the ActivityDay, ActivityMonth and ReplyDay rollups; durations from ResponseCycle and
    Resolution.)
    """
    return with_agent_names(staff_figures(rng, agent_id=agent_id, database=database))


def staff_figures(rng, *, agent_id=None, database=None, brief=False):
    """staff() without the agents' names (each by_agent row's "agent" is None, the rows in no set
    order): every figure read from the rollups (what the dashboard caches). brief: without the
    business-hours durations and the overall resolution time (see BRIEF)."""
    return parallel.run(staff_split(rng, agent_id=agent_id, database=database, brief=brief))


def staff_split(rng, *, agent_id=None, database=None, brief=False):
    """staff_figures() as two lanes of independent reads (parallel.Split), so the dashboard can pack
    them with its other areas' reads."""
    cycles = ResponseCycle.objects.filter(**_in_range("replied_at", rng))
    resolved = Resolution.objects.filter(**_in_range("resolved_at", rng))
    kinds = [Kind.REPLIED, Kind.NOTE, rollups.FIRST_REPLY, rollups.RESOLVED]
    # Conversations handled: first replies of a conversation in the range (ActivityDay), plus the
    # conversations whose earlier reply day lies before the range (ReplyDay's partial index).
    resumed = ReplyDay.objects.filter(prev_day__isnull=False, prev_day__lt=rng.start, day__gte=rng.start,
                                      day__lte=rng.end)
    mine = {} if agent_id is None else {"agent_id": agent_id}
    if agent_id is not None:
        cycles, resolved, resumed = (q.filter(agent_id=agent_id) for q in (cycles, resolved, resumed))

    def activity(read, kinds=kinds, per_period=False):
        # The counts of whole months from ActivityMonth, of the rest from ActivityDay (one statement).
        return lambda: rollups.months_and_days(
            rng, ActivityDay.objects.filter(kind__in=kinds, **mine),
            ActivityMonth.objects.filter(kind__in=kinds, **mine), read, per_period=per_period)
    target = settings.FIRST_RESPONSE_TARGET_MINUTES * 60
    both = ["wall_seconds"] if brief else ["wall_seconds", "business_seconds"]
    counts = [
        activity(lambda rows, _: rows.values("agent_id", "kind").annotate(n=Sum("count")).order_by()
                 .values_list("agent_id", "kind", "n")),
        lambda: list(resumed.values("agent_id").annotate(n=Count("*")).order_by().values_list("agent_id", "n")),
        activity(lambda rows, period: rows.values("kind", period=period).annotate(n=Sum("count")).order_by()
                 .values_list("kind", "period", "n"), kinds=[Kind.REPLIED, rollups.RESOLVED], per_period=True),
    ]
    if brief and agent_id is None and database is not False and narrowing.applies(rng):
        return _staff_narrowed(rng, target, cycles, counts)
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.values_list("pk")
    # Five sorts of a range's durations, independent of each other: in two lanes of about equal time,
    # the second on a connection of its own reading the same snapshot where there is one (parallel.py).
    # Per agent: each agent's rows read by the (agent, time) index, no sort by agent (percentiles.by_key);
    # per period: each period's waits read by the reply-time index (percentiles.by_span).
    return parallel.Split([[
        lambda: percentiles.by_key(cycles, "agent_id", users, both, within=("wall_seconds", target),
                                   database=database),
        lambda: percentiles.by_key(resolved, "agent_id", users, both, database=database),
        *counts,
    ], [
        lambda: percentiles.by_span(cycles.exclude(wall_seconds__isnull=True), "replied_at", rng.spans(),
                                    ["wall_seconds"], database=database),
        lambda: percentiles.summary(cycles, [], both, database=database)[()],
        *([] if brief else [lambda: percentiles.overall(resolved, "wall_seconds", database=database)]),
    ]], STAFF_COST_MS["brief" if brief else "full"], lambda here, beside: _staff_finish(rng, target, brief, here, beside))


# Staff's lanes' time, measured as figure_cache.COST_MS is: how they are packed with the dashboard's
# other reads.
STAFF_COST_MS = {"full": [86, 84], "brief": [67, 48], "narrowed": [28, 11, 24]}


def _staff_narrowed(rng, target, cycles, counts):
    """The brief staff_split() of a range holding a whole month, on PostgreSQL: the waits' and the
    resolutions' percentiles found by value bucket (analytics/narrowing.py) instead of by sorting the
    range. The same figures to the last bit; a test compares them."""
    monthly = rng.interval == "month"

    def waits():
        return narrowing.find("wait", rng, agents=True, periods=monthly, overall=True, within=target)

    beside = [lambda: narrowing.find("resolution", rng, agents=True)]
    if not monthly:  # weeks and days are read by the reply-time index (percentiles.by_span), as before
        beside.append(lambda: percentiles.by_span(cycles.exclude(wall_seconds__isnull=True), "replied_at",
                                                  rng.spans(), ["wall_seconds"]))

    def finish(waited, beside, count_rows):
        found, (resolved, *spans) = waited[0], beside
        frt = {(pk,): cells for pk, cells in found["agents"].items()}
        res = {(pk,): cells for pk, cells in resolved["agents"].items()}
        overall = found["overall"] or {"wall_seconds": [None, None], "rows": 0}
        return _staff_finish(rng, target, True, [frt, res, *count_rows],
                             [found["periods"] if monthly else spans[0], overall])

    # Three lanes, so the dashboard can pack each beside its other areas' reads.
    return parallel.Split([[waits], beside, counts], STAFF_COST_MS["narrowed"], finish)


def _staff_finish(rng, target, brief, here, beside):
    """staff_figures() from its reads' results (staff_split's two lanes; beside without the overall
    resolution times when brief)."""
    frt, res, activity_rows, resumed_rows, period_rows = here
    per_period, overall, *all_res = beside
    counts = defaultdict(lambda: defaultdict(int))
    for pk, kind, n in activity_rows:  # a key's months and its other days come as two rows
        counts[pk][kind] += n
        if kind == rollups.FIRST_REPLY:
            counts[pk]["conversations"] += n
        if kind == rollups.RESOLVED:
            counts[pk]["resolutions"] += n
    replies, resolutions = defaultdict(int), defaultdict(int)
    for kind, period, n in period_rows:
        (replies if kind == Kind.REPLIED else resolutions)[period] += n
    for pk, n in resumed_rows:
        counts[pk]["conversations"] += n
    within = {pk: (cells["within"], cells["rows"]) for (pk,), cells in frt.items()}
    frt, res = _durations_of(frt), _durations_of(res)
    nothing = {"median": None, "p90": None}
    agents = []
    for pk in set(counts) | set(within):
        ok, n = within.get(pk, (0, 0))
        agents.append({
            "agent_id": pk, "agent": None,
            "conversations": counts[pk]["conversations"], "replies": counts[pk][Kind.REPLIED],
            "notes": counts[pk][Kind.NOTE], "resolutions": counts[pk]["resolutions"],
            "first_responses": n, "within_target": ratio(ok, n),
            "first_response": frt.get(pk, {}).get("wall_seconds", nothing),
            **({} if brief else {"first_response_business": frt.get(pk, {}).get("business_seconds", nothing)}),
            "resolution": res.get(pk, {}).get("wall_seconds", nothing),
            **({} if brief else {"resolution_business": res.get(pk, {}).get("business_seconds", nothing)}),
        })
    per_period = {key: {"median": cells["wall_seconds"][0], "p90": cells["wall_seconds"][1]}
                  for (key,), cells in per_period.items()}
    series = [{"period": b.isoformat(), "replies": replies.get(b, 0), "resolutions": resolutions.get(b, 0),
               "first_response_median": per_period.get(b, nothing)["median"],
               "first_response_p90": per_period.get(b, nothing)["p90"]} for b in rng.buckets()]
    all_frt = overall["wall_seconds"]
    ok_all = sum(v[0] for v in within.values())
    n_all = sum(v[1] for v in within.values())
    full = {}
    if not brief:
        all_frt_b, (all_res,) = overall["business_seconds"], all_res
        full = {"first_response_business_median": all_frt_b[0], "first_response_business_p90": all_frt_b[1],
                "resolution_median": all_res[0], "resolution_p90": all_res[1]}
    totals = {
        "replies": sum(a["replies"] for a in agents), "notes": sum(a["notes"] for a in agents),
        "resolutions": sum(a["resolutions"] for a in agents), "first_responses": n_all,
        "within_target": ratio(ok_all, n_all), "target_seconds": target,
        "first_response_median": all_frt[0], "first_response_p90": all_frt[1], **full,
        "business_hours": bool(settings.BUSINESS_HOURS),
    }
    return {"series": series, "totals": totals, "by_agent": agents}


def with_agent_names(figures):
    """staff_figures() made staff(): each agent's current name ("(no agent)" for replies whose staff
    member was deleted), the agents in order of name."""
    from django.contrib.auth import get_user_model

    names = {u.pk: u.get_full_name() or u.username for u in
             get_user_model().objects.filter(pk__in=[a["agent_id"] for a in figures["by_agent"]
                                                     if a["agent_id"] is not None])}
    agents = [{**a, "agent": names.get(a["agent_id"], "(no agent)")} for a in figures["by_agent"]]
    agents.sort(key=lambda a: (a["agent_id"] is None, names.get(a["agent_id"], "")))
    return {**figures, "by_agent": agents}


# --- leads and sources -------------------------------------------------------------------------
def leads(rng):
    """Leads created in the range, per source and local month: leads; converted: those whose booking
    was completed; spend: MarketingSpend of the months in the range; revenue: the converted
    bookings' totals minus their refunds (net); cost_per_lead = spend / leads; cost_per_event =
    spend / converted; roi = revenue / spend (None without spend). (LeadDay rollup.)"""
    cells = defaultdict(lambda: {"leads": 0, "converted": 0, "revenue": ZERO, "spend": ZERO})
    for r in (LeadDay.objects.filter(day__gte=rng.start, day__lte=rng.end)
              .values("source", month=_period("day", "month"))
              .annotate(n=Sum("leads"), won=Sum("converted"), money=Sum("revenue")).order_by()):
        cell = cells[(r["source"], r["month"])]
        cell["leads"] += r["n"]
        cell["converted"] += r["won"]
        cell["revenue"] += r["money"]
    for source, month, amount in MarketingSpend.objects.filter(
            month__gte=rng.start.replace(day=1), month__lte=rng.end).values_list("source", "month", "amount"):
        cells[(source, month)]["spend"] += amount

    def finish(c):
        return {**c, "conversion": ratio(c["converted"], c["leads"]),
                "cost_per_lead": money_ratio(c["spend"], c["leads"]) if c["spend"] else None,
                "cost_per_event": money_ratio(c["spend"], c["converted"]) if c["spend"] else None,
                "roi": ratio(c["revenue"], c["spend"], 2)}

    per_source = defaultdict(lambda: {"leads": 0, "converted": 0, "revenue": ZERO, "spend": ZERO})
    per_month = defaultdict(lambda: {"leads": 0, "converted": 0, "revenue": ZERO, "spend": ZERO})
    for (source, month), c in cells.items():
        for target in (per_source[source], per_month[month]):
            for k in target:
                target[k] += c[k]
    total = {"leads": 0, "converted": 0, "revenue": ZERO, "spend": ZERO}
    for c in per_source.values():
        for k in total:
            total[k] += c[k]
    series = [{"period": m.isoformat(), **finish(per_month.get(m, {"leads": 0, "converted": 0, "revenue": ZERO,
                                                                   "spend": ZERO}))} for m in _months(rng)]
    return {"series": series, "totals": finish(total), "interval": "month",
            "by_source": [{"source": s, **finish(c)} for s, c in sorted(per_source.items())],
            "by_source_month": [{"source": s, "month": m.isoformat(), **finish(c)}
                                for (s, m), c in sorted(cells.items())]}


# --- inbox -------------------------------------------------------------------------------------
def speed_bucket(seconds):
    if seconds is None:
        return "unanswered"
    for name, limit in SPEED_BUCKETS:
        if seconds <= limit:
            return name
    return "later"


def inbox(rng, *, database=None, brief=False):
    """Customer messages received per period and channel, and per local hour of day (0-23);
    backlog: waits for a first reply open at the end of each period (started by then, not
    answered by then); first response median/p90 per channel (waits answered in the range);
    conversion by first-reply speed: conversations started in the range, by how soon their
    first wait was answered (<=5 min, <=1 h, <=4 h, <=24 h, later, unanswered), and the share
    whose customer confirmed a booking within ANALYTICS_CONVERSION_WINDOW_DAYS of the start.
    (ActivityDay, ActivityMonth and CycleDay rollups; first response percentiles from ResponseCycle.)
    brief: without the first response by channel (see BRIEF)."""
    def activity(kind, read, per_period=False):
        # Whole months from ActivityMonth, the rest from ActivityDay, in one statement.
        return rollups.months_and_days(rng, ActivityDay.objects.filter(kind=kind),
                                       ActivityMonth.objects.filter(kind=kind), read, per_period=per_period)

    by_channel = defaultdict(lambda: defaultdict(int))
    channels = set()
    for period, channel, n in activity(Kind.RECEIVED, lambda rows, period: rows.values("channel", period=period)
                                       .annotate(n=Sum("count")).order_by().values_list("period", "channel", "n"),
                                       per_period=True):
        by_channel[period][channel] += n
        channels.add(channel)
    hours = defaultdict(int)
    for hour, n in activity(rollups.RECEIVED_HOUR, lambda rows, _: rows.values("hour").annotate(n=Sum("count"))
                            .order_by().values_list("hour", "n")):
        hours[hour] += n
    # The backlog at a local midnight: waits started before it minus waits answered before it.
    ends = [min(timebase.next_bucket(b, rng.interval), rng.end + timedelta(days=1)) for b in rng.buckets()]
    steps = list(CycleDay.objects.filter(speed="", day__lt=ends[-1]).values("day").annotate(
        s=Sum("started"), a=Sum("answered")).order_by("day").values_list("day", "s", "a"))
    backlog, running, i = {}, 0, 0
    for n, end in enumerate(ends):
        while i < len(steps) and steps[i][0] < end:
            running += steps[i][1] - steps[i][2]
            i += 1
        backlog[f"b{n}"] = running
    series = []
    for i, b in enumerate(rng.buckets()):
        row = {"period": b.isoformat(), "received": sum(by_channel.get(b, {}).values()), "backlog": backlog[f"b{i}"]}
        row.update({f"received_{c}": by_channel.get(b, {}).get(c, 0) for c in sorted(channels)})
        series.append(row)
    speed = {name: {"conversations": 0, "booked": 0} for name in [b for b, _ in SPEED_BUCKETS] + ["later",
                                                                                                 "unanswered"]}
    for name, n, booked in (CycleDay.objects.exclude(speed="").filter(day__gte=rng.start, day__lte=rng.end)
                            .values("speed").annotate(n=Sum("conversations"), b=Sum("booked")).order_by()
                            .values_list("speed", "n", "b")):
        speed[name] = {"conversations": n, "booked": booked}
    first_response = {}
    if not brief:
        answered = ResponseCycle.objects.filter(**_in_range("replied_at", rng))
        frt = _durations(answered, ["channel"], "wall_seconds", database=database)
        first_response = {"first_response_by_channel": [{"channel": c, **v} for c, v in sorted(frt.items())]}
    return {
        "series": series,
        "totals": {"received": sum(hours.values()), "channels": sorted(channels)},
        "by_hour": [{"hour": h, "received": hours.get(h, 0)} for h in range(24)],
        **first_response,
        "conversion_by_first_reply": [{"within": k, **v, "booking_rate": ratio(v["booked"], v["conversations"])}
                                      for k, v in speed.items()],
    }


# --- email ---------------------------------------------------------------------------------------
def _rates(sent, delivered, opened, clicked, bounced, unsubscribed):
    return {"sent": sent, "delivered": delivered, "opened": opened, "clicked": clicked, "bounced": bounced,
            "unsubscribed": unsubscribed, "delivery_rate": ratio(delivered, sent), "open_rate": ratio(opened, delivered),
            "click_rate": ratio(clicked, delivered), "bounce_rate": ratio(bounced, sent),
            "unsubscribe_rate": ratio(unsubscribed, delivered)}


TRACKED = {"delivered": "delivered", "opened": "opened", "clicked": "clicked", "bounced": "bounced",
           "unsubscribed": "unsubscribed"}


def email(rng):
    """Campaigns started in the range, each counting recipients once (the campaign's own
    counters): delivery = delivered / sent, open and click = opened / clicked over delivered,
    bounce = bounced / sent, unsubscribe = unsubscribed / delivered. Transactional mail
    (staff replies, booking confirmations and reminders) sent in the range, per kind, with the
    same rates from the tracking events: a message counts once per event type. Series: mail
    sent per period (campaign recipients by sent time + transactional)."""
    campaigns = [{"campaign": c.name, "id": c.pk, **_rates(c.sent_count, c.delivered_count, c.opened_count,
                                                          c.clicked_count, c.bounced_count, c.unsubscribed_count)}
                 for c in Campaign.objects.filter(**_in_range("started_at", rng)).order_by("started_at")]
    sent = SentEmail.objects.filter(**_in_range("created_at", rng))
    events = defaultdict(lambda: defaultdict(int))
    for kind, event_type, n in (TrackingEvent.objects.filter(sent_email__in=sent, event_type__in=TRACKED)
                                .values("sent_email__kind", "event_type")
                                .annotate(n=Count("sent_email", distinct=True)).order_by()
                                .values_list("sent_email__kind", "event_type", "n")):
        events[kind][event_type] = n
    transactional = [{"kind": kind, **_rates(n, *(events[kind][t] for t in TRACKED))}
                     for kind, n in sent.values("kind").annotate(n=Count("id")).order_by("kind")
                     .values_list("kind", "n")]
    from channels_ingest.email.models import CampaignRecipient

    per_period = defaultdict(int)
    for qs, field in ((sent, "created_at"), (CampaignRecipient.objects.filter(**_in_range("sent_at", rng)), "sent_at")):
        for p, n in qs.annotate(period=period_of(field, rng.interval)).values("period").annotate(
                n=Count("id")).order_by().values_list("period", "n"):
            per_period[p] += n
    series = [{"period": b.isoformat(), "sent": per_period.get(b, 0)} for b in rng.buckets()]
    all_rows = campaigns + transactional
    totals = _rates(*(sum(r[k] for r in all_rows) for k in ("sent", "delivered", "opened", "clicked", "bounced",
                                                            "unsubscribed")))
    return {"series": series, "totals": totals, "campaigns": campaigns, "transactional": transactional}


# --- chatbot --------------------------------------------------------------------------------------
def chatbot_sessions(rng, *, since=None):
    """The chatbot's sessions (channels_ingest.chat.ChatbotSession) that started in the range (or from
    since, earlier, to its end), each with its start `at` and local period; a session without
    started_at counts from when it was posted."""
    at = Coalesce("started_at", "created_at")
    return (ChatbotSession.objects.annotate(at=at).filter(at__gte=since or rng.since, at__lt=rng.until)
            .annotate(period=period_of(at, rng.interval)))


def chatbot(rng):
    """Chatbot sessions per period (by the session's start), hand-offs (sessions the bot handed to
    staff) and the hand-off rate (hand-offs / sessions), satisfaction (mean rating of the rated
    sessions; unrated ones do not count), cost per session (total cost / sessions), and the
    bookings that followed a session: confirmed in the range, at most CHATBOT_ATTRIBUTION_DAYS
    after a session of the same customer (a session after the confirmation does not count), each
    booking once, counted in the period of its confirmation, with its total as revenue."""
    window = timedelta(days=settings.CHATBOT_ATTRIBUTION_DAYS)
    # One read of the sessions: those in the range are counted; those up to the window before it
    # (and in it) can lead to a booking confirmed in the range.
    read = chatbot_sessions(rng, since=rng.since - window).values(
        "customer_id", "at", "period", "handed_off", "rating", "cost")
    sessions, starts = [], defaultdict(list)
    for row in read:
        if row["at"] >= rng.since:
            sessions.append(row)
        if row["customer_id"] is not None:
            starts[row["customer_id"]].append(row["at"])
    cells = defaultdict(lambda: {"sessions": 0, "handoffs": 0, "bookings": 0, "revenue": ZERO})
    for row in sessions:
        cells[row["period"]]["sessions"] += 1
        cells[row["period"]]["handoffs"] += int(row["handed_off"])
    followed = (Booking.objects.filter(**_in_range("confirmed_at", rng), customer_id__in=list(starts))
                .annotate(period=period_of("confirmed_at", rng.interval))
                .values_list("customer_id", "confirmed_at", "period", "total"))
    for customer_id, confirmed_at, period, total in followed:
        if any(at <= confirmed_at <= at + window for at in starts[customer_id]):
            cells[period]["bookings"] += 1
            cells[period]["revenue"] += total
    series = _series(rng, cells, {"sessions": 0, "handoffs": 0, "bookings": 0, "revenue": ZERO})
    ratings = [row["rating"] for row in sessions if row["rating"] is not None]
    count = len(sessions)
    cost = sum((row["cost"] for row in sessions), ZERO)
    totals = {"available": True, "sessions": count, "handoffs": sum(r["handoffs"] for r in series),
              "satisfaction": round(sum(ratings) / len(ratings), 2) if ratings else None,
              "cost_per_session": (cost / count).quantize(Decimal("0.0001")) if count else None,
              "bookings": sum(r["bookings"] for r in series), "revenue": sum((r["revenue"] for r in series), ZERO),
              "attribution_days": settings.CHATBOT_ATTRIBUTION_DAYS}
    totals["handoff_rate"] = ratio(totals["handoffs"], count)
    return {"series": series, "totals": totals}


# --- cash ---------------------------------------------------------------------------------------
def cash(rng, *, now=None):
    """Money held and owed for bookings whose event falls in the range (local event date):
    deposits_held: payments received (deposits + balances - refunds) for confirmed bookings
    whose event is still ahead; balance_due: total - (deposits + balances) for those
    bookings, by event period (a refund is a concession, not a debt); overdue: confirmed or completed bookings whose event has passed and that are
    not fully paid (in the range, by event date). quotes: totals of unconfirmed (inquiry or
    quoted) bookings, kept apart: they are not money on the books.
    (CashDay rollup; today's local day, split by the instant now, from its bookings' facts.)"""
    now = now or datetime.now(dt_timezone.utc)
    today = timebase.local_date(now)
    cells = defaultdict(lambda: {"deposits_held": ZERO, "balance_due": ZERO, "overdue": ZERO, "quotes": ZERO,
                                 "overdue_bookings": 0})
    confirmed, completed = Booking.Status.CONFIRMED, Booking.Status.COMPLETED
    for r in CashDay.objects.filter(day__gte=rng.start, day__lte=rng.end).values(
            "day", "status", "total", "paid_net", "due", "due_count"):
        cell = cells[timebase.bucket(r["day"], rng.interval)]
        if r["status"] not in (confirmed, completed):
            cell["quotes"] += r["total"]
        elif r["day"] > today and r["status"] == confirmed:
            cell["deposits_held"] += r["paid_net"]
            cell["balance_due"] += r["due"]
        elif r["day"] < today:
            cell["overdue"] += r["due"]
            cell["overdue_bookings"] += r["due_count"]
    if rng.start <= today <= rng.end:
        # Today's events are ahead or past by the hour: their facts, not the day's sums.
        cell = cells[timebase.bucket(today, rng.interval)]
        for status, total, paid_in, refunded, event_at in BookingFact.objects.filter(
                event_day=today, status__in=[confirmed, completed]).values_list(
                "status", "total", "paid_in", "refunded", "event_at"):
            due = max(total - paid_in, ZERO)
            if event_at >= now and status == confirmed:
                cell["deposits_held"] += paid_in - refunded
                cell["balance_due"] += due
            elif event_at < now and due > 0:
                cell["overdue"] += due
                cell["overdue_bookings"] += 1
    empty = {"deposits_held": ZERO, "balance_due": ZERO, "overdue": ZERO, "quotes": ZERO, "overdue_bookings": 0}
    series = _series(rng, cells, empty)
    totals = {k: sum((row[k] for row in series), ZERO if k != "overdue_bookings" else 0) for k in empty}
    return {"series": series, "totals": totals}


METRICS = {"revenue": revenue, "pace": pace, "bookings": bookings, "customers": customers, "staff": staff,
           "leads": leads, "inbox": inbox, "email": email, "chatbot": chatbot, "cash": cash}
