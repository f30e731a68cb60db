"""Independent reads of one page side by side, on separate PostgreSQL connections that all read
the page's one snapshot.

rollups.reading() opens the reading transaction REPEATABLE READ when it is the outermost one on
PostgreSQL (the API, the dashboard): every statement in it then reads the snapshot taken at its
first statement. together() exports that snapshot (pg_export_snapshot()) and runs each further
lane of reads in a thread of its own, on the thread's own connection, in a REPEATABLE READ
transaction that imports it (SET TRANSACTION SNAPSHOT) before its first read: every lane sees
exactly the rows the page's own statements see, as if they ran one after the other, so figures
stay consistent with each other (a refresh committing meanwhile is seen by none of them).

Everywhere else the lanes run one after the other on this connection, with the same answers:
SQLite (newcomer mode), a reading transaction nested in another one (a test's transaction: its
uncommitted rows are not in any exported snapshot), a lane inside a lane, outside reading() (the
PDF report), and ANALYTICS_READ_CONNECTIONS = 1; so does a lane whose thread gets no connection
(a full pool). Each lane's thread closes its connection when it is done (with DB_POOL_SIZE set,
that hands it back to the pool).
"""
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, NamedTuple

from django.conf import settings
from django.db import OperationalError, connection, transaction

_state = threading.local()
_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9]+)?$")


@contextmanager
def shared_snapshot(work_mem):
    """Inside reading()'s transaction, right after it began: when it is the outermost one on PostgreSQL,
    make it REPEATABLE READ (one snapshot for all its statements) and let together() share that
    snapshot with other connections while the block runs."""
    owner = connection.vendor == "postgresql" and not connection.in_atomic_block
    if not owner:
        with transaction.atomic():
            yield
        return
    with transaction.atomic():
        connection.ensure_connection()
        # Before any read (the first statement fixes the snapshot); a setting, kept out of the query log.
        connection.connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        _state.work_mem, _state.shared = work_mem, True
        try:
            yield
        finally:
            _state.shared = False


def lanes_available() -> int:
    """How many connections together() would read on from here (1: it runs the lanes in turn)."""
    if not getattr(_state, "shared", False) or getattr(_state, "in_lane", False):
        return 1
    return max(1, settings.ANALYTICS_READ_CONNECTIONS)


def together(*lanes):
    """[[result of each call] for each lane]: lanes are lists of callables without arguments, each
    lane's calls run in order. The first lane runs here; the others, where lanes_available() allows,
    each on a connection of its own that reads this transaction's snapshot (see the module docstring).
    An exception in any lane is raised here once every lane has finished."""
    if lanes_available() < 2 or len(lanes) < 2:
        return [[call() for call in lane] for lane in lanes]
    width = lanes_available()
    # The lanes beyond the connections allowed run after the first one, here.
    here, beside = list(lanes[:1]) + list(lanes[width:]), lanes[1:width]
    snapshot = connection.connection.execute("SELECT pg_export_snapshot()").fetchone()[0]
    if not _SNAPSHOT_ID.match(snapshot):  # it goes into a statement as text: SET takes no parameters
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    with ThreadPoolExecutor(max_workers=len(beside), thread_name_prefix="analytics-lane") as pool:
        futures = [pool.submit(_lane, snapshot, _state.work_mem, lane) for lane in beside]
        _state.in_lane = True
        try:
            done_here = [[call() for call in lane] for lane in here]
        finally:
            _state.in_lane = False
        done_beside = [f.result() for f in futures]
    # A lane that found no connection (a full pool, say) runs here, in turn: slower, not an error.
    done_beside = [[call() for call in lane] if done is _NO_CONNECTION else done
                   for lane, done in zip(beside, done_beside)]
    return [done_here[0], *done_beside, *done_here[1:]]


_NO_CONNECTION = object()


def _lane(snapshot, work_mem, calls):
    from .rollups import without_jit  # rollups imports this module

    _state.in_lane = True
    try:
        try:
            connection.ensure_connection()
        except OperationalError:
            return _NO_CONNECTION
        with transaction.atomic():
            connection.connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            connection.connection.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            without_jit(work_mem=work_mem)
            return [call() for call in calls]
    finally:
        connection.close()


class Split(NamedTuple):
    """A figure as lanes of independent reads, each lane's time (ms, measured at the issue's scale),
    and finish(*each lane's results) that makes the figure of them."""
    lanes: list
    costs: list
    finish: Callable


def single(call, cost) -> Split:
    """A figure read by one call (cost: its time in ms)."""
    return Split([[call]], [cost], lambda results: results[0])


def run(split: Split):
    """The figure: its lanes side by side (together())."""
    return split.finish(*together(*split.lanes))


def gather(splits) -> list:
    """[each split's figure]: the lanes of all of them packed into two lanes of about equal time (the
    longest first, each to the lighter), read side by side (together())."""
    parts = sorted(((cost, i, j) for i, split in enumerate(splits) for j, cost in enumerate(split.costs)),
                   key=lambda part: -part[0])
    packed, load = ([], []), [0, 0]
    for cost, i, j in parts:
        lane = 0 if load[0] <= load[1] else 1
        packed[lane].append((i, j))
        load[lane] += cost
    lanes = [lane for lane in packed if lane]
    done = together(*([call for i, j in lane for call in splits[i].lanes[j]] for lane in lanes))
    results = {}
    for lane, out in zip(lanes, done):
        out = iter(out)
        for i, j in lane:
            results[(i, j)] = [next(out) for _ in splits[i].lanes[j]]
    return [split.finish(*(results[(i, j)] for j in range(len(split.lanes)))) for i, split in enumerate(splits)]
