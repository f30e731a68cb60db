"""Exact percentiles of a long range of durations, sorting only the few rows near each rank.

percentile_cont(p) over n values needs the values at ranks floor(p*(n-1)) and the one after it, in
value order. Sorting a year of waits to find two of them is most of the staff figures' time. So
every wait and resolution carries the value bucket of its wall seconds (bucket_of: four buckets per
doubling, a fixed table), and DurationMonth counts them per agent, local month and bucket. For a
range, the whole months' counts are added up (and the part-months at its ends counted from the
rows); the running total says which bucket holds each rank and where in the bucket it sits; only
that bucket's rows of the range are read, through an index that leads with the bucket, and sorted.
The value is then interpolated from the two neighbours as percentile_cont does, so the answer is the
same number to the last bit (a test compares them over data built to hit bucket edges and ties).

Buckets only ever grow with the value (bisect over ascending edges), which is all the method
needs. PostgreSQL only, like percentile_cont: elsewhere the figures sort in Python (percentiles.py).
"""
import logging
from bisect import bisect_right
from collections import defaultdict
from datetime import date

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Count, DateField, F, Value
from django.db.models.functions import Cast, Coalesce

from . import percentiles, timebase
from .rollups import insert_select, local_month, month_runs, span_filter, whole_months
from .models import DurationMonth, RefreshState, Resolution, ResponseCycle

logger = logging.getLogger(__name__)

# Bucket 0 holds durations under a second; bucket i, those from 2**((i-1)/4) s up to the next edge.
EDGES = tuple(2 ** (i / 4) for i in range(4 * 40))
MEASURES = {"wait": (ResponseCycle, "replied_at"), "resolution": (Resolution, "resolved_at")}
# A row without a bucket (written by code from before buckets) is counted under NO_BUCKET: a range
# that holds one is sorted instead (find()).
NO_BUCKET = -1
BUCKET = Coalesce(F("bucket"), Value(NO_BUCKET))


def bucket_of(seconds):
    return None if seconds is None else bisect_right(EDGES, seconds)


def month_of(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return timebase.next_bucket(month, "month")


# --- kept by the refresh ----------------------------------------------------------------------------
def rebuild_months(months=None) -> None:
    """DurationMonth of these local months (their first days; None: every month), deleted and counted
    again from the rows: the full refresh, and a month whose counts apply_changes() found wrong."""
    if months is not None:
        months = {month_of(m) for m in months}
        if not months:
            return
    for measure, (model, field) in MEASURES.items():
        old, rows = DurationMonth.objects.filter(measure=measure), _counted(model, field)
        if months is not None:
            old, rows = old.filter(month__in=months), rows.filter(span_filter(field, month_runs(months), instants=True))
        old.delete()
        insert_select(DurationMonth, rows.values(
            v_measure=Value(measure), v_month=local_month(field), v_agent=F("agent_id"), v_bucket=BUCKET,
        ).annotate(v_count=Count("*")).order_by())


def apply_changes(removed, added) -> None:
    """DurationMonth after some waits and resolutions were rewritten (the incremental step): removed and
    added are {measure: [(answered or resolved at, agent id, bucket)]} of the rows before and after.
    Each count is moved by its difference, so the cost follows the rows changed, not the months they
    are in; a count that would not fit (below zero, or no row to take from: counts already wrong)
    has its month counted again instead."""
    for measure in MEASURES:
        delta = defaultdict(int)
        for sign, rows in ((-1, removed.get(measure, ())), (1, added.get(measure, ()))):
            for at, agent, bucket in rows:
                key = (month_of(timebase.local_date(at)), agent, NO_BUCKET if bucket is None else bucket)
                delta[key] += sign
        delta = {key: d for key, d in delta.items() if d}
        if not delta:
            continue
        kept = defaultdict(list)
        for pk, month, agent, bucket, n in DurationMonth.objects.filter(
                measure=measure, month__in={key[0] for key in delta}).values_list(
                "pk", "month", "agent_id", "bucket", "count"):
            kept[(month, agent, bucket)].append((pk, n))
        gone, changed, fresh, recount = [], [], [], set()
        for key, d in delta.items():
            rows = kept.get(key, [])
            n = sum(count for _, count in rows) + d
            if n < 0:
                recount.add(key[0])
                continue
            if len(rows) == 1 and n:
                changed.append(DurationMonth(pk=rows[0][0], count=n))
                continue
            gone += [pk for pk, _ in rows]  # none left, or a key held twice (an agent deleted: SET_NULL)
            if n:
                fresh.append(DurationMonth(measure=measure, month=key[0], agent_id=key[1], bucket=key[2], count=n))
        if gone:
            DurationMonth.objects.filter(pk__in=gone).delete()
        if changed:
            DurationMonth.objects.bulk_update(changed, ["count"])
        if fresh:
            DurationMonth.objects.bulk_create(fresh)
        if recount:
            logger.warning("analytics: %s counts by bucket of %s did not fit the rows; counted again",
                           measure, ", ".join(sorted(str(m) for m in recount)))
            rebuild_months(recount)


def _counted(model, field):
    return model.objects.filter(**{f"{field}__isnull": False, "wall_seconds__isnull": False})



# --- read by the figures -----------------------------------------------------------------------------
def applies(rng) -> bool:
    """Worth it where it works: PostgreSQL, and a range holding a whole month."""
    return connection.vendor == "postgresql" and whole_months(rng)[0] is not None


def find(measure, rng, *, agents=False, periods=False, overall=False, within=None, ps=(0.5, 0.9)):
    """{"agents": {agent id: cells}, "periods": {(first day,): cells}, "overall": cells} of the wall
    seconds of one measure in a range, cells as percentiles.summary() gives them: {"wall_seconds":
    [value at each p], "rows": n[, "within": how many <= within (agents and overall)]}. periods: the
    range's months (a month interval), as percentiles.by_span() gives them. Only the parts asked for
    are computed; a group without rows is absent (overall: None).

    The counts and the rows are read by two statements. Both read the generation the refresh writes
    with these rows (figure_cache.py); if a refresh committed between them (possible outside a
    REPEATABLE READ transaction), the counts may not fit the rows, and the figures are sorted instead.
    They are also sorted, with a warning in the log, when a bucket read holds another number of rows
    than its count says (rows written by code that did not keep the counts: a refresh puts it right)."""
    model, field = MEASURES[measure]
    kinds = [kind for kind, wanted in (("agent", agents), ("period", periods), ("overall", overall)) if wanted]
    groups, generation = _counts(measure, model, field, rng, kinds)
    if any(NO_BUCKET in buckets for buckets in groups.values()):
        logger.warning("analytics: %s rows without a value bucket in %s..%s; sorted instead "
                       "(manage.py refresh_analytics gives them one)", measure, rng.start, rng.end)
        return _by_sorting(model, field, rng, agents=agents, periods=periods, overall=overall, within=within, ps=ps)
    # Which rows to read: for each group and p, the bucket and place of the rank and of the one after.
    wanted, plan = {}, {}
    for group, buckets in groups.items():
        order = sorted(buckets)
        n = sum(buckets.values())
        places = []
        for p in ps:
            position = p * (n - 1)
            low = int(position)
            first = _locate(order, buckets, low)
            places.append((position - low, first, _locate(order, buckets, low + 1) if position > low else first))
        plan[group] = (n, places)
        for _, *ranks in places:
            for bucket, place in ranks:
                wanted.setdefault((group, bucket), set()).add(place)
    below, limit_bucket = {}, bucket_of(within)
    if within is not None:
        for group, buckets in groups.items():
            if group[0] != "period":
                below[group] = sum(c for b, c in buckets.items() if b < limit_bucket)
                if limit_bucket in buckets:
                    wanted.setdefault((group, limit_bucket), set())
    values = _read_buckets(model, field, rng, wanted, within, generation)
    if values is None or any(values[key][2] != groups[key[0]][key[1]] for key in values):
        if values is not None:  # the same generation, yet other rows than counted: a refresh is due
            logger.warning("analytics: %s counts by bucket do not match the rows for %s..%s; sorted instead "
                           "(manage.py refresh_analytics rebuilds them)", measure, rng.start, rng.end)
        return _by_sorting(model, field, rng, agents=agents, periods=periods, overall=overall, within=within, ps=ps)
    out = {"agents": {}, "periods": {}, "overall": None}
    for group, (n, places) in plan.items():
        cells = {"wall_seconds": [], "rows": n}
        for fraction, (b1, i1), (b2, i2) in places:
            first, second = values[(group, b1)][0][i1], values[(group, b2)][0][i2]
            # percentile_cont's own arithmetic: the lower value, plus the fraction of the step to the next.
            cells["wall_seconds"].append(first if fraction == 0 else first + (second - first) * fraction)
        if group in below:
            cells["within"] = below[group] + values.get((group, limit_bucket), (None, 0))[1]
        kind, key = group
        if kind == "agent":
            out["agents"][key] = cells
        elif kind == "period":
            out["periods"][(key,)] = cells
        else:
            out["overall"] = cells
    return out


def _by_sorting(model, field, rng, *, agents, periods, overall, within, ps):
    """find()'s answer by sorting every value of the range (percentiles.py)."""
    qs = model.objects.filter(**{f"{field}__gte": rng.since, f"{field}__lt": rng.until, "wall_seconds__isnull": False})
    limit = ("wall_seconds", within) if within is not None else None
    out = {"agents": {}, "periods": {}, "overall": None}
    if agents:
        out["agents"] = {key[0]: cells for key, cells in
                         percentiles.summary(qs, ["agent_id"], ["wall_seconds"], ps, within=limit).items()}
    if periods:
        out["periods"] = percentiles.by_span(qs, field, rng.spans(), ["wall_seconds"], ps)
    if overall:
        cells = percentiles.summary(qs, [], ["wall_seconds"], ps, within=limit)[()]
        out["overall"] = cells if cells["rows"] else None
    return out


def _locate(order, buckets, rank):
    """(bucket, place within it) of the rank-th value (from 0) in value order."""
    seen = 0
    for bucket in order:
        if rank < seen + buckets[bucket]:
            return bucket, rank - seen
        seen += buckets[bucket]
    raise ValueError(f"rank {rank} beyond {seen} values")


def _generation():
    return RefreshState.objects.filter(name="conversations").values("generation")


def _counts(measure, model, field, rng, kinds):
    """({(kind, key): {bucket: n}} of the range for these kinds of group ("agent": key the agent, "period":
    the month, "overall": None), the generation of the rollups it read). The whole months' counts come
    from DurationMonth, the part-months at the range's ends are counted from the rows; one statement
    sums them per group and bucket."""
    whole, rest = whole_months(rng)
    # The part-months as index ranges of their own (never the range less the whole months: that reads all of it).
    # month: a date in SQL too, or UNION with DurationMonth's date column would make both timestamps.
    counted = (model.objects.filter(span_filter(field, rest, instants=True)).values("agent_id", b=BUCKET)
               .annotate(m=Cast(local_month(field), DateField())).annotate(n=Count("*"))
               .order_by().values_list("agent_id", "m", "b", "n"))
    if whole:
        counted = (DurationMonth.objects.filter(measure=measure, month__gte=whole[0], month__lte=whole[1])
                   .values_list("agent_id", "month", "bucket", "count").union(counted, all=True))
    try:
        counts_sql, counts_params = counted.query.sql_with_params()
    except EmptyResultSet:  # no whole month, and nothing to count
        return {}, None
    generation_sql, generation_params = _generation().query.sql_with_params()
    keys = {"agent": ("c.agent", "NULL::date"), "period": ("NULL::integer", "c.month"),
            "overall": ("NULL::integer", "NULL::date")}
    by_kind = []
    for kind in kinds:
        agent, month = keys[kind]
        by_kind.append(
            f"SELECT %s, g.agent, g.month, array_agg(g.bucket ORDER BY g.bucket), array_agg(g.n ORDER BY g.bucket), "
            f"({generation_sql}) FROM (SELECT {agent} AS agent, {month} AS month, c.bucket, SUM(c.n)::bigint AS n "
            f"FROM c GROUP BY 1, 2, 3) g GROUP BY g.agent, g.month")
    sql = f"WITH c(agent, month, bucket, n) AS ({counts_sql}) " + " UNION ALL ".join(by_kind)
    groups, generation = {}, None
    with connection.cursor() as cursor:
        cursor.execute(sql, [*counts_params, *(v for kind in kinds for v in (kind, *generation_params))])
        for kind, agent, month, buckets, ns, generation in cursor.fetchall():
            groups[(kind, agent if kind == "agent" else month if kind == "period" else None)] = dict(zip(buckets, ns))
    return groups, generation


def _read_buckets(model, field, rng, wanted, within, generation):
    """{(group, bucket): ({place: value} of the places asked for, in the bucket's values of the group in
    the range in value order; how many of those values are <= within; how many values there are)},
    or None when the rollups' generation is no longer the one the counts were read at. One statement: each (group, bucket) an
    index range of its own (LATERAL joins over VALUES lists: one for agents' groups, one for the group
    of no agent, one for groups of every agent)."""
    if not wanted:
        return {}
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    time_column = quote(model._meta.get_field(field).column)
    keys = list(wanted)
    by_shape = defaultdict(list)
    for i, ((kind, key), bucket) in enumerate(keys):
        start, end = rng.since, rng.until
        if kind == "period":
            start, end = max(start, timebase.local_midnight(key)), min(end, timebase.local_midnight(next_month(key)))
        shape = "agent" if kind == "agent" and key is not None else "nobody" if kind == "agent" else "everyone"
        by_shape[shape].append([i, key if shape == "agent" else 0, bucket, start, end, sorted(wanted[keys[i]])])
    agent_test = {"agent": "r.agent_id = w.agent AND ", "nobody": "r.agent_id IS NULL AND ", "everyone": ""}
    generation_sql, generation_params = _generation().query.sql_with_params()
    parts, params = [], []
    for shape, rows in by_shape.items():
        values = ", ".join(["(%s, %s, %s, %s::timestamptz, %s::timestamptz, %s::integer[])"] * len(rows))
        parts.append(
            f"SELECT w.i, ARRAY(SELECT b.sorted[u.p + 1] FROM unnest(w.places) WITH ORDINALITY u(p, o) "
            f"ORDER BY u.o), b.within, cardinality(b.sorted), ({generation_sql}) "
            f"FROM (VALUES {values}) w(i, agent, bucket, lo, hi, places) CROSS JOIN LATERAL ("
            f"SELECT array_agg(r.wall_seconds ORDER BY r.wall_seconds) AS sorted, "
            f"COUNT(*) FILTER (WHERE r.wall_seconds <= %s) AS within FROM {table} r "
            f"WHERE {agent_test[shape]}r.bucket = w.bucket AND r.{time_column} >= w.lo AND r.{time_column} < w.hi) b")
        params += [*generation_params, *(v for row in rows for v in row), within]
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        found = {}
        for i, picked, within_n, n, read_at in cursor.fetchall():
            if read_at != generation:
                return None
            found[keys[i]] = (dict(zip(sorted(wanted[keys[i]]), picked)), within_n, n or 0)
        return found
