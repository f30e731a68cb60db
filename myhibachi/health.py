"""Liveness and readiness probes for nginx and ops.

/health answers as long as the process serves requests. /ready also checks
the database and, when REDIS_URL is set, Redis, and names what is failing.

Draining: while the file named by NODE_DRAIN_FILE exists, /ready answers 503
with "draining" among the failing parts, and the node goes on serving every
other request (in-flight and new) as before. A file, not a signal or an
in-process flag: every worker process of the node sees it at once, it
survives nothing it should not (deploy/cluster removes it when the node is
back), an operator can see and remove it, and setting it needs no access to
the process (deploy/cluster drain / rolling-restart).
"""
import logging
import os

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def health(request):
    return JsonResponse({"status": "ok"})


READY_DATABASE_TIMEOUT = 1.0  # seconds; under the watchdog's 1.5 s probe timeout


def _check_database():
    pool = getattr(connection, "pool", None)  # pooled nodes (DB_POOL_SIZE)
    if pool is not None and connection.connection is None:
        # Borrow from the pool directly with a short wait: while PostgreSQL is down /ready
        # answers 503 in a second, not after the requests' DB_POOL_TIMEOUT.
        pool.open()
        with pool.connection(timeout=READY_DATABASE_TIMEOUT) as conn:
            conn.execute("SELECT 1").fetchone()
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_redis():
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()


@never_cache
@require_GET
def ready(request):
    checks = {"database": _check_database}
    if settings.REDIS_URL:
        checks["redis"] = _check_redis
    results, failing = {}, []
    if settings.NODE_DRAIN_FILE and os.path.exists(settings.NODE_DRAIN_FILE):
        results["drain"] = "draining"
        failing.append("draining")
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # any failure of a dependency means "not ready"
            logger.warning("readiness check %s failed: %s", name, exc)
            results[name] = f"unavailable: {exc.__class__.__name__}"
            failing.append(name)
    if failing:
        return JsonResponse({"status": "unavailable", "failing": failing, "checks": results}, status=503)
    return JsonResponse({"status": "ok", "checks": results})
