"""Migration helpers for PostgreSQL-only parts (search triggers, GIN indexes).

SQLite, the newcomer default, skips them; the selectors fall back to plain
matching there.
"""
from django.db import migrations


def postgres_only(sql: str, reverse_sql: str) -> migrations.RunPython:
    def forward(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    def backward(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(reverse_sql)

    return migrations.RunPython(forward, backward, elidable=False)


def search_trigger(table: str, expression: str, columns: str) -> migrations.RunPython:
    """Keep table.search_vector equal to `expression` (over NEW.*) on every insert and update."""
    name = f"{table}_search_vector"
    return postgres_only(
        f"""
        CREATE OR REPLACE FUNCTION {name}_update() RETURNS trigger AS $$
        BEGIN
            NEW.search_vector := {expression};
            RETURN NEW;
        END $$ LANGUAGE plpgsql;
        CREATE TRIGGER {name}_trg BEFORE INSERT OR UPDATE OF {columns} ON {table}
            FOR EACH ROW EXECUTE FUNCTION {name}_update();
        UPDATE {table} SET {columns.split(',')[0].strip()} = {columns.split(',')[0].strip()};
        CREATE INDEX IF NOT EXISTS {name}_gin ON {table} USING gin (search_vector);
        """,
        f"""
        DROP INDEX IF EXISTS {name}_gin;
        DROP TRIGGER IF EXISTS {name}_trg ON {table};
        DROP FUNCTION IF EXISTS {name}_update();
        """,
    )
