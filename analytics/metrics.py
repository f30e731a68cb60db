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
from django.db.models import BooleanField, Count, DateField, ExpressionWrapper, Max, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce, ExtractHour, Trunc

from channels_ingest.chat.models import ChatbotSession
from channels_ingest.email.models import Campaign, SentEmail, TrackingEvent
from crm.models import Booking, Lead, LostReason, MarketingSpend, Payment
from inbox.models import ConversationActivity

from . import percentiles, timebase
from .models import Resolution, ResponseCycle, RevenueDay

ZERO = Decimal("0")
Kind = ConversationActivity.Kind
SPEED_BUCKETS = [("5m", 300), ("1h", 3600), ("4h", 14400), ("24h", 86400)]


# --- helpers ------------------------------------------------------------------------
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
    rows = (RevenueDay.objects.filter(day__gte=rng.start, day__lte=rng.end).values("lens", "day")
            .annotate(n=Sum("count"), money=Sum("amount")).order_by())
    for row in rows:
        cell = out[row["lens"]][timebase.bucket(row["day"], rng.interval)]
        cell["count"] += row["n"]
        cell["amount"] += row["money"]
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
def _on_books(month_first, as_of):
    """Confirmed revenue for events in that local month, as it stood at the instant as_of:
    confirmed by then, and not cancelled or lost by then."""
    span = timebase.Range(month_first, timebase.next_bucket(month_first, "month") - timedelta(days=1))
    qs = Booking.objects.filter(_in_range_q("event_at", span), confirmed_at__lte=as_of).exclude(
        cancelled_at__lte=as_of).exclude(lost_at__lte=as_of)
    row = qs.aggregate(n=Count("id"), money=Sum("total"))
    return row["n"], row["money"] or ZERO


def _in_range_q(field, rng):
    return Q(**_in_range(field, rng))


def pace(rng, *, now=None):
    """On the books: for each local month from start to end, the confirmed revenue of events in that
    month as of now, against what was on the books for the same month a year earlier on the same day
    one year ago (confirmed by then and not cancelled by then). pace = this year / last year - 1."""
    now = now or datetime.now(dt_timezone.utc)
    ago = now - (timebase.local_midnight(timebase.local_date(now))
                 - timebase.local_midnight(timebase.shift_year(timebase.local_date(now), -1)))
    series, totals = [], {"count": 0, "amount": ZERO, "count_last_year": 0, "amount_last_year": ZERO}
    for month in _months(rng):
        n, money = _on_books(month, now)
        n_ly, money_ly = _on_books(timebase.shift_year(month, -1), ago)
        series.append({"period": month.isoformat(), "count": n, "amount": money, "count_last_year": n_ly,
                       "amount_last_year": money_ly, "pace": ratio(money - money_ly, money_ly)})
        totals["count"] += n
        totals["amount"] += money
        totals["count_last_year"] += n_ly
        totals["amount_last_year"] += money_ly
    totals["pace"] = ratio(totals["amount"] - totals["amount_last_year"], totals["amount_last_year"])
    return {"series": series, "totals": totals, "as_of": now.isoformat()}


# --- bookings: funnel ------------------------------------------------------------------------
def _first_touch(customer_ids) -> dict:
    """{customer id: the source of their earliest lead} in one query."""
    first = {}
    for cid, source in (Lead.objects.filter(customer_id__in=customer_ids).order_by("customer_id", "created_at", "id")
                        .values_list("customer_id", "source")):
        first.setdefault(cid, source)
    return first


def _funnel_counts(rows):
    c = {"inquiries": 0, "quoted": 0, "confirmed": 0, "completed": 0, "lost": 0, "cancelled": 0}
    for r in rows:
        c["inquiries"] += 1
        c["quoted"] += bool(r["quoted"])
        c["confirmed"] += bool(r["confirmed"])
        c["completed"] += r["status"] == Booking.Status.COMPLETED
        c["lost"] += r["status"] == Booking.Status.LOST
        c["cancelled"] += r["status"] == Booking.Status.CANCELLED
    c["quote_rate"] = ratio(c["quoted"], c["inquiries"])
    c["confirm_rate"] = ratio(c["confirmed"], c["quoted"])
    c["complete_rate"] = ratio(c["completed"], c["confirmed"])
    c["conversion"] = ratio(c["completed"], c["inquiries"])
    return c


def bookings(rng):
    """The funnel of bookings whose inquiry falls in the range (local inquiry date):
    inquiries -> quoted (ever quoted) -> confirmed (ever confirmed) -> completed, each step's
    conversion from the one before and overall (completed / inquiries); lost (never confirmed,
    with reasons) and cancelled (confirmed, then undone) are counted apart. by_source splits it
    by the booking's source and by_first_touch by the source of the customer's earliest lead
    ("none" without a lead). Of the completed ones: mean guests, revenue per guest (total /
    guests), order value mean and median. turned_away: bookings lost to "date unavailable" by
    local event date, valued at the mean completed order value of the range.
    """
    # Flags and local dates are made in the query: converting thousands of timestamps costs more than counting.
    qs = Booking.objects.filter(**_in_range("inquiry_at", rng)).annotate(
        period=period_of("inquiry_at", rng.interval), event_day=period_of("event_at", "day"),
        quoted=ExpressionWrapper(Q(quoted_at__isnull=False), output_field=BooleanField()),
        confirmed=ExpressionWrapper(Q(confirmed_at__isnull=False), output_field=BooleanField()))
    rows = list(qs.values("period", "quoted", "confirmed", "status", "source", "customer_id", "total",
                          "guest_count", "lost_reason__name", "lost_reason__slug", "event_day"))
    touch = _first_touch({r["customer_id"] for r in rows})
    for r in rows:
        r["first_touch"] = touch.get(r["customer_id"])
    by_period, by_source, by_touch = defaultdict(list), defaultdict(list), defaultdict(list)
    for r in rows:
        by_period[r["period"]].append(r)
        by_source[r["source"]].append(r)
        by_touch[r["first_touch"] or "none"].append(r)
    empty = {"inquiries": 0, "quoted": 0, "confirmed": 0, "completed": 0, "lost": 0, "cancelled": 0,
             "quote_rate": None, "confirm_rate": None, "complete_rate": None, "conversion": None}
    series = _series(rng, {p: _funnel_counts(rs) for p, rs in by_period.items()}, empty)
    totals = _funnel_counts(rows)
    done = [r for r in rows if r["status"] == Booking.Status.COMPLETED]
    guests = sum(r["guest_count"] for r in done)
    value = sum((r["total"] for r in done), ZERO)
    totals.update(
        average_guests=round(guests / len(done), 2) if done else None,
        revenue_per_guest=money_ratio(value, guests),
        order_value_mean=money_ratio(value, len(done)),
        order_value_median=percentiles.percentile([r["total"] for r in done], 0.5),
    )
    lost_reasons = defaultdict(int)
    for r in rows:
        if r["status"] == Booking.Status.LOST:
            lost_reasons[r["lost_reason__name"]] += 1
    lost_leads = (Lead.objects.filter(status=Lead.Status.LOST, booking__isnull=True, **_in_range("created_at", rng))
                  .values("lost_reason__name").annotate(n=Count("id")).order_by())
    lead_reasons = {r["lost_reason__name"]: r["n"] for r in lost_leads}
    reasons = [{"reason": name, "bookings": lost_reasons.get(name, 0), "leads": lead_reasons.get(name, 0)}
               for name in LostReason.objects.values_list("name", flat=True)]
    turned = defaultdict(int)
    for r in rows:
        if r["status"] == Booking.Status.LOST and r["lost_reason__slug"] == LostReason.DATE_UNAVAILABLE:
            turned[r["event_day"].isoformat()] += 1
    mean = totals["order_value_mean"]
    return {
        "series": series, "totals": totals, "lost_reasons": reasons,
        "by_source": [{"source": s, **_funnel_counts(rs)} for s, rs in sorted(by_source.items())],
        "by_first_touch": [{"source": s, **_funnel_counts(rs)} for s, rs in sorted(by_touch.items())],
        "turned_away": [{"date": d, "inquiries": n, "value": mean * n if mean is not None else None}
                        for d, n in sorted(turned.items())],
    }


# --- customers -------------------------------------------------------------------------------
def _customer_histories():
    """{customer id: [(local event date, total)] of completed bookings in date order} and refunds per customer."""
    events = defaultdict(list)
    for cid, at, total in (Booking.objects.filter(status=Booking.Status.COMPLETED)
                           .order_by("event_at", "id").values_list("customer_id", "event_at", "total")):
        events[cid].append((timebase.local_date(at), total))
    refunds = dict(Payment.objects.filter(kind=Payment.Kind.REFUND).values("booking__customer_id")
                   .annotate(s=Sum("amount")).order_by().values_list("booking__customer_id", "s"))
    return events, refunds


def customers(rng, *, today=None):
    """Customers whose first completed event (their cohort: its local month) falls in the range.

    ltv: completed booking totals minus every refund to the customer, to date; mean and
    median, overall and per cohort. repeat_6/12/24: share of the cohort with another
    completed event within 6/12/24 months of their first; None (blank) until every member
    had that long (the cohort's last day + N months has passed). days_to_second: median
    days between first and second completed events. churn: of customers with a completed
    event, those whose latest booking of any live status (not lost/cancelled) is more than
    CHURN_DAYS before the end date. new / returning per period: completed events in the
    period that are a customer's first / a later one.
    """
    today = today or timebase.local_date(datetime.now(dt_timezone.utc))
    events, refunds = _customer_histories()
    cohorts = defaultdict(list)
    for cid, evs in events.items():
        if rng.start <= evs[0][0] <= rng.end:
            cohorts[evs[0][0].replace(day=1)].append(cid)

    def ltv(cid):
        return sum((t for _, t in events[cid]), ZERO) - refunds.get(cid, ZERO)

    members = [cid for ids in cohorts.values() for cid in ids]
    cohort_rows = []
    for month in sorted(cohorts):
        ids = cohorts[month]
        row = {"cohort": month.isoformat(), "customers": len(ids),
               "ltv_mean": money_ratio(sum((ltv(c) for c in ids), ZERO), len(ids)),
               "ltv_median": percentiles.percentile([ltv(c) for c in ids], 0.5)}
        month_end = timebase.next_bucket(month, "month") - timedelta(days=1)
        for n in (6, 12, 24):
            if _add_months(month_end, n) >= today:
                row[f"repeat_{n}"] = None
                continue
            repeaters = sum(1 for c in ids if len(events[c]) > 1 and events[c][1][0] <= _add_months(events[c][0][0], n))
            row[f"repeat_{n}"] = ratio(repeaters, len(ids))
        cohort_rows.append(row)
    seconds = [(events[c][1][0] - events[c][0][0]).days for c in members if len(events[c]) > 1]

    live = _latest_live_booking()
    churn_before = rng.end - timedelta(days=settings.CHURN_DAYS)
    with_event = [c for c, evs in events.items() if evs[0][0] <= rng.end]
    churned = sum(1 for c in with_event if timebase.local_date(live[c]) < churn_before)

    new, returning = defaultdict(int), defaultdict(int)
    for cid, evs in events.items():
        for i, (day, _) in enumerate(evs):
            if rng.start <= day <= rng.end:
                (returning if i else new)[timebase.bucket(day, rng.interval)] += 1
    series = [{"period": b.isoformat(), "new": new.get(b, 0), "returning": returning.get(b, 0)}
              for b in rng.buckets()]
    totals = {
        "customers": len(members),
        "ltv_mean": money_ratio(sum((ltv(c) for c in members), ZERO), len(members)),
        "ltv_median": percentiles.percentile([ltv(c) for c in members], 0.5),
        "days_to_second_median": percentiles.percentile(seconds, 0.5),
        "customers_with_event": len(with_event), "churned": churned,
        "churn_rate": ratio(churned, len(with_event)), "churn_days": settings.CHURN_DAYS,
        "new": sum(new.values()), "returning": sum(returning.values()),
    }
    return {"series": series, "totals": totals, "cohorts": cohort_rows}


def _latest_live_booking():
    return dict(Booking.objects.exclude(status__in=[Booking.Status.LOST, Booking.Status.CANCELLED])
                .values("customer_id").annotate(last=Max("event_at")).order_by()
                .values_list("customer_id", "last"))


# --- staff -----------------------------------------------------------------------------------
def _durations(qs, group, field, *, database=None):
    """{group: {"median", "p90"}} of a duration field (wall or business seconds)."""
    return {key[0] if len(key) == 1 else key: {"median": v[0], "p90": v[1]}
            for key, v in percentiles.grouped(qs, group, field, database=database).items()}


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
    """
    cycles = ResponseCycle.objects.filter(**_in_range("replied_at", rng))
    resolved = Resolution.objects.filter(**_in_range("resolved_at", rng))
    activity = ConversationActivity.objects.filter(**_in_range("at", rng), actor__isnull=False,
                                                   kind__in=[Kind.REPLIED, Kind.NOTE])
    if agent_id is not None:
        cycles, resolved, activity = (q.filter(**{f: agent_id}) for q, f in
                                      ((cycles, "agent_id"), (resolved, "agent_id"), (activity, "actor_id")))
    target = settings.FIRST_RESPONSE_TARGET_MINUTES * 60
    counts = defaultdict(lambda: defaultdict(int))
    for row in activity.values("actor_id", "kind").annotate(n=Count("id"), conv=Count("conversation", distinct=True)
                                                            ).order_by():
        counts[row["actor_id"]][row["kind"]] = row["n"]
        if row["kind"] == Kind.REPLIED:
            counts[row["actor_id"]]["conversations"] = row["conv"]
    for row in resolved.values("agent_id").annotate(n=Count("id")).order_by():
        counts[row["agent_id"]]["resolutions"] = row["n"]
    within = {r["agent_id"]: (r["ok"], r["n"]) for r in cycles.values("agent_id").annotate(
        n=Count("id"), ok=Count("id", filter=Q(wall_seconds__lte=target))).order_by()}
    frt = _durations(cycles, ["agent_id"], "wall_seconds", database=database)
    frt_b = _durations(cycles, ["agent_id"], "business_seconds", database=database)
    res = _durations(resolved, ["agent_id"], "wall_seconds", database=database)
    res_b = _durations(resolved, ["agent_id"], "business_seconds", database=database)
    from django.contrib.auth import get_user_model

    names = {u.pk: u.get_full_name() or u.username for u in
             get_user_model().objects.filter(pk__in=[k for k in counts | within if k is not None])}
    nothing = {"median": None, "p90": None}
    agents = []
    for pk in sorted(set(counts) | set(within), key=lambda k: (k is None, names.get(k, ""))):
        ok, n = within.get(pk, (0, 0))
        agents.append({
            "agent_id": pk, "agent": names.get(pk, "(no agent)"),
            "conversations": counts[pk]["conversations"], "replies": counts[pk][Kind.REPLIED],
            "notes": counts[pk][Kind.NOTE], "resolutions": counts[pk]["resolutions"],
            "first_responses": n, "within_target": ratio(ok, n),
            "first_response": frt.get(pk, nothing), "first_response_business": frt_b.get(pk, nothing),
            "resolution": res.get(pk, nothing), "resolution_business": res_b.get(pk, nothing),
        })
    per_period = _durations(cycles.annotate(period=period_of("replied_at", rng.interval)), ["period"],
                            "wall_seconds", database=database)
    replies = dict(activity.filter(kind=Kind.REPLIED).annotate(period=period_of("at", rng.interval))
                   .values("period").annotate(n=Count("id")).order_by().values_list("period", "n"))
    resolutions = dict(resolved.annotate(period=period_of("resolved_at", rng.interval)).values("period")
                       .annotate(n=Count("id")).order_by().values_list("period", "n"))
    series = [{"period": b.isoformat(), "replies": replies.get(b, 0), "resolutions": resolutions.get(b, 0),
               "first_response_median": per_period.get(b, nothing)["median"],
               "first_response_p90": per_period.get(b, nothing)["p90"]} for b in rng.buckets()]
    all_frt = percentiles.overall(cycles, "wall_seconds", database=database)
    all_frt_b = percentiles.overall(cycles, "business_seconds", database=database)
    all_res = percentiles.overall(resolved, "wall_seconds", database=database)
    ok_all = sum(v[0] for v in within.values())
    n_all = sum(v[1] for v in within.values())
    totals = {
        "replies": sum(a["replies"] for a in agents), "notes": sum(a["notes"] for a in agents),
        "resolutions": sum(a["resolutions"] for a in agents), "first_responses": n_all,
        "within_target": ratio(ok_all, n_all), "target_seconds": target,
        "first_response_median": all_frt[0], "first_response_p90": all_frt[1],
        "first_response_business_median": all_frt_b[0], "first_response_business_p90": all_frt_b[1],
        "resolution_median": all_res[0], "resolution_p90": all_res[1],
        "business_hours": bool(settings.BUSINESS_HOURS),
    }
    return {"series": series, "totals": totals, "by_agent": agents}


# --- leads and sources -------------------------------------------------------------------------
def leads(rng):
    """Leads created in the range, per source and local month: leads; converted: those whose booking
    was completed; spend: MarketingSpend of the months in the range; revenue: the converted
    bookings' totals minus their refunds (net); cost_per_lead = spend / leads; cost_per_event =
    spend / converted; roi = revenue / spend (None without spend)."""
    refunds = Payment.objects.filter(booking=OuterRef("booking"), kind=Payment.Kind.REFUND).values(
        "booking").annotate(s=Sum("amount")).values("s")
    qs = Lead.objects.filter(**_in_range("created_at", rng)).annotate(
        month=period_of("created_at", "month"), refunded=Subquery(refunds))
    cells = defaultdict(lambda: {"leads": 0, "converted": 0, "revenue": ZERO, "spend": ZERO})
    for r in qs.values("source", "month", "booking__status", "booking__total", "refunded"):
        cell = cells[(r["source"], r["month"])]
        cell["leads"] += 1
        if r["booking__status"] == Booking.Status.COMPLETED:
            cell["converted"] += 1
            cell["revenue"] += r["booking__total"] - (r["refunded"] or ZERO)
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


def inbox(rng, *, database=None):
    """Customer messages received per period and channel, and per local hour of day (0-23);
    backlog: waits for a first reply open at the end of each period (started by then, not
    answered by then); first response median/p90 per channel (waits answered in the range);
    conversion by first-reply speed: conversations started in the range, by how soon their
    first wait was answered (<=5 min, <=1 h, <=4 h, <=24 h, later, unanswered), and the share
    whose customer confirmed a booking within ANALYTICS_CONVERSION_WINDOW_DAYS of the start."""
    received = ConversationActivity.objects.filter(kind=Kind.RECEIVED, **_in_range("at", rng))
    by_channel = defaultdict(dict)
    channels = set()
    for r in received.annotate(period=period_of("at", rng.interval)).values("period", "channel").annotate(
            n=Count("id")).order_by():
        by_channel[r["period"]][r["channel"]] = r["n"]
        channels.add(r["channel"])
    hours = dict(received.annotate(h=ExtractHour("at", tzinfo=timebase.zone())).values("h").annotate(
        n=Count("id")).order_by().values_list("h", "n"))
    ends = [timebase.local_midnight(min(timebase.next_bucket(b, rng.interval), rng.end + timedelta(days=1)))
            for b in rng.buckets()]
    # The backlog of up to 400 periods per pass over the waits that could be open at their ends
    # (a statement has a limit on its columns: a ten-year range by day takes ten passes).
    backlog, open_waits = {}, ResponseCycle.objects.filter(Q(replied_at__isnull=True) | Q(replied_at__gte=rng.since))
    for first in range(0, len(ends), 400):
        part = ends[first:first + 400]
        backlog.update(open_waits.filter(started_at__lt=part[-1]).aggregate(**{
            f"b{first + i}": Count("id", filter=Q(started_at__lt=end) & (Q(replied_at__isnull=True)
                                                                         | Q(replied_at__gte=end)))
            for i, end in enumerate(part)}))
    series = []
    for i, b in enumerate(rng.buckets()):
        row = {"period": b.isoformat(), "received": sum(by_channel.get(b, {}).values()), "backlog": backlog[f"b{i}"]}
        row.update({f"received_{c}": by_channel.get(b, {}).get(c, 0) for c in sorted(channels)})
        series.append(row)
    answered = ResponseCycle.objects.filter(**_in_range("replied_at", rng))
    frt = _durations(answered, ["channel"], "wall_seconds", database=database)
    window = timedelta(days=settings.ANALYTICS_CONVERSION_WINDOW_DAYS)
    firsts = list(ResponseCycle.objects.filter(number=0, **_in_range("started_at", rng)).values(
        "started_at", "wall_seconds", "conversation__customer_id"))
    confirmed = defaultdict(list)
    for cid, at in Booking.objects.filter(customer_id__in={f["conversation__customer_id"] for f in firsts},
                                          confirmed_at__isnull=False).values_list("customer_id", "confirmed_at"):
        confirmed[cid].append(at)
    speed = {name: {"conversations": 0, "booked": 0} for name in [b for b, _ in SPEED_BUCKETS] + ["later",
                                                                                                 "unanswered"]}
    for f in firsts:
        cell = speed[speed_bucket(f["wall_seconds"])]
        cell["conversations"] += 1
        cell["booked"] += any(f["started_at"] <= at <= f["started_at"] + window
                              for at in confirmed[f["conversation__customer_id"]])
    return {
        "series": series,
        "totals": {"received": received.count(), "channels": sorted(channels)},
        "by_hour": [{"hour": h, "received": hours.get(h, 0)} for h in range(24)],
        "first_response_by_channel": [{"channel": c, **v} for c, v in sorted(frt.items())],
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
    quoted) bookings, kept apart: they are not money on the books."""
    now = now or datetime.now(dt_timezone.utc)
    def paid(kinds):
        return Subquery(Payment.objects.filter(booking=OuterRef("pk"), kind__in=kinds).values("booking")
                        .annotate(s=Sum("amount")).values("s"))
    qs = (Booking.objects.filter(**_in_range("event_at", rng),
                                 status__in=[Booking.Status.CONFIRMED, Booking.Status.COMPLETED,
                                             Booking.Status.INQUIRY, Booking.Status.QUOTED])
          .annotate(period=period_of("event_at", rng.interval),
                    paid_in=paid([Payment.Kind.DEPOSIT, Payment.Kind.BALANCE]), refunded=paid([Payment.Kind.REFUND])))
    cells = defaultdict(lambda: {"deposits_held": ZERO, "balance_due": ZERO, "overdue": ZERO, "quotes": ZERO,
                                 "overdue_bookings": 0})
    for r in qs.values("id", "period", "status", "total", "event_at", "paid_in", "refunded"):
        paid_in = r["paid_in"] or ZERO
        cell = cells[r["period"]]
        due = max(r["total"] - paid_in, ZERO)
        if r["status"] in (Booking.Status.INQUIRY, Booking.Status.QUOTED):
            cell["quotes"] += r["total"]
            continue
        if r["event_at"] >= now and r["status"] == Booking.Status.CONFIRMED:
            cell["deposits_held"] += paid_in - (r["refunded"] or ZERO)
            cell["balance_due"] += due
        elif r["event_at"] < now and due > 0:
            cell["overdue"] += due
            cell["overdue_bookings"] += 1
    empty = {"deposits_held": ZERO, "balance_due": ZERO, "overdue": ZERO, "quotes": ZERO, "overdue_bookings": 0}
    series = _series(rng, cells, empty)
    totals = {k: sum((row[k] for row in series), ZERO if k != "overdue_bookings" else 0) for k in empty}
    return {"series": series, "totals": totals}


METRICS = {"revenue": revenue, "pace": pace, "bookings": bookings, "customers": customers, "staff": staff,
           "leads": leads, "inbox": inbox, "email": email, "chatbot": chatbot, "cash": cash}
