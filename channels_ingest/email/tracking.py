"""SendGrid tracking events (through Anymail's normalised AnymailTrackingEvent)
-> delivery status of our messages, campaign figures and suppressions.

Each event is applied once (its sg_event_id is stored with a unique
constraint in the same transaction as its effects) and in any order: message
status only moves forward (inbox.services.update_delivery), campaign figures
count each recipient once per kind.
"""
import hashlib
import json
import logging

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from inbox import services

from ..base import count
from .models import Campaign, CampaignRecipient, SentEmail, TrackingEvent
from .services import set_sent_status, suppress

logger = logging.getLogger(__name__)

# Where its outcomes are counted (manage.py channel_counts).
SOURCE = "sendgrid-tracking"

MESSAGE_STATUS = {"delivered": "delivered", "opened": "opened", "clicked": "clicked",
                  "bounced": "failed", "rejected": "failed"}
# A recipient field set on the first event of that kind, and the ones it implies.
RECIPIENT_FIELDS = {
    "delivered": ["delivered_at"],
    "opened": ["delivered_at", "opened_at"],
    "clicked": ["delivered_at", "opened_at", "clicked_at"],
    "bounced": ["bounced_at"],
    "rejected": ["bounced_at"],
    "unsubscribed": ["unsubscribed_at"],
    "complained": ["complained_at"],
}
COUNTERS = {"delivered_at": "delivered_count", "opened_at": "opened_count", "clicked_at": "clicked_count",
            "bounced_at": "bounced_count", "unsubscribed_at": "unsubscribed_count",
            "complained_at": "complained_count"}


def _event_id(event) -> str:
    if event.event_id:
        return str(event.event_id)[:100]
    raw = json.dumps(event.esp_event, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _reason(event) -> str:
    esp = event.esp_event or {}
    detail = event.mta_response or esp.get("reason") or esp.get("type") or event.reject_reason or ""
    if event.event_type == "rejected":
        return f"Dropped by SendGrid: {detail or 'no reason given'}"[:500]
    return f"Bounced: {detail or 'no reason given'}"[:500]


def _find(event):
    esp_id = (event.message_id or "")[:100]
    sent = SentEmail.objects.select_related("message").filter(esp_message_id=esp_id).first() if esp_id else None
    if sent is None:
        sg_id = str((event.esp_event or {}).get("sg_message_id", "")).split(".", 1)[0]
        if sg_id:
            sent = SentEmail.objects.select_related("message").filter(provider_message_id=sg_id).first()
    recipient = None
    if sent is None and esp_id:
        recipient = CampaignRecipient.objects.filter(esp_message_id=esp_id).first()
    return esp_id, sent, recipient


def handle(event) -> str:
    """Apply one tracking event. Returns applied / duplicate / unmatched / ignored."""
    esp_id, sent, recipient = _find(event)
    occurred = event.timestamp or timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                TrackingEvent.objects.create(
                    event_id=_event_id(event), event_type=event.event_type, esp_message_id=esp_id,
                    recipient=(event.recipient or "")[:254], occurred_at=event.timestamp, sent_email=sent,
                    campaign_recipient=recipient, payload=event.esp_event if isinstance(event.esp_event, dict) else {},
                )
        except IntegrityError:
            count(SOURCE, "duplicates")
            return "duplicate"
        _suppress(event)
        if sent is None and recipient is None:
            count(SOURCE, "unmatched")
            logger.info("tracking event %s for unknown message %s", event.event_type, esp_id or "(none)")
            return "unmatched"
        if sent is not None and sent.message is not None:
            _apply_to_message(event, sent)
        if recipient is not None:
            _apply_to_recipient(event, recipient, occurred)
    count(SOURCE, event.event_type)
    return "applied"


def _apply_to_message(event, sent):
    status = MESSAGE_STATUS.get(event.event_type)
    if status == "failed":
        services.update_delivery(message=sent.message, status="failed", reason=_reason(event))
        set_sent_status(sent=sent, status=event.event_type)
    elif status is not None:
        services.update_delivery(message=sent.message, status=status)
    elif event.event_type in ("complained", "unsubscribed"):
        services.update_delivery(message=sent.message, status="sent",
                                 metadata={f"{event.event_type}_at": (event.timestamp or timezone.now()).isoformat()})


def _apply_to_recipient(event, recipient, occurred):
    for field in RECIPIENT_FIELDS.get(event.event_type, []):
        first = CampaignRecipient.objects.filter(pk=recipient.pk, **{f"{field}__isnull": True}).update(**{field: occurred})
        if first:
            counter = COUNTERS[field]
            Campaign.objects.filter(pk=recipient.campaign_id).update(**{counter: F(counter) + 1})


def _suppress(event):
    address = event.recipient or ""
    esp = event.esp_event or {}
    if event.event_type == "bounced" and str(esp.get("type", "bounce")).lower() != "blocked":
        suppress(address, reason="bounced", detail=_reason(event))
    elif event.event_type == "rejected" and event.reject_reason in ("bounced", "unsubscribed"):
        suppress(address, reason=event.reject_reason, detail=_reason(event))
    elif event.event_type == "complained":
        suppress(address, reason="complained", detail="Spam report")
    elif event.event_type == "unsubscribed":
        suppress(address, reason="unsubscribed", detail="Unsubscribed through SendGrid")
