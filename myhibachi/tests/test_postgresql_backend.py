"""Pooled nodes bind parameters on the server (settings: DB_POOL_SIZE); bulk
work must then stay under PostgreSQL's 65,535 parameters per statement.

Run in a node-like process (DB_POOL_SIZE set) against the test database, in a
transaction it rolls back."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from inbox.models import Tag

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]
ROOT = Path(__file__).resolve().parents[2]
ROWS = 70_000  # one parameter per inserted tag: over the limit as one statement

SCRIPT = f"""
import json
from django.conf import settings
from django.db import connection, transaction
from inbox.models import Tag
with transaction.atomic():
    tags = Tag.objects.bulk_create(Tag(name=f"bulk-{{n}}") for n in range({ROWS}))
    found = Tag.objects.in_bulk([tag.pk for tag in tags])
    deleted, _ = Tag.objects.filter(name__startswith="bulk-").delete()
    transaction.set_rollback(True)
print(json.dumps({{"engine": settings.DATABASES["default"]["ENGINE"],
                  "server_side_binding": connection.features.uses_server_side_binding,
                  "created": len(tags), "found": len(found), "deleted": deleted}}))
"""


def test_a_pooled_node_bulk_creates_reads_and_deletes_past_the_parameter_limit():
    params = connection.settings_dict
    login = params["USER"] + (f":{params['PASSWORD']}" if params.get("PASSWORD") else "")
    url = f"postgres://{login}@{params['HOST']}:{params['PORT']}/{params['NAME']}"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", SCRIPT], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**env, "DATABASE_URL": url, "DB_POOL_SIZE": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "engine": "myhibachi.postgresql", "server_side_binding": True,
        "created": ROWS, "found": ROWS, "deleted": ROWS}
    assert not Tag.objects.filter(name__startswith="bulk-").exists()


LEND_SCRIPT = """
import json
from django.db import connection
from myhibachi.postgresql.base import lend_check

def backend_and_statements():
    connection.ensure_connection()
    sent = []
    raw = connection.connection
    execute = raw.execute
    raw.execute = lambda *a, **k: (sent.append(a[0]), execute(*a, **k))[1]
    pid = raw.info.backend_pid
    connection.close()  # back to the pool
    return pid, raw, sent

first, raw, sent = backend_and_statements()
connection.ensure_connection()  # lent again: the same connection, nothing sent to check it
again = connection.connection.info.backend_pid
lent_quietly = not sent
connection.close()
import psycopg
with psycopg.connect(URL, autocommit=True) as admin:
    admin.execute("SELECT pg_terminate_backend(%s)", [first])
import time; time.sleep(0.3)
with connection.cursor() as cursor:  # the pool's check finds the dropped one and lends a new one
    cursor.execute("SELECT pg_backend_pid()")
    replaced = cursor.fetchone()[0]
print(json.dumps({"pooled": connection.pool.__class__.__name__, "check": connection.pool._check is lend_check,
                  "same": again == first, "quiet": lent_quietly, "replaced": replaced != first}))
"""


def test_a_pooled_connection_is_lent_without_a_round_trip_and_a_dropped_one_is_replaced():
    params = connection.settings_dict
    login = params["USER"] + (f":{params['PASSWORD']}" if params.get("PASSWORD") else "")
    url = f"postgres://{login}@{params['HOST']}:{params['PORT']}/{params['NAME']}"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", f"URL = {url!r}\n" + LEND_SCRIPT],
                            cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**env, "DATABASE_URL": url, "DB_POOL_SIZE": "1"})  # one connection
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "pooled": "ConnectionPool", "check": True, "same": True, "quiet": True, "replaced": True}
