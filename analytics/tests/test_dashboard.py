"""/analytics/: presets, cards equal to their tables, agents limited to their own figures."""
import re
from datetime import date, timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from analytics import narrowing, timebase
from analytics.tests.helpers import booking
from crm.models import Booking
from tests.factories import make_customer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def la(settings):
    settings.BUSINESS_TIME_ZONE = "America/Los_Angeles"
    settings.ANALYTICS_REFRESH_SECONDS = 0


@pytest.mark.parametrize("preset, start, end", [
    ("this_month", date(2026, 5, 1), date(2026, 5, 14)),
    ("last_month", date(2026, 4, 1), date(2026, 4, 30)),
    ("quarter", date(2026, 4, 1), date(2026, 5, 14)),
    ("ytd", date(2026, 1, 1), date(2026, 5, 14)),
    ("last_12_months", date(2025, 6, 1), date(2026, 5, 14)),
])
def test_presets_cover_the_dates_they_say(preset, start, end):
    assert timebase.preset_range(preset, date(2026, 5, 14)) == (start, end)


def test_last_month_in_january_is_last_december():
    assert timebase.preset_range("last_month", date(2026, 1, 5)) == (date(2025, 12, 1), date(2025, 12, 31))


def test_cards_equal_the_totals_of_their_tables(manager_client):
    now = timezone.now()
    booking(make_customer(), status="confirmed", confirmed_at=now, event_at=now + timezone.timedelta(days=9),
            total=1234)
    booking(make_customer("b@example.com"), status="confirmed", confirmed_at=now,
            event_at=now + timezone.timedelta(days=20), total=766)
    response = manager_client.get("/analytics/?preset=this_month")
    assert response.status_code == 200
    html = response.content.decode()
    card = re.search(r'data-card="Booked revenue">.*?card-value">([^<]+)<', html, re.S).group(1)
    assert card == "$2,000.00"
    booked_column = [row["booked_amount"] for row in response.context["sections"][0]["rows"]]
    assert sum(booked_column) == 2000
    # Today's row of the revenue table shows the same booked amount, written as money.
    assert re.search(r"<tr><th scope=\"row\">[^<]+</th><td>\$2,000\.00</td><td>\$0\.00</td>", html)
    assert "Content-Security-Policy" in response and "<script>" not in html  # charts come from static JS only


def test_every_area_has_its_table_and_the_new_cards_equal_them(manager_client, django_assert_num_queries):
    now = timezone.now()
    # The business's month, not UTC's: from 16:00 (17:00 in winter) in Los Angeles it is already
    # tomorrow in UTC, and on the last day of a month that is the next month.
    month_end = timebase.preset_range("this_month", timebase.local_date(now))[1]
    event = timebase.local_midnight(month_end) + timedelta(hours=18)
    booking(make_customer(), status="confirmed", confirmed_at=now, event_at=event, total=900)
    # Session, user, groups, the refresh this fixture forces on every load (ANALYTICS_REFRESH_SECONDS=0;
    # on this never-refreshed database a full one: every rollup deleted and filled, most of the
    # count), then the ten areas, each a fixed number of queries (pace no longer reads per
    # month), within one reading transaction (a savepoint and its release in this test): a number
    # of areas and rollups, not of the data; the refresh's two new generations and the page's read of
    # them (analytics/figure_cache.py) are three of them. The page does not read the figures it does not
    # show (metrics.BRIEF). On PostgreSQL the full refresh writes five rollups by difference
    # (rollups.replacing(): seven statements more each), and a cohort's median comes with its counts
    # (percentiles.summary(also=...): one statement less). The refresh's count of waits and resolutions by
    # value bucket (DurationMonth) is two statements for each of the two. On the last day of a month "this
    # month" is a whole one, and on PostgreSQL staff's percentiles are then found by bucket
    # (analytics/narrowing.py): a count of the waits and one of the resolutions by bucket, and no bucket to
    # read without them, where sorting read the waits three times and the resolutions once. The refresh adds
    # ActivityDay and FunnelDay up by month (ActivityMonth, FunnelMonth: two statements each), and each
    # area reads its whole months and its other days in one; it counts the cohorts again (CohortMonth: a
    # read of the customers' facts and a delete; no cohort here, so nothing to write).
    from django.db import connection

    whole = narrowing.applies(timebase.Range(*timebase.preset_range("this_month", timebase.local_date(now))))
    with django_assert_num_queries(121 if connection.vendor != "postgresql" else 120 + 5 * 7 - whole):
        response = manager_client.get("/analytics/?preset=this_month")
    assert [s["id"] for s in response.context["sections"]] == [
        "revenue", "bookings", "staff", "leads", "inbox", "cash", "pace", "customers", "email", "chatbot"]
    html = response.content.decode()
    card = re.search(r'data-card="On the books for these months">.*?card-value">([^<]+)<', html, re.S).group(1)
    pace = next(s for s in response.context["sections"] if s["id"] == "pace")
    assert card == "$900.00" and sum(row["amount"] for row in pace["rows"]) == 900
    # Cohorts: months a cohort has not reached are blank, and the email table says when nothing was sent.
    assert "Cohorts: repeat rate" in html and "No email sent in this range." in html


def test_an_agent_sees_only_their_own_performance(agent_client, agent, manager):
    response = agent_client.get("/analytics/")
    assert response.status_code == 200
    assert response.context["cards"] == []
    assert [s["id"] for s in response.context["sections"]] == ["staff"]
    assert "My performance" in response.content.decode()


def test_a_bad_custom_range_says_why(manager_client):
    response = manager_client.get("/analytics/?preset=custom&start=2026-05-10&end=2026-05-01")
    assert response.status_code == 400
    assert "&#x27;start&#x27; is after &#x27;end&#x27;." in response.content.decode()


def test_strangers_are_sent_to_log_in(client):
    response = client.get("/analytics/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def _card(response, label):
    return re.search(rf'data-card="{label}">.*?card-value">([^<]+)<', response.content.decode(), re.S).group(1)


def test_figures_come_from_the_cache_until_a_refresh_writes_rollups_and_names_are_always_current(manager_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from inbox import history
    from inbox.models import Conversation
    from tests.factories import make_user

    now = timezone.now()
    ann = make_user("ann", first_name="Ann")
    booking(make_customer(), status="confirmed", confirmed_at=now, event_at=now + timezone.timedelta(days=9),
            total=1234)
    conv = Conversation.objects.create(customer=make_customer("c@example.com"), created_at=now, status="open")
    history.record(history.Kind.RECEIVED, conv, at=now, channel="sms")
    history.record(history.Kind.REPLIED, conv, at=now, actor=ann, channel="sms")
    assert _card(manager_client.get("/analytics/?preset=this_month"), "Booked revenue") == "$1,234.00"

    # Nothing changed since (the booking was saved before the step's one-minute look-back): every load
    # still runs the incremental step (ANALYTICS_REFRESH_SECONDS=0), which writes nothing, so the
    # rollup-backed areas are not read again; a new name shows all the same.
    Booking.objects.update(updated_at=F("updated_at") - timezone.timedelta(hours=2))
    ann.first_name = "Anne"
    ann.save()
    with CaptureQueriesContext(connection) as queries:
        response = manager_client.get("/analytics/?preset=this_month")
    read = " ".join(q["sql"] for q in queries.captured_queries)
    for table in ("analytics_revenueday", "analytics_funnelday", "analytics_responsecycle", "analytics_cycleday"):
        assert table not in read
    assert _card(response, "Booked revenue") == "$1,234.00"
    staff = response.context["data"]["staff"]["by_agent"]
    assert [(a["agent"], a["replies"]) for a in staff] == [("Anne", 1)]

    # A new booking: the step writes its rollups, and the page shows it at once.
    booking(make_customer("b@example.com"), status="confirmed", confirmed_at=now,
            event_at=now + timezone.timedelta(days=20), total=766)
    assert _card(manager_client.get("/analytics/?preset=this_month"), "Booked revenue") == "$2,000.00"


def test_a_cached_figure_is_never_read_for_other_rollups(manager_client, settings):
    """The generation is random: a rolled-back transaction or a restored database that comes back with
    the same rows counted differently never meets figures cached for other rows."""
    from analytics import figure_cache, refresh
    from analytics.models import RefreshState

    settings.ANALYTICS_REFRESH_SECONDS = 3600
    refresh.refresh_all()
    first = figure_cache.generations()
    refresh.refresh_all()
    second = figure_cache.generations()
    assert set(first) == set(second) == {"revenue", "conversations"}
    assert all(first[k] != second[k] for k in first)
    # Untouched rollups keep their generation: an incremental step with nothing to do writes none.
    RefreshState.objects.update(refreshed_at=timezone.now() - timezone.timedelta(minutes=5))
    refresh.refresh_recent()
    assert figure_cache.generations() == second


def test_a_refresh_that_wrote_is_followed_by_the_dashboards_figures_so_the_next_load_reads_no_rollup(
        manager_client, settings):
    """The beat's task (run here in the test's process): a step that wrote rollups queues warm_dashboard,
    which computes the cached areas of every preset, so a manager's first load after it only reads them."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from analytics import tasks

    settings.ANALYTICS_REFRESH_SECONDS = 3600  # the page runs no step of its own: only the task's counts
    now = timezone.now()
    booking(make_customer(), status="confirmed", confirmed_at=now, event_at=now + timezone.timedelta(days=9),
            total=1234)
    assert tasks.refresh_recent()["written"]
    for preset in ("this_month", "last_12_months"):
        with CaptureQueriesContext(connection) as queries:
            response = manager_client.get(f"/analytics/?preset={preset}")
        read = " ".join(q["sql"] for q in queries.captured_queries)
        for table in ("analytics_revenueday", "analytics_funnelday", "analytics_responsecycle",
                      "analytics_cycleday", "analytics_customerfact"):
            assert table not in read, (preset, table)
        assert _card(response, "Booked revenue") == "$1,234.00"
    # A step with nothing new (the booking saved before its one-minute look-back) writes nothing and
    # queues no work.
    Booking.objects.update(updated_at=F("updated_at") - timezone.timedelta(hours=2))
    assert not tasks.refresh_recent()["written"]
