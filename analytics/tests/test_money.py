"""Revenue, pace, funnel, customers, leads and cash against small data sets worked out by hand."""
from datetime import date, timedelta
from decimal import Decimal

import pytest

from analytics import metrics, refresh
from analytics.timebase import Range
from analytics.tests.helpers import booking, local, pay
from crm.models import Lead, LostReason, MarketingSpend
from tests.factories import make_customer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def la(settings):
    settings.BUSINESS_TIME_ZONE = "America/Los_Angeles"
    settings.CHURN_DAYS = 548


def by_period(result):
    return {row["period"]: row for row in result["series"]}


def test_revenue_three_lenses_never_mixed_with_previous_period_and_last_year():
    c = make_customer()
    b1 = booking(c, status="completed", confirmed_at=local(2026, 3, 10, 12), event_at=local(2026, 4, 5, 18),
                 total=1000)
    pay(b1, "deposit", 200, local(2026, 3, 10, 12))
    pay(b1, "balance", 800, local(2026, 4, 5, 21))
    pay(b1, "refund", 100, local(2026, 4, 10, 9))
    b2 = booking(c, status="cancelled", confirmed_at=local(2026, 3, 20, 12), cancelled_at=local(2026, 3, 25, 12),
                 event_at=local(2026, 5, 1, 18), total=500)
    pay(b2, "deposit", 100, local(2026, 3, 20, 12))
    pay(b2, "refund", 100, local(2026, 3, 25, 12))
    booking(c, status="completed", confirmed_at=local(2025, 3, 15, 12), event_at=local(2025, 4, 1, 18), total=700)
    booking(c, status="confirmed", confirmed_at=local(2026, 2, 10, 12), event_at=local(2026, 9, 1, 18), total=300)
    refresh.refresh_all()

    result = metrics.revenue(Range(date(2026, 3, 1), date(2026, 4, 30), "month"))
    march, april = by_period(result)["2026-03-01"], by_period(result)["2026-04-01"]
    # booked: only b1 (b2 was cancelled); event: b1 in April; cash: 200 + 100 - 100 in March, 800 - 100 in April.
    assert (march["booked_amount"], march["booked_count"], april["booked_amount"]) == (1000, 1, 0)
    assert (march["event_amount"], april["event_amount"], april["event_count"]) == (0, 1000, 1)
    assert (march["cash_amount"], march["cash_count"], april["cash_amount"], april["cash_count"]) == (200, 3, 700, 2)
    # Last year, same months: b3 confirmed in March 2025, held in April 2025.
    assert (march["booked_amount_last_year"], april["event_amount_last_year"]) == (700, 700)
    totals = result["totals"]
    assert (totals["booked_amount"], totals["event_amount"], totals["cash_amount"]) == (1000, 1000, 900)
    # The 61 days before (30 Dec 2025 - 28 Feb 2026) booked b4's 300: up 700/300.
    assert totals["booked_amount_previous"] == 300
    assert totals["booked_change"] == 2.3333
    # The cards' totals are the sum of the series.
    assert sum(row["cash_amount"] for row in result["series"]) == totals["cash_amount"]


def test_a_booking_confirmed_at_half_past_eleven_on_the_last_night_of_a_month_counts_in_that_month():
    booking(make_customer(), status="confirmed", confirmed_at=local(2026, 1, 31, 23, 30),
            event_at=local(2026, 6, 1, 18), total=1000)
    refresh.refresh_all()
    series = by_period(metrics.revenue(Range(date(2026, 1, 1), date(2026, 2, 28), "month")))
    assert series["2026-01-01"]["booked_amount"] == 1000
    assert series["2026-02-01"]["booked_amount"] == 0


def test_empty_periods_are_present_with_zero_counts_and_null_rates():
    result = metrics.bookings(Range(date(2026, 5, 1), date(2026, 5, 3), "day"))
    assert [row["period"] for row in result["series"]] == ["2026-05-01", "2026-05-02", "2026-05-03"]
    assert all(row["inquiries"] == 0 and row["conversion"] is None for row in result["series"])


def test_pace_compares_with_what_was_on_the_books_a_year_ago_on_the_same_day():
    c = make_customer()
    booking(c, status="confirmed", confirmed_at=local(2026, 6, 1, 12), event_at=local(2026, 7, 10, 18), total=1000)
    booking(c, status="cancelled", confirmed_at=local(2026, 5, 1, 12), cancelled_at=local(2026, 6, 10, 12),
            event_at=local(2026, 7, 12, 18), total=900)  # cancelled before today: off the books
    booking(c, status="completed", confirmed_at=local(2025, 6, 1, 12), event_at=local(2025, 7, 5, 18), total=800)
    booking(c, status="completed", confirmed_at=local(2025, 6, 30, 12), event_at=local(2025, 7, 15, 18), total=500)
    booking(c, status="cancelled", confirmed_at=local(2025, 5, 1, 12), cancelled_at=local(2025, 7, 1, 12),
            event_at=local(2025, 7, 18, 18), total=400)  # still on the books on 15 June 2025
    refresh.refresh_all()
    result = metrics.pace(Range(date(2026, 7, 1), date(2026, 7, 31), "month"), now=local(2026, 6, 15, 12))
    july = result["series"][0]
    assert (july["amount"], july["count"]) == (1000, 1)
    assert (july["amount_last_year"], july["count_last_year"]) == (1200, 2)  # 800 + 400, not the later 500
    assert july["pace"] == round((1000 - 1200) / 1200, 4)


def test_funnel_counts_conversions_lost_reasons_and_order_values():
    c = make_customer()
    LostReason.objects.filter(slug="price").update(name="Too expensive")  # names are editable
    Lead.objects.create(source="google", customer=c, created_at=local(2026, 1, 1, 12), status="converted")
    may = local(2026, 5, 10, 12)
    q, conf = may + timedelta(days=1), may + timedelta(days=2)
    for total, guests, source in ((600, 10, "yelp"), (800, 12, "yelp"), (1000, 20, "website"), (1600, 25, "website")):
        booking(c, status="completed", inquiry_at=may, quoted_at=q, confirmed_at=conf, total=total, guests=guests,
                event_at=local(2026, 6, 1, 18), source=source)
    booking(c, status="confirmed", inquiry_at=may, quoted_at=q, confirmed_at=conf, total=700,
            event_at=local(2026, 8, 1, 18))
    booking(c, status="cancelled", inquiry_at=may, quoted_at=q, confirmed_at=conf, total=700,
            cancelled_at=conf + timedelta(days=3), event_at=local(2026, 8, 2, 18))
    booking(c, status="lost", inquiry_at=may, lost="date_unavailable", total=900, event_at=local(2026, 6, 20, 18))
    booking(c, status="lost", inquiry_at=may, quoted_at=q, lost="price", total=900, event_at=local(2026, 6, 21, 18))
    booking(c, status="inquiry", inquiry_at=may, total=500, event_at=local(2026, 9, 1, 18))
    booking(c, status="inquiry", inquiry_at=may, total=500, event_at=local(2026, 9, 2, 18))
    Lead.objects.create(source="yelp", status="lost", lost_reason=LostReason.objects.get(slug="price"),
                        created_at=may)

    refresh.refresh_all()
    result = metrics.bookings(Range(date(2026, 5, 1), date(2026, 5, 31), "month"))
    t = result["totals"]
    assert (t["inquiries"], t["quoted"], t["confirmed"], t["completed"], t["lost"], t["cancelled"]) == (10, 7, 6, 4, 2, 1)
    assert (t["quote_rate"], t["confirm_rate"], t["complete_rate"], t["conversion"]) == (0.7, 0.8571, 0.6667, 0.4)
    # Completed: guests 10+12+20+25 = 67, value 4000.
    assert t["average_guests"] == 16.75
    assert t["revenue_per_guest"] == Decimal("59.70")
    assert t["order_value_mean"] == Decimal("1000.00")
    assert t["order_value_median"] == 900  # (800 + 1000) / 2
    reasons = {r["reason"]: (r["bookings"], r["leads"]) for r in result["lost_reasons"]}
    assert reasons["Date unavailable"] == (1, 0) and reasons["Too expensive"] == (1, 1)
    yelp = next(r for r in result["by_source"] if r["source"] == "yelp")
    assert (yelp["inquiries"], yelp["completed"]) == (2, 2)
    assert [(r["source"], r["inquiries"]) for r in result["by_first_touch"]] == [("google", 10)]
    # Turned away: one inquiry for 20 June lost to a taken date, worth the mean order value.
    assert result["turned_away"] == [{"date": "2026-06-20", "inquiries": 1, "value": Decimal("1000.00")}]


def test_customers_ltv_cohort_repeat_days_to_second_and_churn():
    c1, c2, c3, c4 = (make_customer(f"c{n}@example.com") for n in range(1, 5))
    first = booking(c1, status="completed", event_at=local(2024, 1, 10, 12), total=1000)
    booking(c1, status="completed", event_at=local(2024, 5, 1, 12), total=500)
    pay(first, "refund", 100, local(2024, 1, 15, 12))
    booking(c2, status="completed", event_at=local(2024, 1, 20, 12), total=800)
    booking(c2, status="completed", event_at=local(2025, 1, 5, 12), total=800)
    booking(c3, status="completed", event_at=local(2024, 1, 25, 12), total=600)
    booking(c3, status="confirmed", confirmed_at=local(2026, 11, 1, 12), event_at=local(2026, 12, 20, 12), total=600)
    booking(c4, status="completed", event_at=local(2026, 8, 5, 12), total=900)

    refresh.refresh_all()
    result = metrics.customers(Range(date(2024, 1, 1), date(2026, 11, 30), "month"), today=date(2026, 11, 30))
    jan, aug = result["cohorts"]
    # LTV net of refunds: c1 1000 + 500 - 100 = 1400, c2 1600, c3 600.
    assert (jan["cohort"], jan["customers"], jan["ltv_mean"], jan["ltv_median"]) == ("2024-01-01", 3, 1200, 1400)
    # c1 came back within 6 months; c2 within 12; by 24 months still two of three.
    assert (jan["repeat_6"], jan["repeat_12"], jan["repeat_24"]) == (0.3333, 0.6667, 0.6667)
    # August 2026's cohort has not had six months yet: blank, not zero.
    assert (aug["repeat_6"], aug["repeat_12"], aug["repeat_24"]) == (None, None, None)
    t = result["totals"]
    assert (t["ltv_mean"], t["ltv_median"]) == (1125, 1150)  # 1400, 1600, 600, 900
    assert t["days_to_second_median"] == 231.5  # 112 days (c1) and 351 days (c2)
    # Churn: no live booking since 548 days before 30 Nov 2026 (31 May 2025): c1 and c2; c3 has one ahead.
    assert (t["customers_with_event"], t["churned"], t["churn_rate"]) == (4, 2, 0.5)
    assert (t["new"], t["returning"]) == (4, 2)
    assert by_period(result)["2024-05-01"]["returning"] == 1


def test_lead_sources_roi_on_net_revenue():
    c = make_customer()
    april = local(2026, 4, 10, 12)
    won = booking(c, status="completed", event_at=local(2026, 4, 20, 18), total=1000)
    pay(won, "refund", 100, local(2026, 4, 25, 12))
    Lead.objects.create(source="yelp", customer=c, booking=won, status="converted", created_at=april)
    Lead.objects.create(source="yelp", status="lost", lost_reason=LostReason.objects.get(slug="price"),
                        created_at=april)
    Lead.objects.create(source="yelp", status="new", created_at=april)
    google_won = booking(c, status="completed", event_at=local(2026, 4, 21, 18), total=500)
    Lead.objects.create(source="google", customer=c, booking=google_won, status="converted", created_at=april)
    MarketingSpend.objects.create(source="yelp", month=date(2026, 4, 1), amount=300)
    MarketingSpend.objects.create(source="google", month=date(2026, 4, 1), amount=1000)
    MarketingSpend.objects.create(source="google", month=date(2026, 5, 1), amount=5000)  # outside the range

    refresh.refresh_all()
    result = metrics.leads(Range(date(2026, 4, 1), date(2026, 4, 30)))
    rows = {r["source"]: r for r in result["by_source"]}
    assert (rows["yelp"]["leads"], rows["yelp"]["converted"], rows["yelp"]["revenue"]) == (3, 1, 900)
    assert (rows["yelp"]["cost_per_lead"], rows["yelp"]["cost_per_event"], rows["yelp"]["roi"]) == (100, 300, 3.0)
    assert (rows["google"]["revenue"], rows["google"]["spend"], rows["google"]["roi"]) == (500, 1000, 0.5)
    t = result["totals"]
    assert (t["leads"], t["converted"], t["revenue"], t["spend"], t["roi"]) == (4, 2, 1400, 1300, 1.08)


def test_cash_keeps_deposits_balances_overdue_and_quotes_apart():
    c = make_customer()
    now = local(2026, 6, 15, 12)
    ahead = booking(c, status="confirmed", confirmed_at=local(2026, 6, 1, 12), event_at=local(2026, 6, 20, 18),
                    total=1000)
    pay(ahead, "deposit", 200, local(2026, 6, 1, 12))
    late = booking(c, status="completed", event_at=local(2026, 6, 5, 18), total=500)
    pay(late, "deposit", 100, local(2026, 5, 20, 12))
    settled = booking(c, status="completed", event_at=local(2026, 6, 6, 18), total=400)
    pay(settled, "deposit", 100, local(2026, 5, 20, 12))
    pay(settled, "balance", 300, local(2026, 6, 6, 21))
    pay(settled, "refund", 50, local(2026, 6, 8, 12))  # a concession: not a debt
    booking(c, status="quoted", quoted_at=local(2026, 6, 2, 12), event_at=local(2026, 6, 25, 18), total=700)

    refresh.refresh_all()
    t = metrics.cash(Range(date(2026, 6, 1), date(2026, 6, 30), "month"), now=now)["totals"]
    assert (t["deposits_held"], t["balance_due"]) == (200, 800)
    assert (t["overdue"], t["overdue_bookings"]) == (400, 1)
    assert t["quotes"] == 700


def test_chatbot_reports_zeros_without_sessions():
    result = metrics.chatbot(Range(date(2026, 6, 1), date(2026, 6, 3)))
    assert [r["sessions"] for r in result["series"]] == [0, 0, 0]
    assert result["totals"]["handoff_rate"] is None and result["totals"]["satisfaction"] is None


def test_chatbot_sessions_handoffs_satisfaction_cost_and_the_bookings_that_followed(django_assert_num_queries):
    from channels_ingest.chat.models import ChatbotSession

    ana, ben, cy, dee = (make_customer(f"{name}@example.com", first_name=name) for name in ("ana", "ben", "cy", "dee"))
    ChatbotSession.objects.create(session_id="a", customer=ana, handed_off=True, rating=4, cost=Decimal("0.02"),
                                  started_at=local(2026, 6, 2, 23, 30))  # June 2 locally (June 3 in UTC)
    ChatbotSession.objects.create(session_id="b", customer=ben, rating=2, cost=Decimal("0.04"),
                                  started_at=local(2026, 6, 9, 12))  # after Ben's booking: leads to nothing
    ChatbotSession.objects.create(session_id="c", customer=cy, cost=Decimal("0"), started_at=local(2026, 6, 3, 9))
    ChatbotSession.objects.create(session_id="old", customer=cy, started_at=local(2026, 4, 1, 9))  # out of range
    # Before the range, within the window of a booking in it: not a June session, but Dee's booking follows it.
    ChatbotSession.objects.create(session_id="d", customer=dee, rating=1, started_at=local(2026, 5, 25, 9))
    booking(ana, status="confirmed", event_at=local(2026, 8, 1, 18), total=1000, confirmed_at=local(2026, 6, 5, 10))
    booking(ben, status="confirmed", event_at=local(2026, 8, 2, 18), total=800, confirmed_at=local(2026, 6, 8, 10))
    booking(cy, status="confirmed", event_at=local(2026, 8, 3, 18), total=600,
            confirmed_at=local(2026, 6, 3, 9) + timedelta(days=15))  # June 18: past the 14-day window
    booking(dee, status="confirmed", event_at=local(2026, 8, 4, 18), total=500, confirmed_at=local(2026, 6, 1, 10))

    with django_assert_num_queries(2):  # the sessions (from the window before the range) once, the bookings
        result = metrics.chatbot(Range(date(2026, 6, 1), date(2026, 6, 30)))
    t = result["totals"]
    # Worked by hand: 3 sessions in June, 1 handed off; ratings 4 and 2 (one unrated) -> 3.0;
    # cost 0.06 / 3 = 0.02; Ana's booking (3 days after her session) and Dee's (7 days after her
    # May session) follow one.
    assert (t["sessions"], t["handoffs"], t["handoff_rate"]) == (3, 1, 0.3333)
    assert t["satisfaction"] == 3.0 and t["cost_per_session"] == Decimal("0.0200")
    assert (t["bookings"], t["revenue"]) == (2, Decimal("1500"))
    by_day = {r["period"]: r for r in result["series"]}
    assert by_day["2026-06-02"]["sessions"] == 1 and by_day["2026-06-03"]["sessions"] == 1
    assert by_day["2026-06-05"]["bookings"] == 1 and by_day["2026-06-08"]["bookings"] == 0
    assert by_day["2026-06-01"]["bookings"] == 1 and by_day["2026-06-01"]["sessions"] == 0


def test_email_rates_per_campaign_and_for_transactional_mail():
    from channels_ingest.email.models import Campaign, SentEmail, TrackingEvent

    Campaign.objects.create(name="Summer", subject="s", body="b", started_at=local(2026, 6, 2, 9), sent_count=200,
                            delivered_count=190, opened_count=95, clicked_count=19, bounced_count=10,
                            unsubscribed_count=2)
    Campaign.objects.create(name="Old", subject="s", body="b", started_at=local(2026, 5, 2, 9), sent_count=50)
    mails = [SentEmail.objects.create(kind="confirmation", to=f"c{n}@example.com", esp_message_id=f"m{n}",
                                      created_at=local(2026, 6, 3, 9)) for n in range(4)]
    for n, (mail, types) in enumerate(zip(mails, [["delivered", "opened", "opened"], ["delivered"], ["bounced"], []])):
        for k, event_type in enumerate(types):  # two "opened" events for one message count once
            TrackingEvent.objects.create(event_id=f"e{n}-{k}", event_type=event_type, sent_email=mail)

    result = metrics.email(Range(date(2026, 6, 1), date(2026, 6, 30), "month"))
    (summer,) = result["campaigns"]
    assert (summer["campaign"], summer["delivery_rate"], summer["open_rate"], summer["click_rate"]) == (
        "Summer", 0.95, 0.5, 0.1)
    assert (summer["bounce_rate"], summer["unsubscribe_rate"]) == (0.05, 0.0105)
    (confirmations,) = result["transactional"]
    assert (confirmations["sent"], confirmations["delivered"], confirmations["opened"],
            confirmations["bounced"]) == (4, 2, 1, 1)
    assert (confirmations["delivery_rate"], confirmations["open_rate"], confirmations["bounce_rate"]) == (
        0.5, 0.5, 0.25)
    assert result["totals"]["sent"] == 204
    assert result["series"][0]["sent"] == 4  # campaign recipients add theirs by their own sent time
