"""Reads side by side on separate connections (analytics/parallel.py): the same snapshot, the same figures."""
import threading

import pytest
from django.db import connection

from analytics import metrics, parallel, rollups
from analytics.models import Resolution
from analytics.tests.test_conversations import JUNE, la, team  # noqa: F401 (fixtures)
from tests.factories import make_customer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL)")


def _pid():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _commit_elsewhere(row):
    """Saves a copy of a resolution from another thread (its own connection), committed at once."""
    def save():
        try:
            row.pk = None
            row.save()
        finally:
            connection.close()

    thread = threading.Thread(target=save)
    thread.start()
    thread.join()


def test_a_lane_reads_on_its_own_connection_and_sees_the_pages_snapshot(team):
    existing = Resolution.objects.first()
    with rollups.reading():
        before = Resolution.objects.count()
        _commit_elsewhere(existing)  # lands while the page is being read
        (here_pid, here_count), (lane_pid, lane_count) = parallel.together(
            [_pid, Resolution.objects.count], [_pid, Resolution.objects.count])
    assert here_pid != lane_pid  # read side by side
    # Neither read sees the resolution committed after the page's first read: one snapshot for both.
    assert (before, here_count, lane_count) == (2, 2, 2)
    assert Resolution.objects.count() == 3


def test_staff_figures_read_in_two_lanes_equal_those_read_in_turn(team, settings):
    with rollups.reading():
        assert parallel.lanes_available() == 2
        side_by_side = metrics.staff(JUNE)
    settings.ANALYTICS_READ_CONNECTIONS = 1
    with rollups.reading():
        assert parallel.lanes_available() == 1
        in_turn = metrics.staff(JUNE)
    assert side_by_side == in_turn == metrics.staff(JUNE, database=False)
    # The hand-worked figures of test_conversations: waits of 600, 300, 120 s (Ann), 3600 and 7200 s (Bob).
    totals = side_by_side["totals"]
    assert (totals["first_responses"], totals["first_response_median"], totals["first_response_p90"]) == (
        5, 600, pytest.approx(5760))
    assert [row["first_responses"] for row in side_by_side["by_agent"]] == [3, 2]


def test_a_reading_transaction_inside_another_reads_in_turn_on_its_connection():
    """Rows not yet committed (a test's, a caller's) are in no exported snapshot: lanes run here."""
    from django.db import transaction

    with transaction.atomic():
        make_customer("uncommitted@example.com")
        with rollups.reading():
            assert parallel.lanes_available() == 1
            (here,), (beside,) = parallel.together([_pid], [_pid])
    assert here == beside


def test_packed_lanes_give_each_figure_the_results_of_its_own_reads():
    splits = [parallel.single(lambda: "a", 10),
              parallel.Split([[lambda: 1, lambda: 2], [lambda: 3]], [40, 40], lambda here, beside: (here, beside)),
              parallel.single(_pid, 50)]
    with rollups.reading():
        assert parallel.gather(splits)[:2] == ["a", ([1, 2], [3])]


def test_the_dashboards_areas_read_side_by_side_equal_those_read_in_turn(team, settings):
    from django.core.cache import cache

    from analytics import figure_cache, views

    names = [key for key, *_ in views.SECTIONS]
    with rollups.reading():
        side_by_side = figure_cache.areas(names, JUNE)
    cache.clear()  # computed again, not read from the cache
    settings.ANALYTICS_READ_CONNECTIONS = 1
    with rollups.reading():
        in_turn = figure_cache.areas(names, JUNE)
    for figures in (side_by_side, in_turn):
        figures["pace"].pop("as_of")  # the instant each was read at
    assert side_by_side == in_turn
    assert (side_by_side["staff"]["totals"]["first_response_median"], side_by_side["inbox"]["totals"]["received"]) == (
        600, 5)


def test_a_lane_without_a_connection_runs_here_in_turn(monkeypatch):
    """A full pool (no connection within DB_POOL_TIMEOUT) makes the read slower, not an error."""
    from django.db import OperationalError
    from django.db.backends.base.base import BaseDatabaseWrapper

    main = threading.get_ident()
    connect = BaseDatabaseWrapper.ensure_connection

    def no_connection_beside(self):
        if threading.get_ident() != main:
            raise OperationalError("couldn't get a connection after 3.00 sec")
        return connect(self)

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", no_connection_beside)
    with rollups.reading():
        (here,), (beside,) = parallel.together([_pid], [_pid])
    assert here == beside
