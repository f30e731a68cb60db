"""Hand-written SQL for the few statements every inbound message runs.

Building the same SELECT/INSERT/UPDATE with the ORM for each message cost more
CPU than the database spent on it (ingest is measured in messages per second,
see bench/bench_email.py). These helpers take the model's own field
definitions and value adapters, so types, JSON encoders and time zones are
handled exactly as the ORM would; only the SQL text is written out.
"""
from django.db import connection


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
    """INSERT unsaved instances of one model in one statement and set their primary keys.

    fields: the names to write (the rest take their database defaults). Falls
    back to bulk_create where the database cannot return the new ids.
    """
    model = type(objs[0])
    if not connection.features.can_return_rows_from_bulk_insert:
        model.objects.bulk_create(objs)
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sql = "INSERT INTO {} ({}) VALUES {} RETURNING {}".format(
        table(model), ", ".join(connection.ops.quote_name(f.column) for f in columns),
        ", ".join([row] * len(objs)), connection.ops.quote_name(meta.pk.column),
    )
    params = [f.get_db_prep_save(f.pre_save(obj, add=True), connection) for obj in objs for f in columns]
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
    """UPDATE these fields of several saved instances of one model in one statement.

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
    quote = connection.ops.quote_name
    first_row = "(" + ", ".join(f"%s::{f.cast_db_type(connection)}" for f in columns) + ")"
    other_rows = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sql = "UPDATE {table} AS t SET {sets} FROM (VALUES {rows}) AS v ({names}) WHERE t.{pk} = v.{pk}".format(
        table=table(model), sets=", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in columns[1:]),
        rows=", ".join([first_row] + [other_rows] * (len(objs) - 1)),
        names=", ".join(quote(f.column) for f in columns), pk=quote(meta.pk.column),
    )
    params = [f.get_db_prep_save(f.pre_save(obj, add=False), connection) for obj in objs for f in columns]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
