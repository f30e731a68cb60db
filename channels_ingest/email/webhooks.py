"""SendGrid's tracking and inbound webhooks, on Anymail's views, made strict:

- no ANYMAIL_WEBHOOK_SECRET configured -> 403 for everything (Anymail alone
  would only warn and accept anyone's posts);
- wrong or missing basic auth, or a bad signature when
  SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY is set -> 400 from Anymail, before
  anything is read or stored;
- a body that is not what SendGrid sends -> 400 with a reason, counted; one bad
  event in a batch is skipped and counted, the others are applied.
Our handlers are connected to Anymail's signals here, so they are in place
whenever these views are routed.
"""
import json
import logging
from collections import Counter

from anymail.signals import inbound, tracking
from anymail.webhooks.sendgrid import SendGridInboundWebhookView, SendGridTrackingWebhookView
from django.dispatch import receiver
from django.http import HttpResponseBadRequest, HttpResponseForbidden
from django.http.multipartparser import MultiPartParserError

from . import tracking as tracking_events
from .ingest import store_email

logger = logging.getLogger(__name__)

counts = Counter()


class BadPayload(Exception):
    pass


class _Strict:
    def post(self, request, *args, **kwargs):
        if not self.basic_auth:
            counts["refused_unconfigured"] += 1
            return HttpResponseForbidden("This webhook is off until ANYMAIL_WEBHOOK_SECRET is configured.")
        try:
            return super().post(request, *args, **kwargs)
        except BadPayload as exc:
            counts["bad_payload"] += 1
            logger.warning("SendGrid %s webhook: unreadable payload: %s", self.kind, exc)
            return HttpResponseBadRequest(f"Unreadable {self.kind} payload: {exc}")


class TrackingWebhook(_Strict, SendGridTrackingWebhookView):
    kind = "tracking"

    def parse_events(self, request):
        try:
            esp_events = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadPayload(f"not JSON ({exc})")
        if not isinstance(esp_events, list):
            raise BadPayload("expected a JSON array of events")
        events = []
        for esp_event in esp_events:
            try:
                if not isinstance(esp_event, dict) or not isinstance(esp_event.get("event"), str):
                    raise ValueError("an event must be an object with an 'event' name")
                events.append(self.esp_to_anymail_event(esp_event))
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError) as exc:
                counts["bad_event"] += 1
                logger.warning("SendGrid tracking: skipped an unreadable event (%s): %.200r", exc, esp_event)
        return events


class InboundWebhook(_Strict, SendGridInboundWebhookView):
    kind = "inbound"

    def parse_events(self, request):
        try:
            return super().parse_events(request)
        except (KeyError, TypeError, ValueError, UnicodeError, MultiPartParserError) as exc:
            raise BadPayload(str(exc) or type(exc).__name__)


@receiver(tracking, dispatch_uid="channels_ingest.email.tracking")
def on_tracking(sender, event, esp_name, **kwargs):
    tracking_events.handle(event)


@receiver(inbound, dispatch_uid="channels_ingest.email.inbound")
def on_inbound(sender, event, esp_name, **kwargs):
    result = store_email(raw_from_inbound(event), source="sendgrid-inbound")
    counts[f"inbound_{result.status}"] += 1


def raw_from_inbound(event) -> bytes:
    """The original MIME when SendGrid posted it ("Send Raw"), else Anymail's rebuilt message."""
    request = event.esp_event
    post = getattr(request, "POST", None)
    if post is not None and "email" in post:
        return post["email"].encode("utf-8", "surrogateescape")
    try:
        return event.message.as_bytes()
    except (UnicodeError, LookupError, ValueError, TypeError) as exc:
        logger.warning("inbound email could not be re-serialised (%s); storing its text form", exc)
        return event.message.as_string().encode("utf-8", "replace")


tracking_view = TrackingWebhook.as_view()
inbound_view = InboundWebhook.as_view()
