"""GET /api/v1/analytics/<metric>: managers only, JSON with series and totals, CSV, clear 400s,
and figures that follow new bookings and messages without anyone refreshing."""
import csv
import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from analytics import metrics, refresh, timebase
from analytics.tests.helpers import booking, local, pay
from crm.models import Booking
from inbox import services
from tests.factories import make_customer

pytestmark = pytest.mark.django_db
METRICS = list(metrics.METRICS)


@pytest.fixture(autouse=True)
def fresh_every_time(settings):
    settings.BUSINESS_TIME_ZONE = "America/Los_Angeles"
    settings.ANALYTICS_REFRESH_SECONDS = 0  # every read runs the incremental step first


def rows_of(response):
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.parametrize("metric", METRICS)
def test_managers_get_series_and_totals_for_every_metric(manager_client, metric):
    response = manager_client.get(f"/api/v1/analytics/{metric}?start=2026-01-01&end=2026-03-31&interval=month")
    assert response.status_code == 200
    body = response.json()
    assert body["metric"] == metric and body["time_zone"] == "America/Los_Angeles"
    assert isinstance(body["totals"], dict)
    if metric != "pace":
        assert [row["period"] for row in body["series"]] == ["2026-01-01", "2026-02-01", "2026-03-01"]


@pytest.mark.parametrize("metric", METRICS)
def test_agents_and_strangers_are_refused(client, agent_client, metric):
    assert agent_client.get(f"/api/v1/analytics/{metric}").status_code == 403
    client.logout()
    assert client.get(f"/api/v1/analytics/{metric}").status_code in (401, 403)


@pytest.mark.parametrize("query, message", [
    ("start=2026-13-01", "'start' must be a date written YYYY-MM-DD, got '2026-13-01'."),
    ("start=2026-02-01&end=2026-01-01", "'start' is after 'end'."),
    ("start=2000-01-01&end=2026-01-01", "The range is longer than 10 years."),
    ("interval=hour", "'interval' must be one of day, week, month, got 'hour'."),
    ("format=csv&table=nope", "Unknown table 'nope'; this metric has: series, entities."),
    ("format=csv&start=x", "'start' must be a date written YYYY-MM-DD, got 'x'."),
])
def test_bad_parameters_get_a_400_that_says_what_is_wrong(manager_client, query, message):
    response = manager_client.get(f"/api/v1/analytics/revenue?{query}")
    assert response.status_code == 400
    assert response.json()["message"] == message


def test_csv_streams_the_series_and_per_booking_rows(manager_client):
    c = make_customer()
    b = booking(c, status="completed", confirmed_at=local(2026, 3, 10, 12), event_at=local(2026, 3, 20, 18),
                total=1000, location="San Jose", event_type="birthday")
    pay(b, "refund", 100, local(2026, 3, 22, 12))
    series = manager_client.get("/api/v1/analytics/revenue?start=2026-03-01&end=2026-03-31&interval=month&format=csv")
    assert series["Content-Type"].startswith("text/csv")
    header, march = rows_of(series)
    assert dict(zip(header, march))["booked_amount"] == "1000.00"
    assert dict(zip(header, march))["cash_amount"] == "-100.00"
    entities = rows_of(manager_client.get(
        "/api/v1/analytics/bookings?start=2026-03-01&end=2026-03-31&format=csv&table=entities"))
    assert entities[0][:3] == ["booking", "customer", "status"]
    assert [(r[0], r[2], r[5], r[10]) for r in entities[1:]] == [(str(b.pk), "completed", "San Jose", "1000.00")]
    payments = rows_of(manager_client.get(
        "/api/v1/analytics/revenue?start=2026-03-01&end=2026-03-31&format=csv&table=entities&lens=cash"))
    assert [(r[2], r[4]) for r in payments[1:]] == [("refund", "-100.00")]


def test_todays_figures_follow_a_new_booking_and_a_moved_one(manager_client):
    today = timebase.local_date(timezone.now())
    url = f"/api/v1/analytics/revenue?start={today - timedelta(days=40)}&end={today}"
    assert manager_client.get(url).json()["totals"]["booked_amount"] == 0
    b = booking(make_customer(), status="confirmed", confirmed_at=timezone.now(),
                event_at=timezone.now() + timedelta(days=30), total=1234)
    body = manager_client.get(url).json()
    assert body["totals"]["booked_amount"] == 1234.0
    assert body["series"][-1]["booked_amount"] == 1234.0
    # Moving the confirmation date 20 days back moves the money: the old day is rebuilt too.
    b = Booking.objects.get(pk=b.pk)
    b.confirmed_at = timezone.now() - timedelta(days=20)
    b.save()
    series = manager_client.get(url).json()["series"]
    assert series[-1]["booked_amount"] == 0
    assert sum(row["booked_amount"] for row in series) == 1234.0


def test_staff_figures_follow_new_messages_and_replies(manager_client, manager, settings):
    settings.INBOX_SENDERS = {**settings.INBOX_SENDERS, "sms": "tests.senders.record"}
    today = timebase.local_date(timezone.now())
    received = services.receive_message(channel="sms", sender="+14155550100", text="Hi, a party for 10?",
                                        external_id="an-1")
    services.reply(conversation=received.message.conversation, author=manager, text="Sure!", channel="sms")
    body = manager_client.get(f"/api/v1/analytics/staff?start={today}&end={today}").json()
    assert body["totals"]["replies"] == 1 and body["totals"]["first_responses"] == 1
    assert [row["agent"] for row in body["by_agent"]] == ["Morgan"]


def test_the_openapi_schema_documents_every_analytics_endpoint(manager_client):
    schema = manager_client.get("/api/v1/schema/?format=json").json()
    paths = [p for p in schema["paths"] if p.startswith("/api/v1/analytics/")]
    reports = ["/api/v1/analytics/reports", "/api/v1/analytics/reports/{id}", "/api/v1/analytics/reports/{id}/run"]
    assert sorted(paths) == sorted([f"/api/v1/analytics/{m}" for m in METRICS] + reports)
    ids = {schema["paths"][p]["get"]["operationId"] for p in paths}
    assert len(ids) == len(paths)
    params = {p["name"] for p in schema["paths"]["/api/v1/analytics/revenue"]["get"]["parameters"]}
    assert {"start", "end", "interval", "format", "table"} <= params


def test_refresh_twice_gives_the_same_rows():
    c = make_customer()
    booking(c, status="completed", confirmed_at=local(2026, 3, 10, 12), event_at=local(2026, 3, 20, 18), total=1000)
    refresh.refresh_all()
    first = metrics.revenue(timebase.Range(date(2026, 3, 1), date(2026, 3, 31)))
    refresh.refresh_all()
    refresh.refresh_recent()
    assert metrics.revenue(timebase.Range(date(2026, 3, 1), date(2026, 3, 31))) == first
    assert first["totals"]["event_amount"] == Decimal("1000")


def test_csv_text_cannot_become_a_spreadsheet_formula(manager_client):
    booking(make_customer(), status="completed", confirmed_at=local(2026, 3, 10, 12),
            event_at=local(2026, 3, 20, 18), total=1000, location="=HYPERLINK(\"http://evil\")")
    rows = rows_of(manager_client.get(
        "/api/v1/analytics/bookings?start=2026-03-01&end=2026-03-31&format=csv&table=entities"))
    assert rows[1][5] == "'=HYPERLINK(\"http://evil\")"


# Two of each count are the savepoint and its release of the reading transaction (rollups.reading)
# within the test's own transaction; a request outside a test opens and commits it unlogged.
@pytest.mark.parametrize("metric, queries", [("revenue", 7), ("staff", 12), ("bookings", 9)])
def test_queries_per_request_do_not_grow_with_the_data(manager_client, settings, django_assert_num_queries,
                                                       metric, queries):
    settings.ANALYTICS_REFRESH_SECONDS = 3600
    url = f"/api/v1/analytics/{metric}?start=2026-03-01&end=2026-03-31&interval=week"
    for n in range(3):
        booking(make_customer(f"q{n}@example.com"), status="completed", confirmed_at=local(2026, 3, 10 + n, 12),
                event_at=local(2026, 3, 20, 18), total=1000, inquiry_at=local(2026, 3, 2, 12))
        refresh.refresh_all()
        with django_assert_num_queries(queries):
            assert manager_client.get(url).status_code == 200


def test_ten_years_by_day_is_answered_in_full(manager_client):
    response = manager_client.get("/api/v1/analytics/inbox?start=2016-12-02&end=2026-11-30&interval=day")
    assert response.status_code == 200
    series = response.json()["series"]
    assert len(series) == 3651 and series[-1] == {"period": "2026-11-30", "received": 0, "backlog": 0}
