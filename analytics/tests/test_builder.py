"""The report builder's numbers on a small hand-built data set, and its refusals.

Local times are in Los Angeles. Customer A has three completed bookings (tier silver with the
default thresholds), B one (tier none).

 #  customer source  event type  location  confirmed (local)   event (local)   status     total  guests
 1  A        website birthday    San Jose  Jan 10 12:00        Jan 20          completed  1000   10
 2  A        website wedding     Oakland   Jan 31 23:30 (UTC: Feb 1) Feb 14    completed  2000   20
 3  A        yelp    birthday    San Jose  Feb 5               Mar 1           completed   500    8
 4  B        yelp    corporate   San Jose  Feb 10              Feb 20          completed  1500   30
 5  B        website birthday    (none)    Feb 11, cancelled Feb 12  Mar 20    cancelled   900   12
 6  B        google  birthday    (none)    never (lost: date unavailable)      lost        700   15
Payments: #1 deposit 300 (Jan 10) and balance 700 (Jan 20); #5 deposit 200 (Feb 11), refunded (Feb 12).
"""
from datetime import date, timedelta

import pytest

from analytics import builder, metrics, refresh, timebase
from analytics.tests.helpers import booking, local, pay
from analytics.tests.test_conversations import conversation
from inbox import history
from tests.factories import make_customer, make_user

pytestmark = pytest.mark.django_db
Kind = history.Kind
Q1 = {"start": "2026-01-01", "end": "2026-03-31"}
JUNE = {"start": "2026-06-01", "end": "2026-06-30"}


@pytest.fixture(autouse=True)
def la(settings):
    settings.BUSINESS_TIME_ZONE = "America/Los_Angeles"
    settings.BUSINESS_HOURS = {}
    settings.LOYALTY_TIERS = {"silver": 2, "gold": 5, "platinum": 10}
    settings.ANALYTICS_REFRESH_SECONDS = 0


@pytest.fixture
def shop():
    a, b = make_customer("a@example.com", "Ann", "A"), make_customer("b@example.com", "Ben", "B")
    one = booking(a, status="completed", source="website", event_type="birthday", location="San Jose",
                  confirmed_at=local(2026, 1, 10, 12), event_at=local(2026, 1, 20, 18), total=1000, guests=10)
    booking(a, status="completed", source="website", event_type="wedding", location="Oakland",
            confirmed_at=local(2026, 1, 31, 23, 30), event_at=local(2026, 2, 14, 18), total=2000, guests=20)
    booking(a, status="completed", source="yelp", event_type="birthday", location="San Jose",
            confirmed_at=local(2026, 2, 5, 12), event_at=local(2026, 3, 1, 18), total=500, guests=8)
    booking(b, status="completed", source="yelp", event_type="corporate", location="San Jose",
            confirmed_at=local(2026, 2, 10, 12), event_at=local(2026, 2, 20, 18), total=1500, guests=30)
    five = booking(b, status="cancelled", source="website", event_type="birthday", confirmed_at=local(2026, 2, 11, 12),
                   cancelled_at=local(2026, 2, 12, 12), event_at=local(2026, 3, 20, 18), total=900, guests=12)
    booking(b, status="lost", source="google", event_type="birthday", inquiry_at=local(2026, 2, 15, 12),
            event_at=local(2026, 4, 1, 18), total=700, guests=15, lost="date_unavailable")
    pay(one, "deposit", 300, local(2026, 1, 10, 12))
    pay(one, "balance", 700, local(2026, 1, 20, 12))
    pay(five, "deposit", 200, local(2026, 2, 11, 12))
    pay(five, "refund", 200, local(2026, 2, 12, 12))
    return a, b


def report(**spec):
    return builder.run(builder.validate(spec, today=date(2026, 7, 1)))


def cells(result):
    """{(dimension values...): value} of a result."""
    return {tuple(row[d] for d in result.spec.dimensions): row["value"] for row in result.rows}


def test_one_dimension_event_revenue_by_loyalty_tier(shop):
    result = report(measure="event_revenue", dimensions=["loyalty_tier"], range=Q1)
    # silver (A): 1000 + 2000 + 500; none (B): 1500 (the cancelled and the lost booking never completed).
    assert cells(result) == {("none",): 1500, ("silver",): 3500}
    assert [row["loyalty_tier"] for row in result.rows] == ["none", "silver"]  # tiers from none up
    assert result.total == 5000


def test_two_dimensions_booked_revenue_by_source_and_month(shop):
    result = report(measure="booked_revenue", dimensions=["source", "month"], range=Q1)
    # #2 was confirmed at 23:30 on 31 January in Los Angeles: January, though February in UTC.
    # #5 was cancelled and #6 never confirmed: neither is booked revenue. Empty months are there, as 0.
    assert cells(result) == {
        ("website", "2026-01"): 3000, ("website", "2026-02"): 0, ("website", "2026-03"): 0,
        ("yelp", "2026-01"): 0, ("yelp", "2026-02"): 2000, ("yelp", "2026-03"): 0,
    }
    assert result.total == 5000
    assert list(result.csv())[:2] == [["source", "month", "booked_revenue"], ["website", "2026-01", 3000]]


def test_filters_narrow_the_rows(shop):
    birthdays = report(measure="booked_revenue", dimensions=["source"], filters={"event_type": ["birthday"]},
                       range=Q1)
    assert cells(birthdays) == {("website",): 1000, ("yelp",): 500}
    san_jose_guests = report(measure="guests", dimensions=["event_type"], filters={"location": ["San Jose"]},
                             range=Q1)
    assert cells(san_jose_guests) == {("birthday",): 18, ("corporate",): 30}
    silver_inquiries = report(measure="inquiries", filters={"loyalty_tier": ["silver"]}, range=Q1)
    assert silver_inquiries.total == 3


def test_cash_is_net_of_refunds_by_the_bookings_source(shop):
    result = report(measure="cash_net", dimensions=["source"], range=Q1)
    assert cells(result) == {("website",): 1000}  # 300 + 700 + 200 - 200


def test_a_location_that_matches_nothing_is_an_empty_report_not_an_error(shop):
    result = report(measure="booked_revenue", dimensions=["source"], filters={"location": ["source; DROP TABLE x"]},
                    range=Q1)
    assert result.rows == [] and result.total == 0


@pytest.fixture
def inbox_team(shop):
    a, b = shop
    ann, bob = make_user("ann", first_name="Ann"), make_user("bob", first_name="Bob")
    t = local(2026, 6, 1, 10)
    conversation(a, t, (600, Kind.REPLIED, ann, {}),
                 (3600, Kind.STATUS_CHANGED, ann, {"from_value": "open", "to_value": "resolved"}))
    conversation(b, t + timedelta(days=1), (120, Kind.REPLIED, ann, {}), (200, Kind.REPLIED, ann, {}))
    conversation(b, t + timedelta(days=3), (3600, Kind.REPLIED, bob, {}),
                 (7200, Kind.STATUS_CHANGED, bob, {"from_value": "open", "to_value": "resolved"}), channel="email")
    refresh.refresh_all()
    return ann, bob


def test_conversation_measures_by_agent_and_channel(inbox_team):
    ann, bob = inbox_team
    replies = report(measure="replies", dimensions=["agent", "channel"], range=JUNE)
    assert cells(replies) == {(ann.pk, "sms"): 3, (bob.pk, "email"): 1}
    assert list(replies.csv())[1] == [ann.pk, "Ann", "sms", 3]
    # Waits: Ann 600 and 120 s, Bob 3600 s.
    frt = report(measure="first_response_median", dimensions=["agent"], range=JUNE)
    assert cells(frt) == {(ann.pk,): 360, (bob.pk,): 3600}
    assert frt.total == 600
    assert cells(report(measure="first_response_median", dimensions=["month"], range=JUNE)) == {("2026-06",): 600}
    assert cells(report(measure="conversations", dimensions=["agent"], range=JUNE)) == {(ann.pk,): 2, (bob.pk,): 1}
    assert cells(report(measure="replies", dimensions=["loyalty_tier"], range=JUNE)) == {("silver",): 1,
                                                                                         ("none",): 3}
    assert cells(report(measure="resolution_median", dimensions=["channel"], range=JUNE)) == {("sms",): 3600,
                                                                                              ("email",): 7200}


def test_every_measure_total_equals_its_metric(inbox_team):
    """The builder reads the metrics' own rows: its totals are the dashboard's figures."""
    q1, june = timebase.Range(date(2026, 1, 1), date(2026, 3, 31)), timebase.Range(date(2026, 6, 1), date(2026, 6, 30))
    revenue, funnel, leads = metrics.revenue(q1)["totals"], metrics.bookings(q1)["totals"], metrics.leads(q1)["totals"]
    staff, inbox = metrics.staff(june)["totals"], metrics.inbox(june)["totals"]
    by_agent = metrics.staff(june)["by_agent"]
    expected = {
        "inquiries": (Q1, funnel["inquiries"]), "completed_bookings": (Q1, revenue["event_count"]),
        "booked_revenue": (Q1, revenue["booked_amount"]), "event_revenue": (Q1, revenue["event_amount"]),
        "cash_net": (Q1, revenue["cash_amount"]), "leads": (Q1, leads["leads"]),
        "converted_leads": (Q1, leads["converted"]), "received": (JUNE, inbox["received"]),
        "replies": (JUNE, staff["replies"]), "resolutions": (JUNE, staff["resolutions"]),
        "conversations": (JUNE, sum(a["conversations"] for a in by_agent)),
        "first_response_median": (JUNE, staff["first_response_median"]),
        "first_response_p90": (JUNE, staff["first_response_p90"]),
        "resolution_median": (JUNE, staff["resolution_median"]),
    }
    for name, (rng, figure) in expected.items():
        assert report(measure=name, range=rng).total == pytest.approx(figure), name
    assert expected.keys() | {"guests"} == builder.MEASURES.keys()


@pytest.mark.parametrize("spec, message", [
    ({"measure": "profit"}, "Unknown measure 'profit'; choose one of: inquiries,"),
    ({"measure": "replies", "dimensions": ["agent", "channel", "month"]}, "At most 2 dimensions, got 3."),
    ({"measure": "booked_revenue", "dimensions": ["agent"]},
     "Booked revenue cannot be split by 'agent'; it can be split by: source, loyalty_tier, event_type, location, month."),
    ({"measure": "booked_revenue", "filters": {"status": ["lost"]}},
     "Booked revenue cannot be filtered by 'status'; it takes filters on: source, loyalty_tier, event_type, location."),
    ({"measure": "booked_revenue", "filters": {"source": ["source; DROP TABLE crm_booking"]}},
     "'source; DROP TABLE crm_booking' is not a source; use one of: website,"),
    ({"measure": "replies", "filters": {"agent": ["1 OR 1=1"]}},
     "An agent filter names people by their user id (a whole number), not '1 OR 1=1'."),
    ({"measure": "booked_revenue", "filters": {"month": ["2026-01"]}},
     "Booked revenue cannot be filtered by 'month';"),
    ({"measure": "booked_revenue", "filters": {"source": []}}, "The filter on source must be a list of 1 to 50 values."),
    ({"measure": "booked_revenue", "sql": "SELECT 1"}, "Unknown key 'sql' in the spec;"),
    ({"measure": "booked_revenue", "range": {"start": "2026-02-01", "end": "2026-01-01"}}, "'start' is after 'end'."),
    ({"measure": "booked_revenue", "range": {"start": "2000-01-01", "end": "2026-01-01"}},
     "The range is longer than 10 years."),
    ({"measure": "booked_revenue", "range": {"start": 20260101, "end": "2026-01-31"}}, "'range' must be"),
    ({"measure": "booked_revenue", "range": {"preset": "forever"}}, "Unknown range preset 'forever';"),
    (["booked_revenue"], "A report spec is a JSON object"),
])
def test_a_bad_spec_says_what_is_wrong(spec, message):
    with pytest.raises(builder.BadSpec) as caught:
        builder.validate(spec)
    assert str(caught.value).startswith(message)


def test_a_report_over_the_cell_limit_is_refused(shop, settings, monkeypatch):
    monkeypatch.setattr(builder, "MAX_CELLS", 5)
    with pytest.raises(builder.TooManyCells, match="more than 5 cells; narrow the range"):
        report(measure="booked_revenue", dimensions=["source", "month"], range=Q1)  # 2 sources x 3 months


def test_a_preset_range_moves_with_the_calendar():
    spec = builder.validate({"measure": "leads", "range": {"preset": "last_month"}}, today=date(2026, 5, 14))
    assert (spec.rng.start, spec.rng.end) == (date(2026, 4, 1), date(2026, 4, 30))
    assert spec.as_json() == {"measure": "leads", "dimensions": [], "filters": {}, "range": {"preset": "last_month"}}
