"""Django's PostgreSQL backend, aware of the bind-parameter limit.

Pooled nodes (DB_POOL_SIZE, see settings) bind parameters on the server so
that psycopg can prepare the hot statements. The PostgreSQL protocol carries
at most 65,535 parameters per statement; with client-side binding Django
never meets that limit, so its PostgreSQL backend does not split bulk work
by it (Django 5.2): a 20,000-row bulk_create, a cascade delete of 70,000
rows or an in_bulk() of 70,000 ids then fails with "number of parameters
must be between 0 and 65535". Declaring the limit, as Django's Oracle backend
does for the same limit, makes bulk_create, bulk_update, deletion and
in_bulk() batch by it.

A pooled connection is checked before it is lent without a round trip
(``lend_check``): Django's check (CONN_HEALTH_CHECKS) sends an empty query
each time, a quarter of a small request's time in a node's thread. An idle
connection the server has dropped (a restart, pg_terminate_backend) has
something to read, PostgreSQL's FATAL notice or the end of the stream, so a
readable socket is what sends it to the full check, which fails and makes the
pool replace it. A connection lost without a word (a host gone) still fails
on its first statement, as it could between any check and that statement.
"""
import select

from django.db.backends.postgresql import base, features, operations
from django.db.models import CompositePrimaryKey
from django.utils.functional import cached_property

MAX_BIND_PARAMETERS = 2**16 - 1


class DatabaseFeatures(features.DatabaseFeatures):
    @cached_property
    def max_query_params(self):
        return MAX_BIND_PARAMETERS if self.uses_server_side_binding else None


class DatabaseOperations(operations.DatabaseOperations):
    def bulk_batch_size(self, fields, objs):
        limit = self.connection.features.max_query_params
        if limit is None:
            return len(objs)
        columns = sum(len(f.fields) if isinstance(f, CompositePrimaryKey) else 1 for f in fields)
        return limit // columns if columns else len(objs)


def lend_check(conn) -> None:
    """psycopg_pool's check before lending a connection: quiet unless the server has spoken."""
    if conn.closed or conn.broken or select.select([conn.fileno()], [], [], 0)[0]:
        from psycopg_pool import ConnectionPool

        ConnectionPool.check_connection(conn)  # raises for a dead connection: the pool replaces it


class DatabaseWrapper(base.DatabaseWrapper):
    features_class = DatabaseFeatures
    ops_class = DatabaseOperations

    @property
    def pool(self):
        pool = super().pool
        # Django hands the pool psycopg's check_connection when CONN_HEALTH_CHECKS is on and has no
        # option for another; the pool keeps it in _check (psycopg_pool 3.2, tested in test_settings).
        if pool is not None and getattr(pool, "_check", None) is not None and pool._check is not lend_check:
            pool._check = lend_check
        return pool
