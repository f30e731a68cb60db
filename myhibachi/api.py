"""API-wide error handling: every error is JSON with a message a person can act on.

The one place refusals become API responses: the inbox's own (inbox/errors.py, each with its status
and code), Django's validation and permission errors, database conflicts, oversized bodies, and the
database being unreachable (myhibachi/unavailable.py)."""
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from inbox.errors import InboxError

from . import unavailable


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        limit_mb = settings.DATA_UPLOAD_MAX_MEMORY_SIZE / (1024 * 1024)
        return Response({"message": f"The request body is larger than the {limit_mb:.1f} MB limit.",
                         "code": "too_large"}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if unavailable.is_database_unavailable(exc):  # PostgreSQL restarting: 503, try again shortly
        return unavailable.response_for(context["request"], exc, json=True)
    if isinstance(exc, InboxError):  # a service's refusal: its own status and code
        body = {"message": exc.message, "code": exc.code}
        if exc.field:
            body["errors"] = {exc.field: [exc.message]}
        body.update(exc.details or {})
        return Response(body, status=exc.status)
    if isinstance(exc, DjangoValidationError):
        exc = ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages})
    if isinstance(exc, DjangoPermissionDenied):
        exc = PermissionDenied(str(exc) or None)
    if isinstance(exc, IntegrityError):
        return Response(
            {"message": "This conflicts with data that already exists.", "code": "conflict"},
            status=status.HTTP_409_CONFLICT,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and "detail" in data and len(data) == 1:
        detail = data["detail"]
        response.data = {"message": str(detail), "code": getattr(detail, "code", "error")}
    elif isinstance(data, (dict, list)):
        response.data = {"message": "Some fields are not valid.", "code": "invalid", "errors": data}
    return response
