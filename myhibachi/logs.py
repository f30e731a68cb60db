"""Request ids and JSON log lines.

Every request gets an id: nginx's $request_id from the X-Request-ID header, or
a fresh uuid4. The header is client input, so it is kept only when it is 1 to
64 characters of [A-Za-z0-9-]; anything else (a newline that would forge a
log line, 500 characters) is replaced by a fresh id. The id lives in a
contextvar for the request (asgiref copies it into the thread a sync view runs
in), RequestIdFilter puts it on every log record, and the response echoes it
in X-Request-ID so a user's report, nginx's log and ours meet.

With LOG_FORMAT=json (settings.LOGGING) every record is one JSON object per
line: time, level, logger, message, request_id, and exception text when there
is one (its newlines escaped inside the string, so one record stays one line).
"""
import contextvars
import json
import logging
import re
import uuid
from datetime import datetime, timezone

from .middleware import AroundRequest


HEADER = "X-Request-ID"
META_KEY = "HTTP_X_REQUEST_ID"
_VALID = re.compile(r"[A-Za-z0-9-]{1,64}")

request_id = contextvars.ContextVar("request_id", default=None)


def clean_request_id(given) -> str:
    """The given id when it is safe to log and echo, else a fresh uuid4."""
    if given and _VALID.fullmatch(given):
        return given
    return str(uuid.uuid4())


class RequestIdMiddleware(AroundRequest):
    """Outermost middleware: sets the request id for everything below it and echoes it."""

    def before(self, request):
        request.request_id = clean_request_id(request.META.get(META_KEY))
        return request_id.set(request.request_id)

    def cleanup(self, token):
        request_id.reset(token)

    def after(self, request, response, token):
        response[HEADER] = request.request_id
        return response


class RequestIdFilter(logging.Filter):
    """Adds record.request_id (None outside a request: commands, Celery tasks)."""

    def filter(self, record):
        # Django logs 4xx/5xx responses ("Not Found: ...") after the middleware chain has
        # returned, with the request on the record: its id is read from there.
        record.request_id = request_id.get() or getattr(getattr(record, "request", None), "request_id", None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
