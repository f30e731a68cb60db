"""Every hand-written statement of the inbox: those every inbound message runs.

Building the same SELECT/INSERT/UPDATE with the ORM for each message cost more
CPU than the database spent on it (ingest is measured in messages per second,
see bench/bench_email.py). These helpers take the model's own field
definitions and value adapters, so types, JSON encoders and time zones are
handled exactly as the ORM would; only the SQL text is written out.
"""
from django.db import connection

from crm.models import Customer, CustomerIdentity

from .models import Conversation

# PostgreSQL's bind-parameter limit per statement (a 16-bit count in the wire
# protocol); SQLite's default limit (SQLITE_MAX_VARIABLE_NUMBER) is higher.
MAX_PARAMETERS = 65_535


def table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def lock_one(model, sql: str, params, *, of: str = ""):
    """The first row of a SELECT ("{table}" is the model's table), locked FOR UPDATE where the database can."""
    found = lock_all(model, sql + " LIMIT 1", params, of=of)
    return found[0] if found else None


def lock_all(model, sql: str, params, *, of: str = "") -> list:
    """The rows of a SELECT ("{table}" is the model's table), locked FOR UPDATE where the database can."""
    sql = sql.replace("{table}", table(model))
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE" + (f" OF {of}" if of and connection.features.has_select_for_update_of else "")
    return list(model.objects.raw(sql, params))


def insert(objs: list, fields: tuple) -> None:
    """INSERT unsaved instances of one model and set their primary keys.

    fields: the names to write (the rest take their database defaults).
    PostgreSQL: one statement for any number of rows, each column one array
    parameter (INSERT ... SELECT * FROM UNNEST(...), as Django's bulk_create
    does): a VALUES list of 500 rows is 6,500 placeholders, which psycopg
    splits with a regular expression and PostgreSQL parses one by one, and
    that cost more worker CPU than the rest of storing a batch. Elsewhere one
    statement per MAX_PARAMETERS // len(fields) rows. Falls back to
    bulk_create where the database cannot return the new ids.
    """
    model = type(objs[0])
    if not connection.features.can_return_rows_from_bulk_insert:
        model.objects.bulk_create(objs)
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    if connection.vendor == "postgresql" and len(objs) > 1:
        _insert_unnest(model, columns, objs)
        return
    rows_per_statement = max(1, MAX_PARAMETERS // len(columns))
    for start in range(0, len(objs), rows_per_statement):
        _insert_rows(model, columns, objs[start:start + rows_per_statement])


def _insert_rows(model, columns, objs) -> None:
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sql = "INSERT INTO {} ({}) VALUES {} RETURNING {}".format(
        table(model), ", ".join(connection.ops.quote_name(f.column) for f in columns),
        ", ".join([row] * len(objs)), connection.ops.quote_name(model._meta.pk.column),
    )
    _execute_insert(sql, [value for obj in objs for value in _values(obj, columns)], objs)


def _insert_unnest(model, columns, objs) -> None:
    # The element type without its modifiers (varchar, not varchar(255)): as bulk_create does.
    arrays = ", ".join(f"%s::{f.db_type(connection).split('(')[0]}[]" for f in columns)
    sql = "INSERT INTO {} ({}) SELECT * FROM UNNEST({}) RETURNING {}".format(
        table(model), ", ".join(connection.ops.quote_name(f.column) for f in columns), arrays,
        connection.ops.quote_name(model._meta.pk.column),
    )
    # Rows come back in the order UNNEST gives them, which is the arrays' (bulk_create relies on it too).
    _execute_insert(sql, [list(column) for column in zip(*(_values(obj, columns) for obj in objs))], objs)


def _values(obj, columns) -> list:
    return [f.get_db_prep_save(f.pre_save(obj, add=True), connection) for f in columns]


def _execute_insert(sql, params, objs) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = [r[0] for r in cursor.fetchall()]
    for obj, pk in zip(objs, ids, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = connection.alias


def update(obj, fields: list) -> None:
    """UPDATE these fields of one saved instance (what save(update_fields=...) does, without signals)."""
    meta = obj._meta
    columns = [meta.get_field(name) for name in fields]
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        table(type(obj)), ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in columns),
        connection.ops.quote_name(meta.pk.column),
    )
    params = [f.get_db_prep_save(f.pre_save(obj, add=False), connection) for f in columns] + [obj.pk]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def update_many(objs: list, fields: list) -> None:
    """UPDATE these fields of several saved instances of one model, one statement per parameter-limit's worth.

    PostgreSQL: UPDATE ... FROM (VALUES ...), each value cast to its column's
    type. bulk_update builds a CASE per field and row, which cost more worker
    CPU than the rest of an IMAP commit group; it is the fallback elsewhere.
    """
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model.objects.bulk_update(objs, fields)
        return
    meta = model._meta
    columns = [meta.pk] + [meta.get_field(name) for name in fields]
    rows_per_statement = max(1, MAX_PARAMETERS // len(columns))
    for start in range(0, len(objs), rows_per_statement):
        _update_rows(model, columns, objs[start:start + rows_per_statement])


def _update_rows(model, columns, objs) -> None:
    quote = connection.ops.quote_name
    pk = quote(model._meta.pk.column)
    first_row = "(" + ", ".join(f"%s::{f.cast_db_type(connection)}" for f in columns) + ")"
    other_rows = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sql = "UPDATE {table} AS t SET {sets} FROM (VALUES {rows}) AS v ({names}) WHERE t.{pk} = v.{pk}".format(
        table=table(model), sets=", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in columns[1:]),
        rows=", ".join([first_row] + [other_rows] * (len(objs) - 1)),
        names=", ".join(quote(f.column) for f in columns), pk=pk,
    )
    params = [f.get_db_prep_save(f.pre_save(obj, add=False), connection) for obj in objs for f in columns]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# --- the locks of receiving (inbox/receiving.py) -------------------------------------------
# Customers first, then their conversations, each set in id order: two workers
# storing mail of overlapping customers take the same rows in the same order.

def lock_customers(*, ids=(), identities=()) -> list:
    """Lock the customers with these ids and those reachable at these (kind, value) identities.

    One statement, rows in id order. Each returned Customer carries
    matched_kind / matched_value: the identity it was found by (None when
    found by id; a customer found both ways comes once per way).
    """
    parts, params = [], []
    by_kind = {}
    for kind, value in identities:
        by_kind.setdefault(kind, []).append(value)
    if by_kind:
        where = " OR ".join(f"(kind = %s AND value IN ({', '.join(['%s'] * len(values))}))"
                            for values in by_kind.values())
        parts.append(f"SELECT customer_id AS customer_id, kind AS kind, value AS value FROM {table(CustomerIdentity)} "
                     f"WHERE {where}")
        for kind, values in by_kind.items():
            params += [kind, *values]
    if ids:
        parts.append(f"SELECT id AS customer_id, NULL AS kind, NULL AS value FROM {{table}} "
                     f"WHERE id IN ({', '.join(['%s'] * len(ids))})")
        params += list(ids)
    if not parts:
        return []
    return lock_all(
        Customer,
        "SELECT c.*, m.kind AS matched_kind, m.value AS matched_value FROM {table} c "
        f"JOIN ({' UNION ALL '.join(parts)}) AS m ON m.customer_id = c.id ORDER BY c.id",
        params, of="c",
    )


def lock_candidates(customer_ids, *, hinted=(), resolved_since) -> list:
    """Lock the conversations a new message of these customers may join: active, hinted, or resolved since then."""
    if not customer_ids:
        return []
    Status = Conversation.Status
    hinted = list(hinted) or [None]
    return lock_all(
        Conversation,
        f"SELECT * FROM {{table}} WHERE customer_id IN ({', '.join(['%s'] * len(customer_ids))}) "
        f"AND (status IN (%s, %s) OR id IN ({', '.join(['%s'] * len(hinted))}) "
        "OR (status = %s AND resolved_at >= %s)) ORDER BY id",
        [*customer_ids, Status.OPEN, Status.PENDING, *hinted, Status.RESOLVED, resolved_since],
    )


def lock_conversation_of(customer_id: int, pk: int):
    """This conversation if it is the customer's, locked; else None."""
    return lock_one(Conversation, "SELECT * FROM {table} WHERE id = %s AND customer_id = %s", [pk, customer_id])


def lock_latest_conversation(customer_id: int):
    """The customer's newest active conversation, else their newest of any status, locked; else None."""
    Status = Conversation.Status
    return lock_one(
        Conversation,
        "SELECT * FROM {table} WHERE customer_id = %s "
        "ORDER BY status IN (%s, %s) DESC, last_activity_at DESC, id DESC",
        [customer_id, Status.OPEN, Status.PENDING],
    )


def capped_counts(querysets: dict, *, cap: int) -> dict:
    """{name: rows of its queryset, counted up to cap + 1} in one statement: each
    count reads at most cap + 1 rows (a LIMIT inside), whatever the table's size."""
    from django.core.exceptions import EmptyResultSet

    parts, params, counts = [], [], {}
    for name, qs in querysets.items():
        try:
            sql, found = qs.order_by().values("pk")[: cap + 1].query.sql_with_params()
        except EmptyResultSet:
            counts[name] = 0
            continue
        parts.append((name, f"(SELECT COUNT(*) FROM ({sql}) AS counted)"))
        params.extend(found)
    if parts:
        with connection.cursor() as cursor:
            cursor.execute("SELECT " + ", ".join(part for _, part in parts), params)
            counts.update(zip((name for name, _ in parts), cursor.fetchone()))
    return {name: counts[name] for name in querysets}
