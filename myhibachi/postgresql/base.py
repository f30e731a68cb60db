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
"""
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


class DatabaseWrapper(base.DatabaseWrapper):
    features_class = DatabaseFeatures
    ops_class = DatabaseOperations
