"""Idempotency-Key support for POST endpoints.

The first request with a key runs and its answer is stored with the key in the
same transaction. A retry with the same key (the load balancer may retry)
gets the stored answer and changes nothing. A retry arriving while the first
is still running waits on the key's unique index and then reads its answer.
"""
from functools import wraps

from django.db import IntegrityError, transaction
from rest_framework import status
from rest_framework.response import Response

from inbox.models import IdempotencyKey

HEADER = "HTTP_IDEMPOTENCY_KEY"


def idempotent(handler):
    @wraps(handler)
    def wrapper(self, request, *args, **kwargs):
        key = request.META.get(HEADER, "").strip()
        if not key:
            return handler(self, request, *args, **kwargs)
        if len(key) > 255:
            return Response({"message": "Idempotency-Key must be at most 255 characters.", "code": "invalid"},
                            status=status.HTTP_400_BAD_REQUEST)
        with transaction.atomic():
            try:
                with transaction.atomic():
                    record = IdempotencyKey.objects.create(user=request.user, key=key, method=request.method,
                                                           path=request.path)
            except IntegrityError:
                record = IdempotencyKey.objects.get(user=request.user, key=key)
                if record.path != request.path or record.method != request.method:
                    return Response({"message": "This Idempotency-Key was already used for another request.",
                                     "code": "idempotency_key_reused"}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
                response = Response(record.response, status=record.status_code)
                response["Idempotent-Replayed"] = "true"
                return response
            response = handler(self, request, *args, **kwargs)
            record.status_code, record.response = response.status_code, response.data
            record.save(update_fields=["status_code", "response"])
            return response

    return wrapper
