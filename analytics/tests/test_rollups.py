"""The rollups behind the figures (analytics/rollups.py): their rows against hand-worked numbers, and
incremental updates after a series of changes equal to a full refresh."""
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db.models import F

from analytics import metrics, refresh
from analytics.models import (ActivityDay, ActivityMonth, BookingFact, CashDay, CohortMonth, CustomerDay, CustomerFact, CycleDay,
                              DurationMonth, FunnelDay, FunnelMonth, LeadDay, PaceDay, RefreshState, ReplyDay, Resolution,
                              ResponseCycle, RevenueDay)
from analytics.tests.helpers import booking, local, pay
from analytics.timebase import Range
from crm.merge import merge_customers
from crm.models import Booking, Lead, LostReason, Payment
from inbox import history
from inbox.models import Conversation
from tests.factories import make_customer, make_user

pytestmark = pytest.mark.django_db
Kind = history.Kind
ROLLUPS = [RevenueDay, BookingFact, FunnelDay, FunnelMonth, CashDay, PaceDay, CustomerFact, CohortMonth, CustomerDay, LeadDay, ActivityDay,
           ActivityMonth, ReplyDay, CycleDay, ResponseCycle, Resolution, DurationMonth]


@pytest.fixture(autouse=True)
def la(settings):
    settings.BUSINESS_TIME_ZONE = "America/Los_Angeles"
    settings.BUSINESS_HOURS = {}
    settings.ANALYTICS_CONVERSION_WINDOW_DAYS = 30


def test_pace_ledger_adds_on_confirmation_and_takes_off_on_cancellation_to_the_hour():
    c = make_customer()
    booking(c, status="cancelled", confirmed_at=local(2026, 6, 1, 12), cancelled_at=local(2026, 6, 10, 12),
            event_at=local(2026, 7, 12, 18), total=900)
    booking(c, status="confirmed", confirmed_at=local(2026, 6, 10, 9), event_at=local(2026, 7, 1, 0, 30),
            total=400)  # 00:30 local on 1 July: July, though it is already 07:30 UTC
    refresh.refresh_all()
    rows = sorted(PaceDay.objects.values_list("month", "day", "count", "amount"))
    july = date(2026, 7, 1)
    assert rows == [(july, date(2026, 6, 1), 1, 900), (july, date(2026, 6, 10), -1, -900),
                    (july, date(2026, 6, 10), 1, 400)]
    rng = Range(july, date(2026, 7, 31), "month")
    # On 10 June at 10:00: the 400 confirmed at 09:00 is on, the 900 cancelled at noon still is.
    assert metrics.pace(rng, now=local(2026, 6, 10, 10))["totals"]["amount"] == 1300
    assert metrics.pace(rng, now=local(2026, 6, 10, 12, 1))["totals"]["amount"] == 400
    assert metrics.pace(rng, now=local(2026, 6, 10, 8))["totals"]["amount"] == 900


def test_cash_today_is_split_at_the_hour_of_the_event():
    c = make_customer()
    today = booking(c, status="confirmed", confirmed_at=local(2026, 6, 1, 12), event_at=local(2026, 6, 15, 18),
                    total=1000)
    pay(today, "deposit", 200, local(2026, 6, 1, 12))
    booking(c, status="completed", event_at=local(2026, 6, 14, 18), total=300)  # yesterday, nothing paid
    refresh.refresh_all()
    assert sorted(CashDay.objects.values_list("day", "status", "total", "paid_net", "due", "due_count")) == [
        (date(2026, 6, 14), "completed", 300, 0, 300, 1), (date(2026, 6, 15), "confirmed", 1000, 200, 800, 1)]
    june = Range(date(2026, 6, 1), date(2026, 6, 30), "month")
    before = metrics.cash(june, now=local(2026, 6, 15, 12))["totals"]
    assert (before["deposits_held"], before["balance_due"], before["overdue"]) == (200, 800, 300)
    after = metrics.cash(june, now=local(2026, 6, 15, 21))["totals"]
    assert (after["deposits_held"], after["balance_due"], after["overdue"], after["overdue_bookings"]) == (
        0, 0, 1100, 2)


def test_customer_facts_repeat_months_ltv_and_latest_live_booking():
    jan31, mid = make_customer("a@example.com"), make_customer("b@example.com")
    booking(jan31, status="completed", event_at=local(2025, 1, 31, 18), total=1000)
    booking(jan31, status="completed", event_at=local(2025, 2, 28, 18), total=500)  # within one month of 31 Jan
    cancelled = booking(jan31, status="cancelled", confirmed_at=local(2025, 3, 1, 12), cancelled_at=local(2025, 3, 2, 12),
                        event_at=local(2025, 9, 1, 18), total=700)
    pay(cancelled, "deposit", 100, local(2025, 3, 1, 12))
    pay(cancelled, "refund", 100, local(2025, 3, 2, 12))  # refunded on a cancelled booking: still off the LTV
    booking(mid, status="completed", event_at=local(2025, 1, 15, 18), total=800)
    booking(mid, status="completed", event_at=local(2025, 7, 16, 18), total=800)  # a day past six months
    booking(mid, status="confirmed", confirmed_at=local(2025, 8, 1, 12), event_at=local(2026, 2, 1, 18), total=600)
    refresh.refresh_all()
    facts = {f.customer_id: f for f in CustomerFact.objects.all()}
    a, b = facts[jan31.pk], facts[mid.pk]
    assert (a.first_day, a.second_day, a.repeat_months, a.days_to_second) == (
        date(2025, 1, 31), date(2025, 2, 28), 1, 28)
    assert (a.completed, a.ltv, a.last_live_day) == (2, Decimal("1400.00"), date(2025, 2, 28))
    assert (b.repeat_months, b.days_to_second, b.ltv, b.last_live_day) == (7, 182, Decimal("1600.00"),
                                                                           date(2026, 2, 1))
    cohort = metrics.customers(Range(date(2025, 1, 1), date(2025, 1, 31), "month"),
                               today=date(2027, 6, 1))["cohorts"][0]
    assert (cohort["repeat_6"], cohort["repeat_12"]) == (0.5, 1.0)
    assert sorted(CustomerDay.objects.filter(new__gt=0).values_list("day", "new")) == [
        (date(2025, 1, 15), 1), (date(2025, 1, 31), 1)]


def test_funnel_days_hold_reasons_and_turned_away_dates_and_lead_days_lost_leads():
    c = make_customer()
    may = local(2026, 5, 10, 12)
    booking(c, status="lost", inquiry_at=may, lost="date_unavailable", total=900, event_at=local(2026, 6, 20, 18))
    booking(c, status="completed", inquiry_at=may, quoted_at=may, confirmed_at=may, total=600, guests=12,
            event_at=local(2026, 6, 1, 18), source="yelp")
    price = LostReason.objects.get(slug="price")
    Lead.objects.create(source="google", status="lost", lost_reason=price, created_at=local(2026, 5, 11, 23, 30))
    refresh.refresh_all()
    rows = {(r.dim, r.key): r for r in FunnelDay.objects.filter(day=date(2026, 5, 10))}
    yelp, website = rows[("source", "yelp")], rows[("source", "website")]
    assert (yelp.inquiries, yelp.completed, yelp.guests, yelp.value) == (1, 1, 12, 600)
    assert (website.inquiries, website.lost) == (1, 1)
    assert rows[("turned", "2026-06-20")].inquiries == 1
    unavailable = LostReason.objects.get(slug="date_unavailable")
    assert rows[("reason", str(unavailable.pk))].inquiries == 1
    assert rows[("first_touch", "")].inquiries == 2  # no lead of this customer
    assert list(LeadDay.objects.values_list("day", "source", "lost_reason_id", "leads")) == [
        (date(2026, 5, 11), "google", price.pk, 1)]  # 23:30 local on the 11th


def test_reply_days_count_each_conversation_once_per_range():
    ann, bob = make_user("ann"), make_user("bob")
    c = make_customer()
    conv = Conversation.objects.create(customer=c, created_at=local(2026, 6, 1, 9), status="resolved",
                                       resolved_at=local(2026, 6, 1, 9))
    history.record(Kind.RECEIVED, conv, at=local(2026, 6, 1, 9), channel="sms")
    for at, who in ((local(2026, 6, 1, 10), ann), (local(2026, 6, 1, 11), ann), (local(2026, 6, 3, 10), ann),
                    (local(2026, 6, 3, 12), bob)):
        history.record(Kind.REPLIED, conv, at=at, actor=who, channel="sms")
    refresh.refresh_all()
    assert sorted(ReplyDay.objects.values_list("agent__username", "day", "prev_day")) == [
        ("ann", date(2026, 6, 1), None), ("ann", date(2026, 6, 3), date(2026, 6, 1)), ("bob", date(2026, 6, 3), None)]
    for start, ann_conversations in ((date(2026, 6, 1), 1), (date(2026, 6, 2), 1), (date(2026, 6, 4), 0)):
        agents = {a["agent_id"]: a for a in metrics.staff(Range(start, date(2026, 6, 30)))["by_agent"]}
        assert agents.get(ann.pk, {"conversations": 0})["conversations"] == ann_conversations
    assert sorted(ActivityDay.objects.filter(kind="replied").values_list("agent__username", "day", "count")) == [
        ("ann", date(2026, 6, 1), 2), ("ann", date(2026, 6, 3), 1), ("bob", date(2026, 6, 3), 1)]


def test_the_database_percentiles_equal_the_python_ones(settings):
    """percentile_cont in PostgreSQL and analytics/percentiles.py on the same rollups."""
    from analytics.percentiles import in_database

    if not in_database():
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    for n, (total, day) in enumerate(((600, 3), (800, 5), (1000, 5), (1700, 9))):
        c = make_customer(f"p{n}@example.com")
        booking(c, status="completed", inquiry_at=local(2026, 4, day, 12), event_at=local(2026, 5, day, 18),
                total=total)
        if n % 2:
            booking(c, status="completed", inquiry_at=local(2026, 6, 1, 12), event_at=local(2026, 6, 10 + n, 18),
                    total=total / 2)
    refresh.refresh_all()
    rng = Range(date(2026, 4, 1), date(2026, 6, 30), "month")
    assert metrics.bookings(rng, database=True) == metrics.bookings(rng, database=False)
    in_db = metrics.customers(rng, database=True, today=date(2026, 11, 30))
    assert in_db == metrics.customers(rng, database=False, today=date(2026, 11, 30))
    # By hand: LTVs 600, 1,200 (800 + 400), 1,000, 2,550 (1,700 + 850) -> median (1,000 + 1,200) / 2;
    # second events 37 days (5 May -> 11 June) and 35 days (9 May -> 13 June) after the first -> 36.
    assert (in_db["totals"]["ltv_median"], in_db["totals"]["days_to_second_median"]) == (1100, 36)


# --- incremental = full ---------------------------------------------------------------------------
def snapshot():
    """Every rollup's rows (without ids), sorted; and every figure for a range over the data."""
    rows = {}
    for model in ROLLUPS:
        fields = [f.attname for f in model._meta.concrete_fields if f.name != "id"]
        rows[model.__name__] = sorted(tuple(str(v) for v in row) for row in model.objects.values_list(*fields))
    rng = Range(date(2025, 1, 1), date(2026, 12, 31), "month")
    now = local(2026, 7, 15, 12)
    figures = {name: fn(rng) for name, fn in metrics.METRICS.items() if name not in ("pace", "cash", "customers")}
    figures.update(pace=metrics.pace(rng, now=now), cash=metrics.cash(rng, now=now),
                   customers=metrics.customers(rng, today=date(2026, 7, 15)))
    return rows, figures


def time_passes():
    """Time goes by: what was saved before the last step is older than the next step's look-back."""
    for model in (Booking, Payment):
        model.objects.update(updated_at=F("updated_at") - timedelta(hours=2))
    RefreshState.objects.update(refreshed_at=F("refreshed_at") - timedelta(hours=1))


def test_incremental_updates_after_a_series_of_changes_equal_a_full_refresh():
    ann = make_user("ann")
    a, b = make_customer("a@example.com"), make_customer("b@example.com")
    Lead.objects.create(source="yelp", customer=a, created_at=local(2025, 2, 1, 12))
    first = booking(a, status="completed", inquiry_at=local(2025, 2, 3, 12), quoted_at=local(2025, 2, 4, 12),
                    confirmed_at=local(2025, 2, 5, 12), event_at=local(2025, 3, 1, 18), total=1000)
    pay(first, "deposit", 200, local(2025, 2, 5, 12))
    pay(first, "balance", 800, local(2025, 3, 1, 21))
    moving = booking(b, status="confirmed", inquiry_at=local(2026, 5, 1, 12), confirmed_at=local(2026, 5, 2, 12),
                     event_at=local(2026, 8, 10, 18), total=600)
    spare = booking(b, status="inquiry", inquiry_at=local(2026, 5, 3, 12), event_at=local(2026, 9, 1, 18), total=300)
    conv = Conversation.objects.create(customer=a, created_at=local(2026, 5, 1, 9), status="open")
    history.record(Kind.RECEIVED, conv, at=local(2026, 5, 1, 9), channel="sms")
    refresh.refresh_all()

    def step(change):
        time_passes()
        change()
        refresh.refresh_recent()

    # A new booking, confirmed.
    step(lambda: booking(a, status="confirmed", inquiry_at=local(2026, 6, 1, 12), confirmed_at=local(2026, 6, 2, 12),
                         event_at=local(2026, 7, 20, 18), total=900))

    def complete_and_move():
        moving.event_at = local(2026, 6, 5, 18)  # moved from August to June, and held
        moving.status, moving.completed_at = "completed", local(2026, 6, 5, 21)
        moving.save()
    step(complete_and_move)
    step(lambda: pay(moving, "refund", 50, local(2026, 6, 7, 12)))

    def cancel():
        first.status, first.cancelled_at = "cancelled", local(2025, 2, 20, 12)
        first.save()
    step(cancel)
    step(lambda: Lead.objects.create(source="google", customer=b, created_at=local(2026, 4, 1, 12)))
    step(spare.delete)
    step(lambda: history.record(Kind.REPLIED, conv, at=local(2026, 5, 1, 9, 20), actor=ann, channel="sms"))
    step(lambda: history.record(Kind.STATUS_CHANGED, conv, at=local(2026, 5, 1, 10), actor=ann,
                                from_value="open", to_value="resolved"))
    step(lambda: history.record(Kind.REOPENED, conv, at=local(2026, 5, 3, 9), from_value="resolved",
                                to_value="open", channel="sms"))
    step(lambda: history.record(Kind.RECEIVED, conv, at=local(2026, 5, 3, 9), channel="sms"))
    step(lambda: merge_customers(source=b, into=a))

    incremental = snapshot()
    refresh.refresh_all()
    full = snapshot()
    assert incremental[0] == full[0]
    assert incremental[1] == full[1]
    # And the figures are what happened: a's customer record holds the moved booking, refunded by 50.
    (fact,) = CustomerFact.objects.all()
    assert (fact.customer_id, fact.first_day, fact.completed, fact.ltv) == (a.pk, date(2026, 6, 5), 1,
                                                                           Decimal("550.00"))


def test_a_full_refresh_repairs_rollup_rows_written_wrong_and_keeps_equal_rows_apart():
    """refresh_all writes each rollup by difference (rollups.replacing): every unit whose rows differ
    from the new ones is rewritten, duplicates included, and the rest is left as it is."""
    ann = make_user("ann")
    a, b = make_customer("a@example.com"), make_customer("b@example.com")
    for customer, day in ((a, 3), (b, 4)):
        done = booking(customer, status="completed", inquiry_at=local(2026, 2, day, 12),
                       confirmed_at=local(2026, 2, day + 1, 12), event_at=local(2026, 3, day, 18), total=1000)
        pay(done, "deposit", 200, local(2026, 2, day + 1, 12))
    for customer, day in ((a, 1), (b, 2)):
        conv = Conversation.objects.create(customer=customer, created_at=local(2026, 5, day, 9), status="open")
        history.record(Kind.RECEIVED, conv, at=local(2026, 5, day, 9), channel="sms")
        history.record(Kind.REPLIED, conv, at=local(2026, 5, day, 9, 10), actor=ann, channel="sms")
        history.record(Kind.STATUS_CHANGED, conv, at=local(2026, 5, day, 10), actor=ann, from_value="open",
                       to_value="resolved")
    refresh.refresh_all()
    right = snapshot()

    BookingFact.objects.filter(customer_id=a.pk).update(total=1)
    CustomerFact.objects.filter(customer_id=b.pk).delete()
    cycle = ResponseCycle.objects.first()
    ResponseCycle.objects.filter(pk=cycle.pk).update(wall_seconds=1)
    resolution = Resolution.objects.first()
    resolution.pk = None
    resolution.save()  # the same row twice: as a set nothing differs, as rows one is too many
    ReplyDay.objects.update(prev_day=date(2020, 1, 1))
    refresh.refresh_all()
    assert snapshot() == right
    assert Resolution.objects.count() == 2 and BookingFact.objects.get(customer_id=a.pk).total == 1000


def test_a_full_refresh_sees_a_change_that_bypassed_save():
    """A queryset update changes no updated_at: the nightly full refresh still brings it in."""
    c = make_customer()
    b = booking(c, status="confirmed", confirmed_at=local(2026, 6, 2, 12), event_at=local(2026, 7, 20, 18),
                total=900)
    refresh.refresh_all()
    Booking.objects.filter(pk=b.pk).update(total=1500)
    refresh.refresh_all()
    june = Range(date(2026, 6, 1), date(2026, 6, 30), "month")
    assert BookingFact.objects.get().total == 1500
    assert metrics.revenue(june)["totals"]["booked_amount"] == 1500
    assert sorted(PaceDay.objects.values_list("month", "amount")) == [(date(2026, 7, 1), 1500)]


@pytest.mark.postgres
def test_the_incremental_step_rewrites_only_the_rollup_rows_that_changed():
    """A new message changes one or two counts of its day, a new booking one line of its event month's
    ledger: only those rows are written (rollups.rewriting), the day's and the month's other rows keep
    their ids, so a step every half minute does not leave a day's or a month's rows dead behind it for
    every read to step over. Equal rows are counted: a stray copy of a row is taken out."""
    ann = make_user("ann")
    a = make_customer("a@example.com")
    for n, channel in enumerate(("sms", "email", "sms")):
        conv = Conversation.objects.create(customer=make_customer(f"c{n}@example.com"),
                                           created_at=local(2026, 5, 4, 9 + n), status="open")
        history.record(Kind.RECEIVED, conv, at=local(2026, 5, 4, 9 + n), channel=channel)
        history.record(Kind.REPLIED, conv, at=local(2026, 5, 4, 9 + n, 20), actor=ann, channel=channel)
    for day in (2, 9, 16):
        booking(a, status="confirmed", inquiry_at=local(2026, 5, day, 12), confirmed_at=local(2026, 5, day, 13),
                event_at=local(2026, 7, 25, 18), total=500)
    refresh.refresh_all()

    def rows(model, fields, **where):
        return {row[0]: row[1:] for row in model.objects.filter(**where).values_list("id", *fields)}

    activity, ledger = ("kind", "agent_id", "channel", "hour", "count"), ("month", "day", "count", "amount")
    day_before = rows(ActivityDay, activity, day=date(2026, 5, 4))
    ledger_before = rows(PaceDay, ledger, month=date(2026, 7, 1))
    assert len(day_before) == 7 and len(ledger_before) == 3  # 2 channels, 3 hours, replies, first replies
    stray = PaceDay.objects.get(day=date(2026, 5, 9))
    PaceDay.objects.create(month=stray.month, day=stray.day, count=stray.count, amount=stray.amount)  # a copy

    time_passes()
    conv = Conversation.objects.create(customer=a, created_at=local(2026, 5, 4, 15), status="open")
    history.record(Kind.RECEIVED, conv, at=local(2026, 5, 4, 15), channel="sms")  # a new hour, sms again
    booking(a, status="confirmed", inquiry_at=local(2026, 5, 20, 12), confirmed_at=local(2026, 5, 20, 13),
            event_at=local(2026, 7, 26, 18), total=700)
    refresh.refresh_recent()

    day_after = rows(ActivityDay, activity, day=date(2026, 5, 4))
    ledger_after = rows(PaceDay, ledger, month=date(2026, 7, 1))
    kept = {pk: row for pk, row in day_after.items() if day_before.get(pk) == row}
    # The sms count of the day (2 -> 3) is written again, the 15:00 hour is new; every other row is kept.
    assert len(kept) == len(day_before) - 1
    written = sorted(row for pk, row in day_after.items() if pk not in kept)
    assert [(kind, channel, hour, count) for kind, _, channel, hour, count in written] == [
        ("received", "sms", None, 3), ("received_hour", "", 15, 1)]
    # The ledger: its three lines kept, the copy gone, the new booking's line added.
    assert {pk: row for pk, row in ledger_after.items() if pk in ledger_before} == ledger_before
    assert sorted(row for pk, row in ledger_after.items() if pk not in ledger_before) == [
        (date(2026, 7, 1), date(2026, 5, 20), 1, Decimal("700.00"))]


def test_whole_months_from_month_rollups_give_the_figures_the_days_give(monkeypatch):
    """Staff and inbox counts and the funnel read a range's whole months from ActivityMonth and
    FunnelMonth and its other days from ActivityDay and FunnelDay: every range (whole months,
    part-months at either end, by week and by day, one agent's view) gives the same figures as reading
    every day, and the month rows are the days' sums."""
    ann, bob = make_user("ann"), make_user("bob")
    for n, (month, day, channel, agent) in enumerate([(1, 30, "sms", ann), (2, 1, "email", bob), (2, 14, "sms", ann),
                                                      (2, 28, "chat", bob), (3, 1, "sms", ann), (3, 17, "email", ann),
                                                      (4, 2, "sms", bob)]):
        conv = Conversation.objects.create(customer=make_customer(f"c{n}@example.com"),
                                           created_at=local(2026, month, day, 9), status="open")
        history.record(Kind.RECEIVED, conv, at=local(2026, month, day, 9 + n), channel=channel)
        history.record(Kind.REPLIED, conv, at=local(2026, month, day, 10 + n), actor=agent, channel=channel)
        history.record(Kind.NOTE, conv, at=local(2026, month, day, 11 + n), actor=agent)
        history.record(Kind.STATUS_CHANGED, conv, at=local(2026, month, day, 12 + n), actor=agent,
                       from_value="open", to_value="resolved")
    c = make_customer("funnel@example.com")
    for n, (month, day, status, source) in enumerate([(1, 31, "completed", "yelp"), (2, 1, "lost", "website"),
                                                      (2, 1, "completed", "yelp"), (2, 27, "quoted", "website"),
                                                      (3, 1, "lost", "yelp"), (3, 31, "completed", "website"),
                                                      (4, 1, "cancelled", "yelp")]):
        at = local(2026, month, day, 12)
        booking(c, status=status, inquiry_at=at, quoted_at=at, confirmed_at=None if status == "lost" else at,
                event_at=local(2026, 6, 1 + n, 18), total=500 + n, guests=10 + n, source=source,
                lost="date_unavailable" if status == "lost" else None)
    refresh.refresh_all()
    assert sorted(ActivityMonth.objects.filter(kind="received", channel="sms").values_list("month", "count")) == [
        (date(2026, 1, 1), 1), (date(2026, 2, 1), 1), (date(2026, 3, 1), 1), (date(2026, 4, 1), 1)]
    assert sorted(FunnelMonth.objects.filter(dim="source", key="yelp").values_list("month", "inquiries", "value")) == [
        (date(2026, 1, 1), 1, Decimal("500.00")), (date(2026, 2, 1), 1, Decimal("502.00")),
        (date(2026, 3, 1), 1, Decimal("0.00")), (date(2026, 4, 1), 1, Decimal("0.00"))]

    def figures(rng):
        return (metrics.staff(rng), metrics.staff(rng, agent_id=ann.pk), metrics.inbox(rng), metrics.bookings(rng))

    ranges = [Range(date(2026, 2, 1), date(2026, 3, 31), "month"), Range(date(2026, 1, 30), date(2026, 4, 2), "month"),
              Range(date(2026, 1, 15), date(2026, 3, 20), "week"), Range(date(2026, 2, 1), date(2026, 2, 28), "day"),
              Range(date(2026, 2, 10), date(2026, 3, 5), "month")]
    with_months = [figures(rng) for rng in ranges]
    assert with_months[1][0]["totals"]["replies"] == 7 and with_months[1][2]["totals"]["received"] == 7
    assert with_months[1][3]["totals"]["inquiries"] == 7 and len(with_months[1][3]["turned_away"]) == 2
    monkeypatch.setattr("analytics.rollups.whole_months", lambda rng: (None, [(rng.start, rng.end)]))
    assert [figures(rng) for rng in ranges] == with_months


def test_cohorts_of_whole_months_come_from_cohort_month_and_equal_the_facts(monkeypatch):
    """A cohort's figures for a whole month are kept by the refresh (CohortMonth); a range's other days
    are counted from the customers' facts. Both ways give the same customers figures over ranges with
    whole months, part-months at either end and none; a refund moves its cohort's row at the next step."""
    firsts = [(1, 20, 400), (2, 1, 1000), (2, 14, 300), (2, 28, 700), (3, 1, 250), (3, 15, 900), (4, 2, 500)]
    customers = []
    for n, (month, day, total) in enumerate(firsts):
        c = make_customer(f"cohort{n}@example.com")
        customers.append(booking(c, status="completed", inquiry_at=local(2026, month, day, 10) - timedelta(days=20),
                                 confirmed_at=local(2026, month, day, 10) - timedelta(days=10),
                                 event_at=local(2026, month, day, 18), total=total))
        if n % 2:  # a second event two months later: a repeat within 6 months
            booking(c, status="completed", inquiry_at=local(2026, month, day, 10),
                    confirmed_at=local(2026, month, day, 11), event_at=local(2026, month + 2, 10, 18), total=100)
    refresh.refresh_all()
    feb = CohortMonth.objects.get(first_month=date(2026, 2, 1))
    # February's cohort: 1000 + 100 (a repeat), 300, 700 + 100 (a repeat): median 800, sum 2200.
    assert (feb.customers, feb.ltv_sum, feb.ltv_median, feb.repeat_6) == (3, Decimal("2200.00"), 800.0, 2)

    today = date(2026, 11, 30)
    ranges = [Range(date(2026, 2, 1), date(2026, 3, 31), "month"), Range(date(2026, 1, 15), date(2026, 4, 5), "month"),
              Range(date(2026, 2, 10), date(2026, 3, 10), "week")]
    kept = [metrics.customers(rng, today=today) for rng in ranges]
    assert [c["customers"] for c in kept[1]["cohorts"]] == [1, 3, 2, 1]  # part-months at both ends
    monkeypatch.setattr("analytics.rollups.whole_months", lambda rng: (None, [(rng.start, rng.end)]))
    assert [metrics.customers(rng, today=today) for rng in ranges] == kept
    monkeypatch.undo()

    time_passes()
    pay(customers[2], "refund", 200, local(2026, 5, 1, 12))  # February's 300 becomes 100
    refresh.refresh_recent()
    feb = CohortMonth.objects.get(first_month=date(2026, 2, 1))
    assert (feb.customers, feb.ltv_sum, feb.ltv_median) == (3, Decimal("2000.00"), 800.0)
