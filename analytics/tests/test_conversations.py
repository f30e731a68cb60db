"""Staff performance and inbox figures from the conversation history, worked out by hand."""
import copy
from datetime import date, timedelta
from pathlib import Path

import pytest

from analytics import metrics, refresh, views
from analytics.models import ResponseCycle
from analytics.timebase import Range
from analytics.tests.helpers import booking, local
from inbox import history
from inbox.models import Conversation
from tests.factories import make_customer, make_user

pytestmark = pytest.mark.django_db
Kind = history.Kind
JUNE = Range(date(2026, 6, 1), date(2026, 6, 30), "week")


@pytest.fixture(autouse=True)
def la(settings):
    settings.BUSINESS_TIME_ZONE = "America/Los_Angeles"
    settings.BUSINESS_HOURS = {}
    settings.BUSINESS_HOLIDAYS = frozenset()
    settings.FIRST_RESPONSE_TARGET_MINUTES = 60


def conversation(customer, start, *events, channel="sms"):
    """A conversation opened by a customer message at start; events: (seconds after start, kind, actor, extra).
    Stored as resolved: the figures come from the history, and a customer has one active conversation at most."""
    conv = Conversation.objects.create(customer=customer, created_at=start, status="resolved", resolved_at=start)
    history.record(Kind.RECEIVED, conv, at=start, channel=channel)
    for seconds, kind, actor, extra in events:
        history.record(kind, conv, at=start + timedelta(seconds=seconds), actor=actor,
                       channel=channel if kind in (Kind.RECEIVED, Kind.REPLIED, Kind.REOPENED) else "", **extra)
    return conv


@pytest.fixture
def team():
    a, b = make_user("ann", first_name="Ann"), make_user("bob", first_name="Bob")
    c = make_customer()
    t = local(2026, 6, 1, 10)  # a Monday
    # Ann: a bot talked for 30 min, then handed over; Ann answered 10 min after the hand-off -> 600 s, not 2400.
    conversation(c, t, (1800, Kind.BOT_HANDOFF, None, {}), (2400, Kind.REPLIED, a, {}),
                 (3600, Kind.STATUS_CHANGED, a, {"from_value": "open", "to_value": "resolved"}),
                 # reopened the next day; Ann answered in 300 s
                 (86400, Kind.REOPENED, None, {"from_value": "resolved", "to_value": "open"}),
                 (86400, Kind.RECEIVED, None, {}), (86700, Kind.REPLIED, a, {}))
    conversation(c, t + timedelta(days=2), (120, Kind.REPLIED, a, {}), (200, Kind.REPLIED, a, {}))
    conversation(c, t + timedelta(days=3), (3600, Kind.REPLIED, b, {}),
                 (7200, Kind.STATUS_CHANGED, b, {"from_value": "open", "to_value": "resolved"}),
                 (7300, Kind.NOTE, b, {}), channel="email")
    conversation(c, t + timedelta(days=9), (7200, Kind.REPLIED, b, {}), channel="email")
    # Staff wrote first, the customer never answered: no wait to measure.
    conv = Conversation.objects.create(customer=c, created_at=t, status="open")
    history.record(Kind.REPLIED, conv, at=t, actor=b, channel="sms")
    refresh.refresh_all()
    return a, b


def test_first_response_and_resolution_percentiles_per_agent(team):
    ann, bob = team
    result = metrics.staff(JUNE)
    t = result["totals"]
    # Waits: Ann 600, 300, 120; Bob 3600, 7200. All: 120 300 600 3600 7200.
    assert t["first_responses"] == 5
    assert t["first_response_median"] == 600
    assert t["first_response_p90"] == pytest.approx(5760)  # 3600 + 0.6 * 3600
    assert t["within_target"] == 0.8  # 7200 s is the one over an hour
    agents = {row["agent"]: row for row in result["by_agent"]}
    assert agents["Ann"]["first_response"] == {"median": 300, "p90": pytest.approx(540)}
    assert agents["Bob"]["first_response"] == {"median": 5400, "p90": pytest.approx(6840)}
    assert (agents["Ann"]["within_target"], agents["Bob"]["within_target"]) == (1.0, 0.5)
    # Replies: Ann 4; Bob 2 plus the outbound-first message = 3. Conversations replied in: Ann 2, Bob 3.
    assert (agents["Ann"]["replies"], agents["Bob"]["replies"]) == (4, 3)
    assert (agents["Ann"]["conversations"], agents["Bob"]["conversations"]) == (2, 3)
    assert (agents["Ann"]["notes"], agents["Bob"]["notes"]) == (0, 1)
    # Resolutions: one each, timed from conversation start: 3600 s and 7200 s.
    assert (agents["Ann"]["resolutions"], agents["Bob"]["resolutions"]) == (1, 1)
    assert (t["resolution_median"], t["resolutions"]) == (5400, 2)
    # Cards equal their tables and series: one definition of a resolution.
    assert t["resolutions"] == sum(a["resolutions"] for a in result["by_agent"]) == sum(
        r["resolutions"] for r in result["series"])
    # Week of 1 June: 600, 300, 120, 3600 -> (300 + 600) / 2; week of 8 June: Bob's 7200; then none.
    assert [r["first_response_median"] for r in result["series"]] == [450, 7200, None, None, None]


def test_the_clock_starts_at_the_bot_hand_off(team):
    first = ResponseCycle.objects.get(number=0, wall_seconds=600)
    assert first.started_at == local(2026, 6, 1, 10, 30)


def test_an_agent_sees_only_their_own_figures(team):
    ann, _ = team
    result = metrics.staff(JUNE, agent_id=ann.pk)
    assert [row["agent"] for row in result["by_agent"]] == ["Ann"]
    assert result["totals"]["first_response_median"] == 300


def test_first_response_in_business_hours_across_a_weekend_and_a_holiday(settings):
    settings.BUSINESS_HOURS = {d: ("09:00", "17:00") for d in ("mon", "tue", "wed", "thu", "fri")}
    settings.BUSINESS_HOLIDAYS = frozenset({"2026-07-03"})  # a Friday (Independence Day observed)
    agent = make_user("ann", first_name="Ann")
    # Thursday 2 July 16:30 -> Monday 6 July 09:45: business time 30 min + 45 min.
    conversation(make_customer(), local(2026, 7, 2, 16, 30), (3 * 86400 + 62100, Kind.REPLIED, agent, {}))
    # Monday 6 July 10:00 -> 10:20, inside hours: 20 min both ways.
    conversation(make_customer("b@example.com"), local(2026, 7, 6, 10), (1200, Kind.REPLIED, agent, {}))
    refresh.refresh_all()
    t = metrics.staff(Range(date(2026, 7, 1), date(2026, 7, 31), "month"))["totals"]
    assert t["first_response_business_median"] == (75 * 60 + 20 * 60) / 2
    wall = (local(2026, 7, 6, 9, 45) - local(2026, 7, 2, 16, 30)).total_seconds()
    assert t["first_response_median"] == (wall + 1200) / 2


@pytest.mark.postgres
def test_percentile_cont_in_postgresql_equals_the_python_fallback(team):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    in_db, in_python = metrics.staff(JUNE, database=True), metrics.staff(JUNE, database=False)
    assert in_db == in_python
    assert in_db["totals"]["first_response_p90"] == pytest.approx(5760)


def test_inbox_conversion_by_first_reply_speed_and_hours_of_a_daylight_saving_week(settings):
    settings.ANALYTICS_CONVERSION_WINDOW_DAYS = 30
    agent = make_user("ann", first_name="Ann")
    fast, slow, ignored = (make_customer(f"{n}@example.com") for n in ("fast", "slow", "ignored"))
    # Monday 9 March 2026 09:30 PDT, the first weekday after clocks went forward: hour 9, not 8 or 10.
    start = local(2026, 3, 9, 9, 30)
    conversation(fast, start, (240, Kind.REPLIED, agent, {}))
    booking(fast, status="confirmed", confirmed_at=start + timedelta(days=2), event_at=local(2026, 5, 1, 18),
            total=800)
    conversation(slow, start, (7200, Kind.REPLIED, agent, {}), channel="email")
    booking(slow, status="confirmed", confirmed_at=start + timedelta(days=45), event_at=local(2026, 6, 1, 18),
            total=800)  # outside the 30-day window
    conversation(ignored, local(2026, 3, 8, 23, 30))  # Sunday night: the week of 2 March
    refresh.refresh_all()

    result = metrics.inbox(Range(date(2026, 3, 2), date(2026, 3, 15), "week"))
    speed = {row["within"]: row for row in result["conversion_by_first_reply"]}
    assert (speed["5m"]["conversations"], speed["5m"]["booked"], speed["5m"]["booking_rate"]) == (1, 1, 1.0)
    assert (speed["4h"]["conversations"], speed["4h"]["booked"], speed["4h"]["booking_rate"]) == (1, 0, 0.0)
    assert (speed["unanswered"]["conversations"], speed["1h"]["booking_rate"]) == (1, None)
    hours = {row["hour"]: row["received"] for row in result["by_hour"]}
    assert (hours[9], hours[23], sum(hours.values())) == (2, 1, 3)
    weeks = {row["period"]: row for row in result["series"]}
    assert (weeks["2026-03-02"]["received"], weeks["2026-03-09"]["received"]) == (1, 2)
    assert (weeks["2026-03-09"]["received_sms"], weeks["2026-03-09"]["received_email"]) == (1, 1)
    # Backlog at the end of each week: the Sunday message is still unanswered.
    assert (weeks["2026-03-02"]["backlog"], weeks["2026-03-09"]["backlog"]) == (1, 1)
    channels = {row["channel"]: row["median"] for row in result["first_response_by_channel"]}
    assert channels == {"sms": 240, "email": 7200}


@pytest.mark.postgres
def test_per_agent_and_per_period_percentiles_read_by_index_equal_the_python_ones(team):
    """percentiles.by_key (one index range per agent, and one for waits whose agent was deleted) and
    by_span (one per period) against the Python path, for weeks and days."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    gone = make_user("cy", first_name="Cy")
    conversation(make_customer("d@example.com"), local(2026, 6, 15, 10), (900, Kind.REPLIED, gone, {}),
                 (1200, Kind.STATUS_CHANGED, gone, {"from_value": "open", "to_value": "resolved"}))
    refresh.refresh_all()
    gone.delete()  # its waits and resolutions stay, without an agent
    for rng in (JUNE, Range(date(2026, 6, 1), date(2026, 6, 30), "day")):
        in_db = metrics.staff(rng, database=True)
        assert in_db == metrics.staff(rng, database=False)
        nobody = in_db["by_agent"][-1]
        assert (nobody["agent"], nobody["first_responses"], nobody["first_response"]["median"],
                nobody["resolution"]["median"]) == ("(no agent)", 1, 900, 1200)
    days = {row["period"]: row["first_response_median"] for row in in_db["series"]}
    # 1 June: Ann's 600 s (the bot's half hour not counted); 2 June: the reopen answered in 300 s.
    assert (days["2026-06-01"], days["2026-06-02"], days["2026-06-05"]) == (600, 300, None)


def _without(figures, keys):
    """figures less the dotted keys of metrics.BRIEF ("totals.x": a total; "by_agent.x": every row's)."""
    figures = copy.deepcopy(figures)
    for key in keys:
        part, _, name = key.partition(".")
        if not name:
            del figures[part]
            continue
        for cells in figures[part] if isinstance(figures[part], list) else [figures[part]]:
            del cells[name]
    return figures


def test_the_dashboards_brief_figures_are_the_full_ones_less_what_it_does_not_show(team, settings):
    settings.BUSINESS_HOURS = {d: ("09:00", "17:00") for d in ("mon", "tue", "wed", "thu", "fri")}
    booking(make_customer("done@example.com"), status="completed", event_at=local(2026, 6, 20, 18), total=800)
    refresh.refresh_all()

    def by_agent_sorted(figures):
        return {**figures, "by_agent": sorted(figures["by_agent"], key=lambda a: a["agent_id"])}

    full = {"staff": by_agent_sorted(metrics.staff_figures(JUNE)), "inbox": metrics.inbox(JUNE),
            "bookings": metrics.bookings_figures(JUNE)}
    brief = {"staff": by_agent_sorted(metrics.staff_figures(JUNE, brief=True)),
             "inbox": metrics.inbox(JUNE, brief=True), "bookings": metrics.bookings_figures(JUNE, brief=True)}
    # What is left out was there to leave out (business hours are set, a booking was completed) ...
    assert full["staff"]["totals"]["first_response_business_median"] == 600  # every wait within hours
    assert full["bookings"]["totals"]["order_value_median"] == 800
    assert [row["channel"] for row in full["inbox"]["first_response_by_channel"]] == ["email", "sms"]
    # ... and every other figure is the same.
    for area, figures in full.items():
        assert _without(figures, metrics.BRIEF[area]) == brief[area]
    # The page shows none of the figures its reads leave out.
    page = "".join(Path(f).read_text() for f in (views.__file__, Path(views.__file__).parent
                                                 / "templates" / "analytics" / "dashboard.html"))
    for keys in metrics.BRIEF.values():
        for key in keys:
            assert key.rpartition(".")[2] not in page, key
