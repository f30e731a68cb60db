"""Helpers of manage.py seed_demo (myhibachi/management/commands/seed_demo.py)."""
from inbox import sql


def insert(objs: list) -> list:
    """Write unsaved rows of one model, every column, with inbox/sql.py's hand-written INSERT (their
    ids set, as bulk_create sets them): building the ORM's bulk statements cost the seed more time
    than the database spent on them. Foreign keys must be set by id or to saved rows by then."""
    if objs:
        fields = tuple(f.name for f in type(objs[0])._meta.concrete_fields if not f.primary_key)
        sql.insert(objs, fields)
    return objs
