"""PostgreSQL unreachable: a quick 503 "try again shortly", never a hang or a 500 page.

While the database restarts (or is out of reach) a node cannot do any real
work, but it can say so at once. The pool waits at most DB_POOL_TIMEOUT
seconds for a connection (settings), and an error that means "no database
right now" -- a refused or broken connection, the pool's timeout, "the
database system is shutting down" -- becomes

    503 {"message": "The database is unavailable right now; try again shortly.", "code": "unavailable"}
    Retry-After: 5

(JSON for the API and any request that asks for JSON, a short HTML page
otherwise), logged as one warning line and counted in
myhibachi_database_unavailable_total (/metrics), not as a 500 with a traceback.
Nothing is stored by such a request (its transaction never committed), so
a client retries it as it is, a reply with the same Idempotency-Key.

Three ways in, because the error can come from three places: the API's
exception handler (myhibachi/api.py) for DRF views, process_exception of
DatabaseUnavailableMiddleware for other views, and handler500 (myhibachi/urls.py)
for a failure outside any view (a middleware loading the session). Nothing
else is caught: any other error is still a 500 and still logged as one.

The nodes come back by themselves: the pool checks each connection before
lending it (CONN_HEALTH_CHECKS), drops the ones the restart broke and opens
new ones, so no node restart is needed (tests/cluster/test_faults.py).
"""
import logging

from django import db
from django.http import HttpResponse, JsonResponse
from django.views import defaults
from prometheus_client import Counter

from .middleware import AroundRequest

logger = logging.getLogger(__name__)

MESSAGE = "The database is unavailable right now; try again shortly."
RETRY_AFTER_SECONDS = 5

UNAVAILABLE = Counter("myhibachi_database_unavailable",
                      "Requests answered 503 because PostgreSQL could not be reached.")


def _error_classes():
    classes = [db.OperationalError, db.InterfaceError]
    try:  # PostgreSQL's driver; Django wraps most of its errors, not the pool's own timeout in every path
        import psycopg

        classes += [psycopg.OperationalError, psycopg.InterfaceError]
    except ImportError:
        pass
    return tuple(classes)


DATABASE_ERRORS = _error_classes()


def is_database_unavailable(exc) -> bool:
    return isinstance(exc, DATABASE_ERRORS)


def _wants_json(request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.META.get("HTTP_ACCEPT", "")


def response_for(request, exc, json=False):
    """The 503 for a request that met `exc`; logged and counted once."""
    UNAVAILABLE.inc()
    logger.warning("database unavailable, answered 503: %s %s: %s: %s", request.method, request.path,
                   exc.__class__.__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    if json or _wants_json(request):
        response = JsonResponse({"message": MESSAGE, "code": "unavailable"}, status=503)
    else:
        response = HttpResponse(
            "<!doctype html><title>Try again shortly</title><h1>Try again shortly</h1>"
            f"<p>{MESSAGE}</p>", status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


class DatabaseUnavailableMiddleware(AroundRequest):
    """Only process_exception: a view's database error becomes the 503 (sync and async chains)."""

    def process_exception(self, request, exception):
        if is_database_unavailable(exception):
            return response_for(request, exception)
        return None


def server_error(request, template_name=defaults.ERROR_500_TEMPLATE_NAME):
    """handler500: the 503 when the uncaught error was the database's, else Django's 500 page."""
    import sys

    exc = sys.exc_info()[1]
    if exc is not None and is_database_unavailable(exc):
        return response_for(request, exc)
    return defaults.server_error(request, template_name)
