"""Medians and 90th percentiles: in the database with percentile_cont on PostgreSQL,
by the same definition in Python elsewhere (SQLite).

percentile_cont(p) over n sorted values is the value at position p*(n-1),
interpolated linearly between its neighbours; an empty set gives None.
"""
from bisect import bisect_right
from collections import defaultdict

from django.db import connection
from django.db.models import Aggregate, Count, F, FloatField, Q


class PercentileCont(Aggregate):
    function = "percentile_cont"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, percentile, **extra):
        if not 0 <= percentile <= 1:
            raise ValueError("percentile must be within 0..1")
        super().__init__(expression, percentile=float(percentile), **extra)


def percentile(values, p):
    """percentile_cont in Python: the same numbers as PostgreSQL's."""
    ordered = sorted(float(v) for v in values if v is not None)
    if not ordered:
        return None
    position = p * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def in_database() -> bool:
    return connection.vendor == "postgresql"


def grouped(qs, group_fields, value_field, ps=(0.5, 0.9), *, database=None):
    """{group key tuple: [value at each p]} over a queryset, rows with a null value left out (a group
    with only nulls is absent). database: None picks PostgreSQL's percentile_cont where available;
    False forces the Python path (a test compares both on one data set)."""
    found = summary(qs.exclude(**{f"{value_field}__isnull": True}), group_fields, [value_field], ps,
                    database=database)
    return {key: cells[value_field] for key, cells in found.items()}


def overall(qs, value_field, ps=(0.5, 0.9), *, database=None):
    """[value at each p] over the whole queryset (None each when it is empty)."""
    return grouped(qs, [], value_field, ps, database=database)[()]


def summary(qs, group_fields, fields, ps=(0.5, 0.9), *, within=None, also=None, database=None):
    """{group key tuple: {field: [value at each p], "rows": n[, "within": m]}} for several value fields
    in one query (one sort per field on PostgreSQL, one read on SQLite); a null value is left out
    of its own field only. within=(field, limit): also how many rows have field <= limit. also:
    {name: aggregate}, more figures per group under their names (on PostgreSQL in the same query, so
    the rows are read once). No group fields: the whole queryset, under the key ()."""
    database = in_database() if database is None else database
    also = also or {}
    if database:
        names = {f"{f}__p{n}": PercentileCont(f, p) for f in fields for n, p in enumerate(ps)}
        # COUNT(*) and a count of the value itself, not of the id: with the range, group and values
        # in a covering index the rows are then read from the index alone (a year of response
        # cycles at the scale: 12 ms instead of 62 ms for each of staff's three passes).
        names["rows"] = Count("*")
        if within:
            names["within"] = Count(within[0], filter=Q(**{f"{within[0]}__lte": within[1]}))
        names.update(also)
        rows = [qs.aggregate(**names)] if not group_fields else qs.values(*group_fields).annotate(**names).order_by()
        return {tuple(row[g] for g in group_fields): {
            **{f: [row[f"{f}__p{n}"] for n in range(len(ps))] for f in fields},
            **{k: row[k] for k in ("rows", "within", *also) if k in names}} for row in rows}
    out = _summary_in_python(qs, group_fields, fields, ps, within)
    if also:
        rows = [qs.aggregate(**also)] if not group_fields else qs.values(*group_fields).annotate(**also).order_by()
        for row in rows:
            key = tuple(row[g] for g in group_fields)
            if key in out:
                out[key].update({k: row[k] for k in also})
    return out


def _summary_in_python(qs, group_fields, fields, ps, within):
    """summary() without its also= figures, by reading the values and sorting them here."""
    read, labels = (([*fields, within[0]], [*fields, "_within"]) if within else (fields, fields))
    values = defaultdict(lambda: defaultdict(list))
    for row in qs.values_list(*group_fields, *read):
        cells = values[tuple(row[:len(group_fields)])]
        for f, v in zip(labels, row[len(group_fields):]):
            cells[f].append(v)
    if not group_fields and not values:
        values[()] = defaultdict(list)
    out = {}
    for key, cells in values.items():
        out[key] = {f: [percentile(cells[f], p) for p in ps] for f in fields}
        out[key]["rows"] = len(cells[fields[0]])
        if within:
            out[key]["within"] = sum(1 for v in cells["_within"] if v is not None and v <= within[1])
    return out


# --- one index range per group (PostgreSQL) ---------------------------------------------------------
def _aggregates(fields, ps, within):
    """The select list of one part's aggregate over the derived table r (columns split_v<i>, split_w)."""
    sql, params = [], []
    for i, _ in enumerate(fields):
        for n, p in enumerate(ps):
            sql.append(f'percentile_cont(%s) WITHIN GROUP (ORDER BY r.split_v{i}) AS "f{i}p{n}"')
            params.append(float(p))
    sql.append('COUNT(*) AS "n_rows"')
    if within:
        sql.append('COUNT(r.split_w) FILTER (WHERE r.split_w <= %s) AS "n_within"')
        params.append(within[1])
    return ", ".join(sql), params


def _inner(qs, part_field, fields, within):
    columns = {"split_part": F(part_field), **{f"split_v{i}": F(f) for i, f in enumerate(fields)}}
    if within:
        columns["split_w"] = F(within[0])
    return qs.order_by().values(**columns).query.sql_with_params()


def _cells(rows, fields, ps, within):
    """summary()'s answer from the rows (key, f0p0, f0p1, ..., n_rows[, n_within])."""
    out = {}
    for row in rows:
        values = row[1:]
        cells = {f: list(values[i * len(ps):(i + 1) * len(ps)]) for i, f in enumerate(fields)}
        cells["rows"] = values[len(fields) * len(ps)]
        if within:
            cells["within"] = values[len(fields) * len(ps) + 1]
        out[(row[0],)] = cells
    return out


def by_key(qs, key_field, keys, fields, ps=(0.5, 0.9), *, within=None, database=None):
    """summary(qs, [key_field], fields, ps, within=within): the same answer, grouped by a key that
    leads an index with the queryset's range field after it (ResponseCycle's and Resolution's
    (agent, time) indexes). keys: a values_list queryset of every value the key can take (a
    foreign key's target table); rows with an empty key form the group None, as in summary().

    On PostgreSQL each key is read by its own range of that index (a LATERAL join over the keys,
    plus one read for the empty key), so no row is sorted by key before its values are sorted for
    the percentiles: at the issue's scale half the time of summary()'s sort and group."""
    database = in_database() if database is None else database
    if not database:
        return summary(qs, [key_field], fields, ps, within=within, database=False)
    inner, inner_params = _inner(qs, key_field, fields, within)
    keys_sql, keys_params = keys.order_by().query.sql_with_params()
    aggregates, agg_params = _aggregates(fields, ps, within)
    sql = (f"SELECT parts.part_key, s.* FROM ({keys_sql}) parts(part_key) CROSS JOIN LATERAL "
           f"(SELECT {aggregates} FROM ({inner}) r WHERE r.split_part = parts.part_key) s WHERE s.n_rows > 0 "
           f"UNION ALL SELECT NULL, s.* FROM (SELECT {aggregates} FROM ({inner}) r "
           f"WHERE r.split_part IS NULL) s WHERE s.n_rows > 0")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*keys_params, *agg_params, *inner_params, *agg_params, *inner_params])
        return _cells(cursor.fetchall(), fields, ps, within)


def by_span(qs, field, spans, fields, ps=(0.5, 0.9), *, database=None):
    """{(key,): cells} as summary() gives per group, for spans [(key, lo, hi)] of a field that leads
    an index: a span's rows are those with lo <= field < hi (spans must not overlap); a span
    without rows is left out. On PostgreSQL each span is read by its own range of the index (a
    LATERAL join over the spans): no expression per row to group by, and no sort by it."""
    database = in_database() if database is None else database
    spans = list(spans)
    if not database:
        starts = [lo for _, lo, _ in spans]
        values = defaultdict(lambda: defaultdict(list))
        for row in qs.values_list(field, *fields):
            i = bisect_right(starts, row[0]) - 1
            if i >= 0 and row[0] < spans[i][2]:
                for f, v in zip(fields, row[1:]):
                    values[spans[i][0]][f].append(v)
        return {(key,): {**{f: [percentile(cells[f], p) for p in ps] for f in fields},
                         "rows": len(cells[fields[0]])} for key, cells in values.items()}
    if not spans:
        return {}
    inner, inner_params = _inner(qs, field, fields, None)
    aggregates, agg_params = _aggregates(fields, ps, None)
    rows_sql = ", ".join(["(%s, %s, %s)"] * len(spans))
    sql = (f"SELECT parts.part_key, s.* FROM (VALUES {rows_sql}) parts(part_key, lo, hi) CROSS JOIN LATERAL "
           f"(SELECT {aggregates} FROM ({inner}) r WHERE r.split_part >= parts.lo AND r.split_part < parts.hi) s "
           f"WHERE s.n_rows > 0")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*(v for span in spans for v in span), *agg_params, *inner_params])
        return _cells(cursor.fetchall(), fields, ps, None)
