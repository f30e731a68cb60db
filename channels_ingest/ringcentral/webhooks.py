"""RingCentral's webhook: the subscription handshake and the notifications.

- A request with a ``Validation-Token`` header (RingCentral creating or renewing
  the subscription) is answered 200, JSON, with the same header: nothing is
  read or stored.
- Every notification must carry ``Verification-Token`` equal to
  settings.RINGCENTRAL_VERIFICATION_TOKEN (compared in constant time); anything
  else is refused with 403 and counted (outcome "refused"), nothing read.
- Bodies over RINGCENTRAL_WEBHOOK_MAX_BYTES: 413, counted. Unreadable JSON: 400, counted.
- An instant SMS event stores the message (its RingCentral id dedupes replays
  and the sync); any other message-store event queues an SMS sync (delivery
  statuses), a telephony event a call-log sync: at most one queued per feed every
  SYNC_DEBOUNCE_SECONDS, so a burst of notifications does not queue a burst of syncs.
"""
import json
import logging
import re

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.http import JsonResponse

from ..base import BadPayload, Refused, WebhookAdapter, count, secrets_match
from .records import after_ingest, message_events

logger = logging.getLogger(__name__)
TOKEN_SHAPE = re.compile(r"[\x21-\x7e]{1,200}")
SYNC_DEBOUNCE_SECONDS = 10


class RingCentralWebhook(WebhookAdapter):
    source = "ringcentral"

    def post(self, request, *args, **kwargs):
        validation = request.headers.get("Validation-Token")
        if validation is not None:
            if not TOKEN_SHAPE.fullmatch(validation):
                count(self.source, "bad_validation_token")
                return JsonResponse({"error": "Validation-Token must be 1-200 printable characters."}, status=400)
            count(self.source, "validation")
            response = JsonResponse({})
            response["Validation-Token"] = validation
            return response
        return super().post(request, *args, **kwargs)

    def validate_request(self, request) -> None:
        if not secrets_match(request.headers.get("Verification-Token", ""), settings.RINGCENTRAL_VERIFICATION_TOKEN):
            raise Refused("Verification-Token missing or wrong.", status=403)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.RINGCENTRAL_WEBHOOK_MAX_BYTES:
            raise Refused(f"Notification of {length:,} bytes refused; the limit is "
                          f"{settings.RINGCENTRAL_WEBHOOK_MAX_BYTES:,}.", status=413, outcome="too_large")

    def parse_events(self, request) -> list:
        try:
            payload = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadPayload(f"not JSON ({exc})")
        if not isinstance(payload, dict) or not isinstance(payload.get("body"), dict):
            raise BadPayload("a notification is a JSON object with a 'body' object")
        event = str(payload.get("event") or "")
        if "/message-store/instant" in event:
            return message_events(payload["body"])
        from . import tasks

        if "/telephony/sessions" in event:
            count(self.source, "call_event")
            _soon(tasks.sync_calls, "calls")
        elif "/message-store" in event:
            count(self.source, "store_event")
            _soon(tasks.sync_sms, "sms")
        else:
            count(self.source, "ignored_event")
        return []

    def after_dispatch(self, events, outcome) -> None:
        after_ingest(events)


def _soon(task, feed: str) -> None:
    """Queue one sync of the feed; a burst of notifications within SYNC_DEBOUNCE_SECONDS queues one."""
    if cache.add(f"ringcentral:sync-queued:{feed}", 1, timeout=SYNC_DEBOUNCE_SECONDS):
        transaction.on_commit(task.delay)


webhook_view = RingCentralWebhook.as_view()
