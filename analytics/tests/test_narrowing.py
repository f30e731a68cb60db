"""Percentiles found by value bucket (analytics/narrowing.py) are percentile_cont's, to the last bit."""
import random
from datetime import date, timedelta

import pytest
from django.db.models import F

from analytics import metrics, narrowing, percentiles, refresh
from analytics.models import DurationMonth, RefreshState, Resolution, ResponseCycle
from analytics.tests.helpers import local
from analytics.timebase import Range, local_midnight
from inbox import history
from inbox.models import Conversation
from tests.factories import make_customer, make_user

pytestmark = pytest.mark.django_db
TARGET = 3600


@pytest.fixture(autouse=True)
def la(settings):
    settings.BUSINESS_TIME_ZONE = "America/Los_Angeles"
    settings.BUSINESS_HOURS = {}


def test_buckets_grow_with_the_value_and_split_at_their_edges():
    assert [narrowing.bucket_of(v) for v in (None, -5, 0, 0.999, 1, 1.18, 2 ** 0.25, 2, 3600)] == [
        None, 0, 0, 0, 1, 1, 2, 5, 48]
    values = sorted(random.Random(4).uniform(0, 1e7) for _ in range(5000))
    assert [narrowing.bucket_of(v) for v in values] == sorted(narrowing.bucket_of(v) for v in values)


def answered(email, start, seconds, agent):
    """An open conversation: a customer message at start, the agent's reply `seconds` later."""
    conv = Conversation.objects.create(customer=make_customer(email), created_at=start, status="open")
    history.record(history.Kind.RECEIVED, conv, at=start, channel="sms")
    history.record(history.Kind.REPLIED, conv, at=start + timedelta(seconds=seconds), actor=agent, channel="sms")
    return conv


@pytest.fixture
def durations():
    """Waits and resolutions of three agents and of nobody (a deleted user's replies) from mid-January
    to mid-May: values on bucket edges, long runs of one value, under a second, and spread at random."""
    ann, bob, cy = make_user("ann"), make_user("bob"), make_user("cy")
    conv = Conversation.objects.create(customer=make_customer(), created_at=local(2026, 1, 1, 9), status="open")
    rnd = random.Random(7)
    edges = [2 ** (i / 4) for i in range(70)]
    values = (edges + [600.0] * 40 + [0.0, 0.25, 0.999] + [3600.0] * 7
              + [rnd.lognormvariate(7, 2) for _ in range(900)])
    rnd.shuffle(values)
    cycles, resolutions = [], []
    for n, wall in enumerate(values):
        at = local(2026, 1, 10) + timedelta(seconds=rnd.uniform(0, 130 * 86400))
        agent = (ann, bob, None)[n % 3]
        cycles.append(ResponseCycle(conversation=conv, number=n, started_at=at - timedelta(seconds=wall),
                                    replied_at=at, agent=agent, wall_seconds=wall,
                                    bucket=narrowing.bucket_of(wall)))
        resolutions.append(Resolution(conversation=conv, started_at=at - timedelta(seconds=wall), resolved_at=at,
                                      agent=agent, wall_seconds=wall * 3, bucket=narrowing.bucket_of(wall * 3)))
    # Cy: two waits in March, in different buckets. The median is halfway: (10 + 100) / 2.
    for n, wall in ((len(values), 10.0), (len(values) + 1, 100.0)):
        at = local(2026, 3, 3, 12)
        cycles.append(ResponseCycle(conversation=conv, number=n, started_at=at - timedelta(seconds=wall),
                                    replied_at=at, agent=cy, wall_seconds=wall,
                                    bucket=narrowing.bucket_of(wall)))
    ResponseCycle.objects.bulk_create(cycles)
    Resolution.objects.bulk_create(resolutions)
    narrowing.rebuild_months()
    return ann, bob, cy


@pytest.mark.postgres
@pytest.mark.parametrize("rng", [
    Range(date(2026, 1, 15), date(2026, 5, 10), "month"),  # part-months at both ends
    Range(date(2026, 2, 1), date(2026, 4, 30), "month"),  # whole months only
    Range(date(2026, 3, 1), date(2026, 3, 31), "day"),  # one month: no periods by bucket
])
def test_each_group_gets_percentile_conts_own_numbers(durations, rng):
    cy = durations[2]
    lo, hi = local_midnight(rng.start), local_midnight(rng.end + timedelta(days=1))
    cycles = ResponseCycle.objects.filter(replied_at__gte=lo, replied_at__lt=hi)
    resolved = Resolution.objects.filter(resolved_at__gte=lo, resolved_at__lt=hi)
    monthly = rng.interval == "month"
    found = narrowing.find("wait", rng, agents=True, periods=monthly, overall=True, within=TARGET)
    expected = percentiles.summary(cycles, ["agent_id"], ["wall_seconds"], within=("wall_seconds", TARGET),
                                   database=True)
    assert {(pk,): cells for pk, cells in found["agents"].items()} == expected
    assert len(expected) == 4  # three agents and nobody
    assert found["overall"] == percentiles.summary(cycles, [], ["wall_seconds"], within=("wall_seconds", TARGET),
                                                   database=True)[()]
    if monthly:
        assert found["periods"] == percentiles.by_span(cycles, "replied_at", rng.spans(), ["wall_seconds"],
                                                       database=True)
        assert len(found["periods"]) == len(rng.buckets())
    if rng.start <= date(2026, 3, 3) <= rng.end:
        assert found["agents"][cy.pk]["wall_seconds"] == [55.0, 91.0]  # 10 + (100 - 10) * 0.9
    found = narrowing.find("resolution", rng, agents=True)
    assert {(pk,): cells for pk, cells in found["agents"].items()} == percentiles.summary(
        resolved, ["agent_id"], ["wall_seconds"], database=True)


@pytest.mark.postgres
def test_a_range_without_rows_has_no_groups(durations):
    empty = Range(date(2025, 1, 1), date(2025, 3, 31), "month")
    assert narrowing.find("wait", empty, agents=True, periods=True, overall=True, within=TARGET) == {
        "agents": {}, "periods": {}, "overall": None}


@pytest.mark.postgres
def test_the_dashboards_staff_figures_are_the_same_found_by_bucket_or_by_sorting(monkeypatch):
    """metrics.staff_figures(brief=True) takes the bucket path for a range holding a whole month."""
    ann, bob = make_user("ann"), make_user("bob")
    rnd = random.Random(11)
    for n in range(60):
        start = local(2026, 1, 5, 9) + timedelta(hours=rnd.uniform(0, 24 * 150))
        conv = Conversation.objects.create(customer=make_customer(f"c{n}@example.com"), created_at=start,
                                           status="resolved", resolved_at=start)
        history.record(history.Kind.RECEIVED, conv, at=start, channel="sms")
        agent = (ann, bob)[n % 2]
        replied = start + timedelta(seconds=rnd.lognormvariate(6, 2))
        history.record(history.Kind.REPLIED, conv, at=replied, actor=agent, channel="sms")
        history.record(history.Kind.STATUS_CHANGED, conv, at=replied + timedelta(seconds=rnd.uniform(1, 9e4)),
                       actor=agent, from_value="open", to_value="resolved")
    refresh.refresh_all()
    assert DurationMonth.objects.filter(measure="wait").count() > 0
    rng = Range(date(2026, 1, 3), date(2026, 6, 25), "month")  # part-months at both ends
    by_bucket = metrics.staff_figures(rng, brief=True)
    monkeypatch.setattr(narrowing, "applies", lambda rng: False)
    by_sorting = metrics.staff_figures(rng, brief=True)

    def in_order(figures):
        return {**figures, "by_agent": sorted(figures["by_agent"], key=lambda a: a["agent_id"])}

    assert in_order(by_bucket) == in_order(by_sorting)
    assert by_bucket["totals"]["first_responses"] == 60 and by_bucket["totals"]["first_response_median"] > 0


@pytest.mark.postgres
def test_a_refresh_between_the_count_and_the_read_falls_back_to_sorting(durations, monkeypatch):
    """Outside a REPEATABLE READ transaction a refresh can commit between narrowing's two statements;
    its new generation tells, and the figures are then sorted, not read from counts of other rows."""
    rng = Range(date(2026, 2, 1), date(2026, 4, 30), "month")
    ask = {"agents": True, "periods": True, "overall": True, "within": TARGET}
    calm = narrowing.find("wait", rng, **ask)
    real_read, fallbacks = narrowing._read_buckets, []

    def read_after_a_refresh(*args):
        RefreshState.objects.update_or_create(name="conversations", defaults={"generation": 12345})
        ResponseCycle.objects.filter(replied_at__gte=local(2026, 3, 1), replied_at__lt=local(2026, 3, 8)).delete()
        return real_read(*args)

    def sorted_instead(*args, **kwargs):
        fallbacks.append(args)
        return real_sort(*args, **kwargs)

    real_sort = narrowing._by_sorting
    monkeypatch.setattr(narrowing, "_read_buckets", read_after_a_refresh)
    monkeypatch.setattr(narrowing, "_by_sorting", sorted_instead)
    raced = narrowing.find("wait", rng, **ask)
    assert len(fallbacks) == 1
    assert raced["overall"]["rows"] == ResponseCycle.objects.filter(
        replied_at__gte=local(2026, 2, 1), replied_at__lt=local(2026, 5, 1)).count() < calm["overall"]["rows"]
    monkeypatch.undo()
    narrowing.rebuild_months()
    assert narrowing.find("wait", rng, **ask) == raced


def test_the_incremental_step_rewrites_only_the_counts_that_changed():
    """A new reply changes one count of its month: that count moves, the month's other rows are left as
    they are (rewriting them all every half minute would leave dead rows for every read to step over)."""
    ann = make_user("ann")
    for n, seconds in enumerate((30, 700, 5000, 90000)):
        conv = answered(f"c{n}@example.com", local(2026, 3, 2 + n, 9), seconds, ann)
    refresh.refresh_all()
    before = {b: (pk, n) for b, pk, n in DurationMonth.objects.filter(measure="wait").values_list(
        "bucket", "pk", "count")}
    assert len(before) == 4
    history.record(history.Kind.REPLIED, conv, at=local(2026, 3, 20, 9), actor=ann, channel="sms")  # not a wait
    answered("late@example.com", local(2026, 3, 21, 9), 720, ann)
    refresh.refresh_recent()
    after = {b: (pk, n) for b, pk, n in DurationMonth.objects.filter(measure="wait").values_list(
        "bucket", "pk", "count")}
    changed = narrowing.bucket_of(720)
    assert changed == narrowing.bucket_of(700)  # the same bucket as an earlier wait: its count goes to 2
    assert {b: row for b, row in after.items() if b != changed} == {b: row for b, row in before.items()
                                                                    if b != changed}
    assert before[changed][1] == 1 and after[changed][1] == 2
    kept = sorted(DurationMonth.objects.values_list("measure", "month", "agent_id", "bucket", "count"))
    narrowing.rebuild_months()
    assert sorted(DurationMonth.objects.values_list("measure", "month", "agent_id", "bucket", "count")) == kept
    assert DurationMonth.objects.get(measure="wait", bucket=changed).count == 2


@pytest.mark.postgres
def test_counts_that_do_not_match_the_rows_are_sorted_instead_and_logged(durations, caplog):
    """Rows written by code that did not keep DurationMonth (an old node during a deploy) must not give
    a wrong figure or an error: a bucket read holding another number of rows than counted is noticed."""
    rng = Range(date(2026, 2, 1), date(2026, 4, 30), "month")
    ask = {"agents": True, "periods": True, "overall": True, "within": TARGET}
    right = narrowing.find("wait", rng, **ask)
    DurationMonth.objects.filter(measure="wait").update(count=F("count") + 1)
    with caplog.at_level("WARNING", logger="analytics.narrowing"):
        assert narrowing.find("wait", rng, **ask) == right
    assert "do not match the rows" in caplog.text


@pytest.mark.postgres
def test_rows_without_a_bucket_are_sorted_instead_until_a_refresh_gives_them_one(caplog):
    """A wait written by code from before buckets (an old worker during a deploy) is neither lost from
    the figures nor an error: the range is sorted, and the next full refresh gives it a bucket."""
    ann = make_user("ann")
    for n, seconds in enumerate((30, 700, 5000)):
        answered(f"c{n}@example.com", local(2026, 3, 2 + n, 9), seconds, ann)
    refresh.refresh_all()
    ResponseCycle.objects.filter(wall_seconds=5000).update(bucket=None)
    narrowing.rebuild_months()
    march = Range(date(2026, 3, 1), date(2026, 3, 31), "month")
    with caplog.at_level("WARNING", logger="analytics.narrowing"):
        found = narrowing.find("wait", march, agents=True, overall=True)
    assert "without a value bucket" in caplog.text
    assert found["overall"]["rows"] == 3 and found["overall"]["wall_seconds"][0] == 700
    refresh.refresh_all()
    assert ResponseCycle.objects.filter(bucket__isnull=True).count() == 0
    assert narrowing.find("wait", march, agents=True, overall=True) == found


def test_counts_that_would_go_below_zero_are_counted_again(caplog):
    """apply_changes() moves counts by differences; if the counts were already wrong (a row removed that
    was never counted), the month is counted again from the rows instead of going negative."""
    ann = make_user("ann")
    start = local(2026, 3, 2, 9)
    conv = answered("c@example.com", start, 700, ann)
    refresh.refresh_all()
    DurationMonth.objects.filter(measure="wait").delete()  # the counts lose the wait
    # A bot hand-off 100 s before the reply, recorded late: the wait is now 100 s, in another bucket.
    history.record(history.Kind.BOT_HANDOFF, conv, at=start + timedelta(seconds=600))
    with caplog.at_level("WARNING", logger="analytics.narrowing"):
        refresh.refresh_recent()  # the 700 s wait taken from a count that does not hold it
    assert "did not fit the rows" in caplog.text
    assert list(DurationMonth.objects.filter(measure="wait").values_list("bucket", "count")) == [
        (narrowing.bucket_of(100), 1)]
