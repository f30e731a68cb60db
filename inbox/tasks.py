"""Celery tasks of the inbox: thin, idempotent, safe to retry."""
import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .delivery import PermanentSendError, TransientSendError, sender_for, update_delivery
from .models import IdempotencyKey, InboxEvent, Message

logger = logging.getLogger(__name__)
MAX_RETRIES = 6


def backoff_seconds(retries: int) -> int:
    """4 s, 8 s, 16 s … capped at 10 minutes."""
    return min(600, 2 ** (retries + 2))


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def deliver_message(self, message_id: int):
    """Hand a queued outbound message to its channel's sender, once.

    Transient failures retry with exponential backoff on a worker. In eager
    mode (no REDIS_URL, no worker) they are retried at once, in process,
    because nothing would pick up a delayed retry.
    """
    # The author too: a chat reply shows the agent's first name to the visitor.
    message = Message.objects.select_related("conversation", "customer", "author").filter(pk=message_id).first()
    if message is None or message.delivery_status != Message.DeliveryStatus.QUEUED:
        return "skipped"
    send = sender_for(message.channel)
    if send is None:
        update_delivery(message=message, status="failed",
                                 reason=f"No sender is configured for {message.get_channel_display()} replies.")
        return "failed"
    attempt = self.request.retries
    while True:
        try:
            provider_id = send(message)
        except TransientSendError as exc:
            if attempt >= MAX_RETRIES:
                update_delivery(message=message, status="failed", reason=f"Gave up after retries: {exc}")
                return "failed"
            logger.warning("sending message %s failed for now (%s); retry %s", message_id, exc, attempt + 1)
            if not self.request.is_eager:
                raise self.retry(exc=exc, countdown=backoff_seconds(attempt))
            attempt += 1
            continue
        except PermanentSendError as exc:
            update_delivery(message=message, status="failed", reason=str(exc))
            return "failed"
        update_delivery(message=message, status="sent", external_id=provider_id)
        return "sent"


def _delete_created_before(model, cutoff, *, chunk=5000) -> int:
    """Delete the model's rows created before cutoff, a chunk at a time (short locks, bounded memory)."""
    deleted = 0
    while True:
        ids = list(model.objects.filter(created_at__lt=cutoff).values_list("id", flat=True)[:chunk])
        if not ids:
            return deleted
        deleted += model.objects.filter(id__in=ids).delete()[0]


@shared_task
def prune_events():
    """Delete live events past settings.INBOX_EVENT_RETENTION_DAYS."""
    return _delete_created_before(InboxEvent, timezone.now() - timedelta(days=settings.INBOX_EVENT_RETENTION_DAYS))


@shared_task
def prune_idempotency_keys():
    """Delete Idempotency-Keys past settings.IDEMPOTENCY_KEY_TTL_HOURS."""
    return _delete_created_before(IdempotencyKey,
                                  timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS))
