"""The rollups every page load reads instead of raw bookings, leads and history (docs/analytics.md,
"How it is computed"), and how each unit of them is rebuilt.

BookingFact is the base: one row per booking with its local dates, its payments summed and its
customer's first touch, written by one INSERT ... SELECT. The day rollups (FunnelDay, CashDay,
PaceDay, CustomerDay, LeadDay) are INSERT ... SELECT ... GROUP BY over it; CustomerFact and
ReplyDay are computed in Python from narrow ordered rows (a per-customer and a per-conversation
walk) and written with COPY on PostgreSQL. ActivityDay and CycleDay group the history and the
response cycles by local day.

Every statement is the ORM's, compiled for the connection in use, so PostgreSQL and SQLite run the
same code path (SQLite converts time zones with the functions Django registers) and get the same
rows. Each rebuild takes a set of units (local days, event months, bookings, customers,
conversations; None: everything), deletes their rows and computes them again; where a unit is wide
(a day of activity, a month of the pace ledger) and a step changes few of its rows, only the rows that
differ are written (rewriting). ActivityMonth and FunnelMonth add their day rollups up by month and
CohortMonth keeps each cohort's figures, so a range's whole months read a row per month
(months_and_days); the refresh recomputes a month whenever it writes one of its days or members.
"""
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from itertools import groupby

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import (BooleanField, Case, CharField, Count, DateField, DateTimeField, DecimalField, Exists,
                              ExpressionWrapper, F, OuterRef, Q, Sum, Value, When, Window)
from django.db.models.fields import AutoFieldMixin
from django.db.models.functions import Cast, Coalesce, ExtractHour, RowNumber, Trunc, TruncDate

from crm.models import Booking, Lead, LostReason, Payment
from inbox.models import ConversationActivity

from . import parallel, percentiles, timebase
from .models import (ActivityDay, ActivityMonth, BookingFact, CashDay, CohortMonth, CustomerDay, CustomerFact, CycleDay,
                     FunnelDay, FunnelMonth, LeadDay, PaceDay, ReplyDay, ResponseCycle)

ZERO = Decimal("0")
MONEY = DecimalField(max_digits=14, decimal_places=2)
Kind = ConversationActivity.Kind
# ActivityDay kinds besides the history's own
RECEIVED_HOUR, FIRST_REPLY, RESOLVED = "received_hour", "first_reply", "resolved"
SPEEDS = [("5m", 300), ("1h", 3600), ("4h", 14400), ("24h", 86400)]


# --- writing ------------------------------------------------------------------------------
def insert_select(model, qs, *, table=None) -> None:
    """INSERT INTO model's table (or this one: replacing()) the rows of a values() queryset whose keys
    are v_<field name>."""
    try:
        sql, params = qs.query.sql_with_params()
    except EmptyResultSet:
        return
    names = [n for n in (*qs.query.values_select, *qs.query.annotation_select) if n.startswith("v_")]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(model._meta.get_field(n[2:]).column) for n in names)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(table or model._meta.db_table)} ({columns}) "
                       f"SELECT {', '.join(quote(n) for n in names)} FROM ({sql}) rollup_rows", params)


def write_rows(model, fields, rows, *, table=None) -> None:
    """Write tuples of these fields: COPY on PostgreSQL, bulk_create elsewhere. table: instead of the
    model's own table, the one replacing() gave."""
    rows = list(rows)
    if not rows:
        return
    if connection.vendor == "postgresql":
        quote = connection.ops.quote_name
        columns = ", ".join(quote(model._meta.get_field(f).column) for f in fields)
        with connection.cursor() as cursor, cursor.cursor.copy(
                f"COPY {quote(table or model._meta.db_table)} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    attnames = [model._meta.get_field(f).attname for f in fields]
    model.objects.bulk_create([model(**dict(zip(attnames, row))) for row in rows], batch_size=2000)


def read_rows(qs, chunk=20000):
    """The rows of a values_list() queryset, for a walk over many of them. On PostgreSQL they are
    fetched in binary form: the same values (timestamps, dates, decimals), decoded in a quarter of the
    time of text (100,000 history rows: 1.0 s as text, 0.28 s binary)."""
    if connection.vendor != "postgresql":
        yield from qs.iterator(chunk_size=chunk)
        return
    try:
        sql, params = qs.query.sql_with_params()
    except EmptyResultSet:
        return
    import psycopg

    # A cursor that binds on the server: Django's client-side binding cursors cannot read binary.
    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    raw.format = psycopg.pq.Format.BINARY  # what execute(..., binary=True) sets
    with (connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)) as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(chunk):
            yield from rows


def _row_fields(model):
    """The fields a rollup row is compared by: all but an automatic id."""
    return [f for f in model._meta.concrete_fields if not (f.primary_key and isinstance(f, AutoFieldMixin))]


def _new_rows_table(model):
    """(table, temporary table, quoted columns): an empty temporary table shaped as the rollup's rows,
    for replacing() and rewriting() to write the new rows into and compare them with the old."""
    quote = connection.ops.quote_name
    table, temp = quote(model._meta.db_table), quote(f"new_{model._meta.db_table}")
    column_list = [quote(f.column) for f in _row_fields(model)]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {temp}")
        cursor.execute(f"CREATE TEMPORARY TABLE {temp} AS SELECT {', '.join(column_list)} FROM {table} WHERE false")
    return table, temp, column_list


@contextmanager
def replacing(model, unit):
    """Every row of a rollup rebuilt (a full refresh): yields the name of the table to write all the
    new rows into, then makes the rollup hold exactly those rows.

    On PostgreSQL the new rows go to a temporary table and only the units (a booking, a customer, a
    conversation: the `unit` field) whose rows differ are deleted and written again: rows that a
    delete in this transaction leaves dead stay in every index until it commits, so deleting and
    writing all of them cost most of a full refresh (21 s of inserts into BookingFact's indexes at the
    issue's scale, against 0.8 s into a table without indexes). A unit differs when its row differs
    (a unit of one row: compared side by side) or when a row of it (all its fields) is not in the
    other table as often (EXCEPT ALL, both ways: equal rows are counted, not merged). An empty rollup
    takes every unit. Elsewhere (SQLite, small data) the
    rows are deleted and the new ones written in place."""
    if connection.vendor != "postgresql":
        model.objects.all().delete()
        yield model._meta.db_table
        return
    table, temp, column_list = _new_rows_table(model)
    columns = ", ".join(column_list)
    unit_column = connection.ops.quote_name(model._meta.get_field(unit).column)
    yield f"new_{model._meta.db_table}"
    field = model._meta.get_field(unit)
    if field.primary_key or field.unique:  # one row per unit: compare the rows side by side
        old_row = ", ".join(f"o.{c}" for c in column_list)
        new_row = ", ".join(f"n.{c}" for c in column_list)
        differing = (f"SELECT COALESCE(o.{unit_column}, n.{unit_column}) FROM {table} o FULL JOIN {temp} n "
                     f"ON n.{unit_column} = o.{unit_column} WHERE ROW({old_row}) IS DISTINCT FROM ROW({new_row})")
    else:  # rows that are not in the other table as often (EXCEPT ALL counts duplicates), both ways
        differing = (f"SELECT {unit_column} FROM ((SELECT {columns} FROM {table} EXCEPT ALL "
                     f"SELECT {columns} FROM {temp}) UNION ALL (SELECT {columns} FROM {temp} EXCEPT ALL "
                     f"SELECT {columns} FROM {table})) differing")
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS rollup_changed_units")
        cursor.execute(f"CREATE TEMPORARY TABLE rollup_changed_units AS SELECT DISTINCT unit FROM ({differing}) d(unit)")
        cursor.execute(f"DELETE FROM {table} WHERE {unit_column} IN (SELECT unit FROM rollup_changed_units)")
        cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {temp} "
                       f"WHERE {unit_column} IN (SELECT unit FROM rollup_changed_units)")
        cursor.execute(f"DROP TABLE {temp}")
        cursor.execute("DROP TABLE rollup_changed_units")


@contextmanager
def rewriting(rows, *, whole=False):
    """Some rows of a rollup rebuilt (the incremental step: a day's, a month's): rows is a queryset of
    them; yields the name of the table to write their new rows into, then makes the rollup hold those
    rows in their place, deleting and writing only the rows that differ.

    On PostgreSQL the new rows go to a temporary table and are compared with the old ones, all their
    fields, equal rows counted (numbered within equal rows on each side): a new message changes the
    count of one ActivityDay row and one new booking one PaceDay row, so the step leaves one dead row
    behind, not the day's hundred or the month's two hundred. Dead rows are what the next reads of
    the rollup step over until vacuum comes by. whole=True (every row: the full refresh) and elsewhere
    (SQLite): the rows are deleted and the new ones written in place."""
    model = rows.model
    if whole or connection.vendor != "postgresql":
        rows.delete()
        yield model._meta.db_table
        return
    table, temp, column_list = _new_rows_table(model)
    columns, pk = ", ".join(column_list), connection.ops.quote_name(model._meta.pk.column)
    yield f"new_{model._meta.db_table}"
    try:
        old_sql, old_params = rows.order_by().values_list(
            "pk", *(f.attname for f in _row_fields(model))).query.sql_with_params()
    except EmptyResultSet:
        old_sql, old_params = f"SELECT {pk}, {columns} FROM {table} WHERE false", ()
    same = " AND ".join(f"o.{c} IS NOT DISTINCT FROM g.{c}" for c in column_list)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH o AS (SELECT s.*, row_number() OVER (PARTITION BY {columns} ORDER BY s.rollup_id) AS rollup_n "
            f"FROM ({old_sql}) s(rollup_id, {columns})), "
            f"n AS (SELECT {columns}, row_number() OVER (PARTITION BY {columns}) AS rollup_n FROM {temp}), "
            f"gone AS (SELECT {columns}, rollup_n FROM o EXCEPT SELECT {columns}, rollup_n FROM n), "
            f"removed AS (DELETE FROM {table} t USING o, gone g WHERE t.{pk} = o.rollup_id AND {same} "
            f"AND o.rollup_n = g.rollup_n) "
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM "
            f"(SELECT {columns}, rollup_n FROM n EXCEPT SELECT {columns}, rollup_n FROM o) added", old_params)
        cursor.execute(f"DROP TABLE {temp}")


def without_jit(work_mem=None) -> None:
    """Inside a transaction on PostgreSQL: no JIT compilation for its statements (the planner compiles
    a statement whose estimated cost passes jit_above_cost, which takes 0.1-0.6 s here, more than
    these statements run for); work_mem: a larger sort memory for them (a year's durations spill
    to disk at the default 4 MB)."""
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        connection.ensure_connection()
        # On the driver's connection: a setting, not a read, so it stays out of Django's query log
        # (and of the query-count pins, which SQLite runs without it).
        connection.connection.execute("SET LOCAL jit = off")
        if work_mem:
            connection.connection.execute(f"SET LOCAL work_mem = '{int(work_mem)}MB'")


@contextmanager
def reading():
    """Where the figures are read (the API, the dashboard): one transaction without JIT and with
    READ_WORK_MEM_MB of sort memory, so percentiles over a year's durations sort in memory; on
    PostgreSQL one snapshot that parallel.together() shares with the connections it reads on."""
    with parallel.shared_snapshot(READ_WORK_MEM_MB):
        without_jit(work_mem=READ_WORK_MEM_MB)
        yield


READ_WORK_MEM_MB = 32
# The full refresh compares whole rollups with their new rows (replacing()): hashed in memory.
REFRESH_WORK_MEM_MB = 128


def analyze(*models) -> None:
    """After a full fill on PostgreSQL: the planner's statistics for these tables, so the statements
    that read them next (joins, EXISTS by customer) use their indexes instead of guessing from an
    empty table's."""
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        for model in models:  # maintenance, like without_jit's setting: on the driver's connection
            connection.connection.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


# --- units ----------------------------------------------------------------------------------
def spans(days):
    """Consecutive runs of dates as (first, last)."""
    out = []
    for day in sorted(set(days)):
        if out and day == out[-1][1] + timedelta(days=1):
            out[-1][1] = day
        else:
            out.append([day, day])
    return out


def day_filter(field, days, *, instants=False):
    """Q for a field within these local days (None: every day): a date field, or with instants=True a
    timestamp field, from the local midnight of a run's first day to the one after its last."""
    return Q() if days is None else span_filter(field, spans(days), instants=instants)


def span_filter(field, runs, *, instants=False):
    """Q for a field within these runs of local days, (first, last) each: day_filter's, for runs
    already known (a range's part-months, whole months)."""
    q = Q(pk__in=[])
    for first, last in runs:
        if instants:
            q |= Q(**{f"{field}__gte": timebase.local_midnight(first),
                      f"{field}__lt": timebase.local_midnight(last + timedelta(days=1))})
        else:
            q |= Q(**{f"{field}__gte": first, f"{field}__lte": last})
    return q


def month_runs(months):
    """Each local month (its first day) as the run of its days, (first, last)."""
    return [(month, timebase.next_bucket(month, "month") - timedelta(days=1)) for month in sorted(months)]


def instant_filter(field, days):
    return day_filter(field, days, instants=True)


def whole_months(rng):
    """(first, last) of the local months wholly inside the range, or None; and the runs of the range's
    days outside them, as (first, last)."""
    first = rng.start if rng.start.day == 1 else timebase.next_bucket(rng.start, "month")
    after = timebase.next_bucket(rng.end, "month")  # the first day of the month after the end's
    # The day after the last whole month: the end's month is whole when the range ends on its last day.
    stop = after if rng.end == after - timedelta(days=1) else timebase.bucket(rng.end, "month")
    if first >= stop:  # no whole month: every day is read from the days
        return None, [(rng.start, rng.end)]
    rest = [(rng.start, first - timedelta(days=1))] if rng.start < first else []
    if stop <= rng.end:
        rest.append((stop, rng.end))
    return (first, stop - timedelta(days=1)), rest


def months_and_days(rng, day_rows, month_rows, read, *, per_period=False):
    """The rows read(queryset, period) makes of a day rollup over the range: from its month rollup for
    the range's whole months, from the days for the rest, in one statement (UNION ALL); rows with the
    same key come once from each part, and the caller adds them up. read gets the part's rows in the
    range and, with per_period, the period of each row at the range's interval (months are read only
    when the interval is a month: a month row cannot be split into weeks or days)."""
    months, rest = whole_months(rng)
    if per_period and rng.interval != "month":
        months, rest = None, [(rng.start, rng.end)]
    parts = []
    if months:
        period = F("month") if per_period else None
        parts.append(read(month_rows.filter(month__gte=months[0], month__lte=months[1]), period))
    if rest:
        # A date, as the months' own column is (DATE_TRUNC gives a timestamp, which the union would
        # make of both).
        period = (F("day") if rng.interval == "day" else Cast(Trunc("day", rng.interval, output_field=DateField()),
                                                              DateField())) if per_period else None
        parts.append(read(day_rows.filter(span_filter("day", rest)), period))
    return list(parts[0].union(*parts[1:], all=True)) if len(parts) > 1 else list(parts[0])


def local_day(field):
    return TruncDate(field, tzinfo=timebase.zone())


def local_month(field):
    return Trunc(field, "month", output_field=DateField(), tzinfo=timebase.zone())


# --- bookings ---------------------------------------------------------------------------------
def rebuild_booking_facts(ids=None) -> None:
    """The facts of these bookings (None: all) from the bookings, their payments and their customer's leads.

    One INSERT ... SELECT: the bookings LEFT JOIN their payments summed per booking (deposits and
    balances, refunds) and the source of each customer's earliest lead (first by created_at, then
    id), each summed or ranked once in a derived table, not looked up per booking (at the issue's
    scale a full rebuild took 21 s with a subquery per booking and column, 4 s joined)."""
    facts, bookings = BookingFact.objects.all(), Booking.objects.order_by()  # no Meta ordering: nothing to sort
    payments, leads = Payment.objects.order_by(), Lead.objects.order_by()
    if ids is not None:
        ids = list(ids)
        facts, bookings, payments = (facts.filter(booking_id__in=ids), bookings.filter(pk__in=ids),
                                     payments.filter(booking_id__in=ids))
        leads = leads.filter(customer_id__in=Booking.objects.filter(pk__in=ids).values("customer_id"))
    off = Case(When(cancelled_at__isnull=True, then=F("lost_at")), When(lost_at__isnull=True, then=F("cancelled_at")),
               When(cancelled_at__lt=F("lost_at"), then=F("cancelled_at")), default=F("lost_at"),
               output_field=DateTimeField())
    base = bookings.values(
        v_booking=F("pk"), v_customer_id=F("customer_id"), v_status=F("status"), v_source=F("source"),
        v_lost_reason_id=F("lost_reason_id"),
        v_date_unavailable=ExpressionWrapper(Q(status=Booking.Status.LOST,
                                               lost_reason__slug=LostReason.DATE_UNAVAILABLE),
                                             output_field=BooleanField()),
        v_quoted=ExpressionWrapper(Q(quoted_at__isnull=False), output_field=BooleanField()),
        v_confirmed=ExpressionWrapper(Q(confirmed_at__isnull=False), output_field=BooleanField()),
        v_guests=F("guest_count"), v_total=F("total"),
        v_inquiry_day=local_day("inquiry_at"), v_event_at=F("event_at"), v_event_day=local_day("event_at"),
        v_event_month=local_month("event_at"), v_confirmed_at=F("confirmed_at"),
        v_confirmed_day=local_day("confirmed_at"), v_off_at=off, v_off_day=TruncDate(off, tzinfo=timebase.zone()))
    paid = payments.values(paid_booking=F("booking_id")).annotate(
        paid_in=Sum("amount", filter=Q(kind__in=[Payment.Kind.DEPOSIT, Payment.Kind.BALANCE])),
        paid_refunded=Sum("amount", filter=Q(kind=Payment.Kind.REFUND)))
    first = leads.filter(customer_id__isnull=False).annotate(rank=Window(
        RowNumber(), partition_by=[F("customer_id")], order_by=[F("created_at").asc(), F("id").asc()])).filter(
        rank=1).values(touch_customer=F("customer_id"), touch_source=F("source"))
    if ids is None:
        with replacing(BookingFact, "booking") as table:
            _insert_facts(table, base, paid, first)
    else:
        facts.delete()
        _insert_facts(BookingFact._meta.db_table, base, paid, first)


def _insert_facts(table, base, paid, first) -> None:
    try:
        parts = [qs.query.sql_with_params() for qs in (base, paid, first)]
    except EmptyResultSet:
        return
    names = [n for n in base.query.annotation_select if n.startswith("v_")]
    quote = connection.ops.quote_name
    columns = [quote(BookingFact._meta.get_field(n[2:]).column) for n in names]
    columns += [quote(BookingFact._meta.get_field(f).column) for f in ("paid_in", "refunded", "first_touch")]
    sql = (f"INSERT INTO {quote(table)} ({', '.join(columns)}) "
           f"SELECT {', '.join('b.' + quote(n) for n in names)}, COALESCE(p.paid_in, 0), "
           f"COALESCE(p.paid_refunded, 0), COALESCE(t.touch_source, '') "
           f"FROM ({parts[0][0]}) b LEFT JOIN ({parts[1][0]}) p ON p.paid_booking = b.v_booking "
           f"LEFT JOIN ({parts[2][0]}) t ON t.touch_customer = b.v_customer_id")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*parts[0][1], *parts[1][1], *parts[2][1]])


def rebuild_funnel(days=None) -> None:
    """FunnelDay of these local inquiry days, and FunnelMonth of their months."""
    _funnel_days(days)
    add_up_months(FunnelDay, FunnelMonth, None if days is None else {timebase.bucket(d, "month") for d in days})


def _funnel_days(days) -> None:
    FunnelDay.objects.filter(day_filter("day", days)).delete()
    facts = BookingFact.objects.filter(day_filter("inquiry_day", days))
    done = Q(status=Booking.Status.COMPLETED)
    for dim in ("source", "first_touch"):
        insert_select(FunnelDay, facts.values(v_day=F("inquiry_day"), v_dim=Value(dim), v_key=F(dim)).annotate(
            v_inquiries=Count("pk"), v_quoted=Count("pk", filter=Q(quoted=True)),
            v_confirmed=Count("pk", filter=Q(confirmed=True)), v_completed=Count("pk", filter=done),
            v_lost=Count("pk", filter=Q(status=Booking.Status.LOST)),
            v_cancelled=Count("pk", filter=Q(status=Booking.Status.CANCELLED)),
            v_guests=Coalesce(Sum("guests", filter=done), 0),
            v_value=Coalesce(Sum("total", filter=done), Value(ZERO), output_field=MONEY)).order_by())
    insert_select(FunnelDay, facts.filter(status=Booking.Status.LOST).values(
        v_day=F("inquiry_day"), v_dim=Value("reason"), v_key=Cast("lost_reason_id", CharField())).annotate(
        v_inquiries=Count("pk")).order_by())
    insert_select(FunnelDay, facts.filter(date_unavailable=True).values(
        v_day=F("inquiry_day"), v_dim=Value("turned"), v_key=Cast("event_day", CharField())).annotate(
        v_inquiries=Count("pk")).order_by())


def rebuild_cash(days=None) -> None:
    """CashDay of these local event days."""
    CashDay.objects.filter(day_filter("day", days)).delete()
    short = Q(total__gt=F("paid_in"))
    insert_select(CashDay, BookingFact.objects.filter(day_filter("event_day", days), status__in=[
        Booking.Status.INQUIRY, Booking.Status.QUOTED, Booking.Status.CONFIRMED, Booking.Status.COMPLETED]).values(
        v_day=F("event_day"), v_status=F("status")).annotate(
        v_count=Count("pk"), v_total=Sum("total"),
        v_paid_net=Sum(F("paid_in") - F("refunded"), output_field=MONEY),
        v_due=Coalesce(Sum(F("total") - F("paid_in"), filter=short, output_field=MONEY), Value(ZERO),
                       output_field=MONEY),
        v_due_count=Count("pk", filter=short)).order_by())


def on_books_rows():
    """Facts of bookings that were ever on the books: confirmed, and not cancelled or lost by then."""
    return BookingFact.objects.filter(confirmed_at__isnull=False).filter(
        Q(off_at__isnull=True) | Q(off_at__gt=F("confirmed_at")))


def rebuild_pace(months=None) -> None:
    """PaceDay of these event months."""
    rows = on_books_rows()
    if months is not None:
        rows = rows.filter(event_month__in=list(months))
    with rewriting(PaceDay.objects.filter(**({} if months is None else {"month__in": list(months)})),
                   whole=months is None) as table:
        insert_select(PaceDay, rows.values(v_month=F("event_month"), v_day=F("confirmed_day")).annotate(
            v_count=Count("pk"), v_amount=Sum("total")).order_by(), table=table)
        insert_select(PaceDay, rows.filter(off_at__isnull=False).values(v_month=F("event_month"), v_day=F("off_day"))
                      .annotate(v_count=Count("pk") * -1, v_amount=Sum("total") * -1).order_by(), table=table)


def rebuild_customers(ids=None) -> None:
    """CustomerFact of these customers (None: all), walking their facts in event order."""
    facts = BookingFact.objects.order_by("customer_id", "event_at", "booking_id")
    if ids is not None:
        facts = facts.filter(customer_id__in=list(ids))
        CustomerFact.objects.filter(customer_id__in=list(ids)).delete()
        _write_customers(facts, CustomerFact._meta.db_table)
    else:
        with replacing(CustomerFact, "customer_id") as table:
            _write_customers(facts, table)


def _write_customers(facts, table) -> None:
    dead = {Booking.Status.LOST, Booking.Status.CANCELLED}
    rows = []
    for customer, group in groupby(read_rows(facts.values_list("customer_id", "status", "event_day", "total",
                                                               "refunded")), key=lambda r: r[0]):
        completed, value, refunded, live = [], ZERO, ZERO, None
        for _, status, day, total, refund in group:
            refunded += refund
            if status == Booking.Status.COMPLETED:
                completed.append(day)
                value += total
            if status not in dead:
                live = day if live is None else max(live, day)
        if not completed:
            continue
        first, second = completed[0], completed[1] if len(completed) > 1 else None
        months = None
        if second is not None:
            months = (second.year - first.year) * 12 + second.month - first.month + (second.day > first.day)
        rows.append((customer, first, first.replace(day=1), second, months,
                     (second - first).days if second else None, len(completed), value - refunded, live))
    write_rows(CustomerFact, ["customer_id", "first_day", "first_month", "second_day", "repeat_months",
                              "days_to_second", "completed", "ltv", "last_live_day"], rows, table=table)


def cohorts_of(members, *, database=None) -> dict:
    """{first month: {"n", "ltv_sum", "ltv": [median], "r6", "r12", "r24"}} of these CustomerFact rows
    grouped by cohort, its median and its counts in one read of the members."""
    found = percentiles.summary(members, ["first_month"], ["ltv"], (0.5,), also={
        "n": Count("pk"), "ltv_sum": Sum("ltv"),
        **{f"r{n}": Count("pk", filter=Q(repeat_months__lte=n)) for n in (6, 12, 24)}}, database=database)
    return {month: cells for (month,), cells in found.items()}


def rebuild_cohorts(months=None) -> None:
    """CohortMonth of these first months (None: all), from CustomerFact: run after the customers' facts
    are written, for the months their members left and joined."""
    if months is not None and not months:
        return
    members = CustomerFact.objects.all()
    if months is not None:
        members = members.filter(first_month__in=list(months))
    rows = [(month, c["n"], c["ltv_sum"], c["ltv"][0], c["r6"], c["r12"], c["r24"])
            for month, c in sorted(cohorts_of(members).items())]
    CohortMonth.objects.filter(**({} if months is None else {"first_month__in": list(months)})).delete()
    write_rows(CohortMonth, ["first_month", "customers", "ltv_sum", "ltv_median", "repeat_6", "repeat_12",
                             "repeat_24"], rows)


def rebuild_customer_days(days=None) -> None:
    """CustomerDay of these local days: completed events and first completed events."""
    CustomerDay.objects.filter(day_filter("day", days)).delete()
    insert_select(CustomerDay, BookingFact.objects.filter(day_filter("event_day", days),
                                                          status=Booking.Status.COMPLETED)
                  .values(v_day=F("event_day")).annotate(v_completed=Count("pk"), v_new=Value(0)).order_by())
    insert_select(CustomerDay, CustomerFact.objects.filter(day_filter("first_day", days))
                  .values(v_day=F("first_day")).annotate(v_completed=Value(0), v_new=Count("pk")).order_by())


def rebuild_leads(days=None) -> None:
    """LeadDay of these local creation days."""
    LeadDay.objects.filter(day_filter("day", days)).delete()
    won = Q(booking__analytics_fact__status=Booking.Status.COMPLETED)
    insert_select(LeadDay, Lead.objects.filter(instant_filter("created_at", days)).values(
        v_day=local_day("created_at"), v_source=F("source"),
        v_lost_reason_id=Case(When(status=Lead.Status.LOST, booking__isnull=True, then=F("lost_reason_id")),
                              default=None)).annotate(
        v_leads=Count("pk"), v_converted=Count("pk", filter=won),
        v_revenue=Coalesce(Sum(F("booking__analytics_fact__total") - F("booking__analytics_fact__refunded"),
                               filter=won, output_field=MONEY), Value(ZERO), output_field=MONEY)).order_by())


# --- conversations -------------------------------------------------------------------------------
def rebuild_activity_days(days=None) -> None:
    """ActivityDay of these local days, from the history."""
    rows = ConversationActivity.objects.filter(instant_filter("at", days))
    received = rows.filter(kind=Kind.RECEIVED)
    with rewriting(ActivityDay.objects.filter(day_filter("day", days)).exclude(kind=FIRST_REPLY),
                   whole=days is None) as table:
        insert_select(ActivityDay, received.values(v_day=local_day("at"), v_kind=Value(Kind.RECEIVED),
                                                   v_channel=F("channel")).annotate(v_count=Count("pk")).order_by(),
                      table=table)
        insert_select(ActivityDay, received.values(
            v_day=local_day("at"), v_kind=Value(RECEIVED_HOUR), v_channel=Value(""),
            v_hour=ExtractHour("at", tzinfo=timebase.zone())).annotate(v_count=Count("pk")).order_by(), table=table)
        insert_select(ActivityDay, rows.filter(kind__in=[Kind.REPLIED, Kind.NOTE], actor__isnull=False).values(
            v_day=local_day("at"), v_kind=F("kind"), v_agent=F("actor_id"), v_channel=Value("")).annotate(
            v_count=Count("pk")).order_by(), table=table)
        # The Resolution rows' own definition (refresh.conversation_facts), by the day and agent of the change.
        insert_select(ActivityDay, rows.filter(kind=Kind.STATUS_CHANGED, to_value="resolved").exclude(
            from_value="resolved").values(v_day=local_day("at"), v_kind=Value(RESOLVED), v_agent=F("actor_id"),
                                          v_channel=Value("")).annotate(v_count=Count("pk")).order_by(), table=table)
    _first_replies(days)


def _first_replies(days) -> None:
    """ActivityDay rows of kind "first_reply": per local day and agent, the ReplyDay rows without a previous
    day (a conversation the agent replied in for the first time)."""
    with rewriting(ActivityDay.objects.filter(day_filter("day", days), kind=FIRST_REPLY), whole=days is None) as table:
        insert_select(ActivityDay, ReplyDay.objects.filter(day_filter("day", days), prev_day__isnull=True).values(
            v_day=F("day"), v_kind=Value(FIRST_REPLY), v_agent=F("agent_id"), v_channel=Value("")).annotate(
            v_count=Count("pk")).order_by(), table=table)


def add_up_months(day_model, month_model, months=None) -> None:
    """month_model's rows of these local months (first days; None: all), added up from day_model's:
    its COUNTS summed, every other field a key. Run after every write of the days in them, in the same
    transaction (by difference: rewriting)."""
    if months is not None and not months:
        return
    days = day_model.objects.all() if months is None else day_model.objects.filter(
        span_filter("day", month_runs(months)))
    keys = {f"v_{f.name}": F(f.name) for f in month_model._meta.concrete_fields
            if f.name not in ("id", "month", *month_model.COUNTS)}
    with rewriting(month_model.objects.filter(**({} if months is None else {"month__in": list(months)})),
                   whole=months is None) as table:
        insert_select(month_model, days.values(v_month=Trunc("day", "month", output_field=DateField()), **keys)
                      .annotate(**{f"v_{c}": Sum(c) for c in month_model.COUNTS}).order_by(), table=table)


def rebuild_activity_months(months=None) -> None:
    """ActivityMonth of these local months (None: all), from ActivityDay."""
    add_up_months(ActivityDay, ActivityMonth, months)


def rebuild_reply_days(conversation_ids=None) -> set | None:
    """ReplyDay of these conversations (None: all). The local days whose first replies (ActivityDay) were
    written again (None: all)."""
    rows = ConversationActivity.objects.filter(kind=Kind.REPLIED, actor__isnull=False)
    if conversation_ids is not None:
        rows = rows.filter(conversation_id__in=list(conversation_ids))
        old = ReplyDay.objects.filter(conversation_id__in=list(conversation_ids))
        days = set(old.values_list("day", flat=True))
        old.delete()
        _insert_reply_days(rows, ReplyDay._meta.db_table)
        days |= set(ReplyDay.objects.filter(conversation_id__in=list(conversation_ids))
                    .values_list("day", flat=True).distinct())
        _first_replies(days)
        return days
    with replacing(ReplyDay, "conversation") as table:
        _insert_reply_days(rows, table)
    _first_replies(None)
    return None


def _insert_reply_days(rows, table) -> None:
    """Each local day an agent replied in a conversation, with the agent's previous such day in it: one
    INSERT ... SELECT over the distinct (conversation, agent, day) of these reply rows (LAG per
    conversation and agent, in day order)."""
    try:
        sql, params = rows.values(v_conversation=F("conversation_id"), v_agent=F("actor_id"),
                                  v_day=local_day("at")).distinct().order_by().query.sql_with_params()
    except EmptyResultSet:
        return
    quote = connection.ops.quote_name
    columns = ", ".join(quote(ReplyDay._meta.get_field(f).column) for f in ("day", "agent", "conversation", "prev_day"))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {quote(table)} ({columns}) SELECT d.v_day, d.v_agent, d.v_conversation, "
                       f"LAG(d.v_day) OVER (PARTITION BY d.v_conversation, d.v_agent ORDER BY d.v_day) "
                       f"FROM ({sql}) d", params)


def speed_bucket():
    whens = [When(wall_seconds__lte=limit, then=Value(name)) for name, limit in SPEEDS]
    return Case(When(wall_seconds__isnull=True, then=Value("unanswered")), *whens, default=Value("later"),
                output_field=CharField())


def rebuild_cycle_days(days=None) -> None:
    """CycleDay of these local days, from the response cycles (and the customers' confirmed bookings)."""
    CycleDay.objects.filter(day_filter("day", days)).delete()
    insert_select(CycleDay, ResponseCycle.objects.filter(instant_filter("started_at", days))
                  .values(v_day=local_day("started_at")).annotate(v_started=Count("pk")).order_by())
    insert_select(CycleDay, ResponseCycle.objects.filter(instant_filter("replied_at", days), replied_at__isnull=False)
                  .values(v_day=local_day("replied_at")).annotate(v_answered=Count("pk")).order_by())
    window = timedelta(days=settings.ANALYTICS_CONVERSION_WINDOW_DAYS)
    booked = Exists(BookingFact.objects.filter(customer_id=OuterRef("conversation__customer_id"),
                                               confirmed_at__gte=OuterRef("started_at"),
                                               confirmed_at__lte=OuterRef("window_end")))
    firsts = (ResponseCycle.objects.filter(instant_filter("started_at", days), number=0)
              .annotate(window_end=ExpressionWrapper(F("started_at") + window, output_field=DateTimeField()),
                        booked=booked))
    insert_select(CycleDay, firsts.values(v_day=local_day("started_at"), v_speed=speed_bucket()).annotate(
        v_conversations=Count("pk"), v_booked=Count("pk", filter=Q(booked=True))).order_by())

