"""Idempotency-Key support for POST endpoints.

The first request with a key runs and its answer is stored with the key in the
same transaction. A retry with the same key (the load balancer may retry)
gets the stored answer and changes nothing. A retry arriving while the first
is still running waits on the key's unique index and then reads its answer.

A key is bound to the request it was first used with: the method, the path
and a SHA-256 of the body's raw bytes (the draft IETF Idempotency-Key header's
"request fingerprint"). Reusing it for anything else is refused with 422 and
code "idempotency_key_reused", never answered with the first request's reply.
Raw bytes, not canonical JSON: a retry resends the same bytes, and a client
that rebuilds the body differently is better told than guessed at.

A key lives settings.IDEMPOTENCY_KEY_TTL_HOURS (24 by default); an older key
counts as new even before inbox.tasks.prune_idempotency_keys deletes it.
"""
import hashlib
import json
from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http.request import RawPostDataException
from django.utils import timezone
from rest_framework import status
from rest_framework.response import Response

from inbox.models import IdempotencyKey

HEADER = "HTTP_IDEMPOTENCY_KEY"


def key_ttl() -> timedelta:
    return timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)


def request_fingerprint(request) -> str:
    """SHA-256 (hex) of the request body's bytes.

    A multipart body that Django already parsed (the CSRF check of a session
    reads request.POST) can no longer be read raw; its fields, in order and
    without the CSRF token (new on every page), are hashed instead. No
    endpoint here reads uploaded files.
    """
    try:
        body = request._request.body
    except RawPostDataException:
        fields = [item for item in request._request.POST.lists() if item[0] != "csrfmiddlewaretoken"]
        body = b"form:" + json.dumps(fields).encode()
    return hashlib.sha256(body).hexdigest()


def _refusal(message):
    return Response({"message": message, "code": "idempotency_key_reused"},
                    status=status.HTTP_422_UNPROCESSABLE_ENTITY)


def idempotent(handler):
    @wraps(handler)
    def wrapper(self, request, *args, **kwargs):
        key = request.META.get(HEADER, "").strip()
        if not key:
            return handler(self, request, *args, **kwargs)
        if len(key) > 255:
            return Response({"message": "Idempotency-Key must be at most 255 characters.", "code": "invalid"},
                            status=status.HTTP_400_BAD_REQUEST)
        fingerprint = request_fingerprint(request)
        bound = {"method": request.method, "path": request.path, "request_hash": fingerprint}
        with transaction.atomic():
            try:
                with transaction.atomic():
                    record = IdempotencyKey.objects.create(user=request.user, key=key, **bound)
            except IntegrityError:
                record = IdempotencyKey.objects.select_for_update().get(user=request.user, key=key)
                if record.created_at < timezone.now() - key_ttl():
                    # Expired but not pruned yet: the key starts over for this request.
                    for field, value in {**bound, "status_code": None, "response": None,
                                         "created_at": timezone.now()}.items():
                        setattr(record, field, value)
                    record.save()
                elif record.path != request.path or record.method != request.method:
                    return _refusal("This Idempotency-Key was already used for another request.")
                elif record.request_hash and record.request_hash != fingerprint:
                    return _refusal("This Idempotency-Key was already used with a different request body; "
                                    "nothing was done. Send a new key for a new request.")
                else:
                    response = Response(record.response, status=record.status_code)
                    response["Idempotent-Replayed"] = "true"
                    return response
            response = handler(self, request, *args, **kwargs)
            record.status_code, record.response = response.status_code, response.data
            record.save(update_fields=["status_code", "response"])
            return response

    return wrapper
