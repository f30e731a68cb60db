"""Celery tasks of the RingCentral channel: thin, idempotent, safe to retry."""
import logging

from celery import shared_task

from inbox.models import Message

from . import client as rc

logger = logging.getLogger(__name__)


@shared_task(name="channels_ingest.ringcentral.sync_sms")
def sync_sms():
    from .sync import sync_messages

    return sync_messages().as_dict()


@shared_task(name="channels_ingest.ringcentral.sync_calls")
def sync_calls():
    from .sync import sync_calls as run

    return run().as_dict()


@shared_task(name="channels_ingest.ringcentral.store_notifications", bind=True)
def store_notifications(self):
    """Store the SMS notifications the webhook queued (after each burst, and every minute by beat).
    In a worker it gathers what arrives within STORE_INTERVAL into one batch; run in place
    (no worker: eager, or called directly) it stores what is there and returns."""
    from .webhooks import STORE_INTERVAL, STORE_LINGER, store_pending

    if self.request.is_eager or self.request.called_directly:
        return store_pending()
    return store_pending(interval=STORE_INTERVAL, linger=STORE_LINGER)


@shared_task(name="channels_ingest.ringcentral.renew_subscription")
def renew_subscription():
    from .subscriptions import renew_due

    return renew_due()


@shared_task(name="channels_ingest.ringcentral.download_media", bind=True, max_retries=6, acks_late=True)
def download_media(self, message_id: int):
    """Fetch an MMS message's attachments or a call's recording into storage (authorised, never a public link)."""
    from .media import download

    message = Message.objects.filter(pk=message_id).first()
    if message is None or not message.metadata.get("media_pending"):
        return "nothing to do"
    try:
        download(message)
    except rc.NotConfigured as exc:
        logger.warning("media of message %s not downloaded: %s", message_id, exc.message)
        return "not configured"
    except rc.Unavailable as exc:
        if self.request.is_eager or self.request.retries >= self.max_retries:
            logger.warning("media of message %s not downloaded for now: %s", message_id, exc.message)
            return "later"  # still pending: the next sync that sees the record queues it again
        raise self.retry(exc=exc, countdown=min(600, 2 ** (self.request.retries + 3)))
    return "done"
