"""Celery tasks of the inbox: thin, idempotent, safe to retry."""
import logging

from celery import shared_task

from . import services
from .delivery import PermanentSendError, TransientSendError, sender_for
from .models import Message

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
    message = Message.objects.select_related("conversation", "customer").filter(pk=message_id).first()
    if message is None or message.delivery_status != Message.DeliveryStatus.QUEUED:
        return "skipped"
    send = sender_for(message.channel)
    if send is None:
        services.update_delivery(message=message, status="failed",
                                 reason=f"No sender is configured for {message.get_channel_display()} replies.")
        return "failed"
    attempt = self.request.retries
    while True:
        try:
            provider_id = send(message)
        except TransientSendError as exc:
            if attempt >= MAX_RETRIES:
                services.update_delivery(message=message, status="failed", reason=f"Gave up after retries: {exc}")
                return "failed"
            logger.warning("sending message %s failed for now (%s); retry %s", message_id, exc, attempt + 1)
            if not self.request.is_eager:
                raise self.retry(exc=exc, countdown=backoff_seconds(attempt))
            attempt += 1
            continue
        except PermanentSendError as exc:
            services.update_delivery(message=message, status="failed", reason=str(exc))
            return "failed"
        services.update_delivery(message=message, status="sent", external_id=provider_id)
        return "sent"


@shared_task
def prune_events():
    """Delete live events past settings.INBOX_EVENT_RETENTION_DAYS, in chunks."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from .models import InboxEvent

    cutoff = timezone.now() - timedelta(days=settings.INBOX_EVENT_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(InboxEvent.objects.filter(created_at__lt=cutoff).values_list("id", flat=True)[:5000])
        if not ids:
            return deleted
        deleted += InboxEvent.objects.filter(id__in=ids).delete()[0]


@shared_task
def prune_idempotency_keys():
    """Delete Idempotency-Keys past settings.IDEMPOTENCY_KEY_TTL_HOURS, in chunks."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from .models import IdempotencyKey

    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted = 0
    while True:
        ids = list(IdempotencyKey.objects.filter(created_at__lt=cutoff).values_list("id", flat=True)[:5000])
        if not ids:
            return deleted
        deleted += IdempotencyKey.objects.filter(id__in=ids).delete()[0]
