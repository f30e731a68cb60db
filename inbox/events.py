"""Real-time events: the only module that knows channel-layer group names.

A service calls ``record(...)`` inside its transaction. That stores a numbered
InboxEvent row (the id is the sequence number) and, once the transaction
commits, sends it to the channel-layer group. Browsers that notice a gap in
the numbers, or reconnect, read what they missed from the events API, so a
message dropped by a full channel-layer queue is never lost for good.
"""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .models import InboxEvent

logger = logging.getLogger(__name__)

STAFF_GROUP = "inbox.staff"

MESSAGE_CREATED = "message.created"
MESSAGE_UPDATED = "message.updated"
NOTE_CREATED = "note.created"
CONVERSATION_CREATED = "conversation.created"
CONVERSATION_UPDATED = "conversation.updated"
MENTION = "mention"

# Counted rejections, readable by ops and tests.
publish_failures = 0


def user_group(user_id: int) -> str:
    return f"inbox.user.{user_id}"


def as_message(event: InboxEvent) -> dict:
    return {
        "id": event.id,
        "type": event.type,
        "conversation": event.conversation_id,
        "at": event.created_at.isoformat(),
        "data": event.payload,
    }


def record(type: str, *, conversation=None, payload=None, recipient=None) -> InboxEvent:
    """Store an event now and broadcast it when the surrounding transaction commits."""
    event = InboxEvent.objects.create(
        type=type, conversation=conversation, payload=payload or {}, recipient=recipient
    )
    group = user_group(recipient.pk) if recipient is not None else STAFF_GROUP
    transaction.on_commit(lambda: _send(group, as_message(event)))
    return event


def _send(group: str, message: dict) -> None:
    global publish_failures
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "inbox.event", "event": message})
    except Exception:
        # The write is committed; a lost broadcast is recovered by clients
        # through the events API. Log and count, never fail the write.
        publish_failures += 1
        logger.exception("could not publish event %s to %s", message.get("id"), group)
