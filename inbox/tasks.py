"""Celery tasks of the inbox: thin, idempotent, safe to retry."""
import logging

from celery import shared_task

from . import services
from .delivery import PermanentSendError, TransientSendError, sender_for
from .models import Message

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=6, acks_late=True)
def deliver_message(self, message_id: int):
    """Hand a queued outbound message to its channel's sender, once."""
    message = Message.objects.select_related("conversation", "customer").filter(pk=message_id).first()
    if message is None or message.delivery_status != Message.DeliveryStatus.QUEUED:
        return "skipped"
    send = sender_for(message.channel)
    if send is None:
        services.update_delivery(message=message, status="failed",
                                 reason=f"No sender is configured for {message.get_channel_display()} replies.")
        return "failed"
    try:
        provider_id = send(message)
    except TransientSendError as exc:
        if self.request.retries >= self.max_retries:
            services.update_delivery(message=message, status="failed", reason=f"Gave up after retries: {exc}")
            return "failed"
        logger.warning("sending message %s failed for now (%s); retrying", message_id, exc)
        raise self.retry(exc=exc, countdown=min(600, 2 ** (self.request.retries + 2)))
    except PermanentSendError as exc:
        services.update_delivery(message=message, status="failed", reason=str(exc))
        return "failed"
    services.update_delivery(message=message, status="sent", external_id=provider_id)
    return "sent"
