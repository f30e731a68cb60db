"""Outbound delivery: the contract between the inbox and channel senders, and
the one writer of a message's delivery status.

A sender is a callable ``send(message) -> str | None`` registered in
settings.INBOX_SENDERS under its channel. It returns the provider's id for
the message, raises TransientSendError when trying again later may work
(rate limits, timeouts, 5xx) and PermanentSendError when it never will.
"""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.module_loading import import_string

from . import events
from .models import Message
from .payloads import message_summary


class SendError(Exception):
    pass


class TransientSendError(SendError):
    pass


class PermanentSendError(SendError):
    pass


def sender_for(channel: str):
    path = settings.INBOX_SENDERS.get(channel)
    return import_string(path) if path else None


# Delivery progress only moves forward: a late "delivered" never replaces "opened".
DELIVERY_RANK = {
    Message.DeliveryStatus.QUEUED: 1,
    Message.DeliveryStatus.SENT: 2,
    Message.DeliveryStatus.DELIVERED: 3,
    Message.DeliveryStatus.OPENED: 4,
    Message.DeliveryStatus.CLICKED: 5,
    Message.DeliveryStatus.FAILED: 6,
}


def update_delivery(*, message: Message, status: str, reason: str = "", external_id: str | None = None,
                    metadata: dict | None = None) -> bool:
    """Move an outbound message's delivery status forward; returns whether it changed.

    Duplicate or out-of-order reports are ignored: a status never moves back
    (a late 'delivered' does not replace 'opened'); 'failed' wins over all.
    """
    if status not in DELIVERY_RANK:
        raise ValidationError(f"Unknown delivery status {status!r}.")
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message.pk)
        current = DELIVERY_RANK.get(message.delivery_status, 0)
        fields = []
        if external_id and message.external_id != external_id:
            message.external_id = external_id
            fields.append("external_id")
        if metadata:
            message.metadata = {**message.metadata, **metadata}
            fields.append("metadata")
        changed = DELIVERY_RANK[status] > current
        if changed:
            message.delivery_status = status
            message.status_reason = reason[:500]
            fields += ["delivery_status", "status_reason"]
        if fields:
            message.save(update_fields=fields)
        if changed:
            events.record(events.MESSAGE_UPDATED, conversation=message.conversation,
                          payload=message_summary(message))
    return changed
