"""Celery tasks of the email channel: thin, idempotent, safe to retry."""
import logging

from celery import shared_task
from django.conf import settings

from inbox.delivery import TransientSendError

from .models import Campaign, Mailbox

logger = logging.getLogger(__name__)


@shared_task(name="channels_ingest.email.poll_all_mailboxes")
def poll_all_mailboxes():
    """Beat entry: one poll task per active mailbox (each takes the mailbox's lock)."""
    ids = list(Mailbox.objects.filter(active=True).values_list("pk", flat=True))
    for mailbox_id in ids:
        poll_mailbox.apply_async((mailbox_id,), expires=settings.IMAP_POLL_SECONDS)
    return len(ids)


@shared_task(name="channels_ingest.email.poll_mailbox", acks_late=True)
def poll_mailbox(mailbox_id: int):
    from .imap import poll

    mailbox = Mailbox.objects.filter(pk=mailbox_id, active=True).first()
    if mailbox is None:
        return None
    stats = poll(mailbox, max_seconds=settings.IMAP_POLL_MAX_SECONDS)
    return stats.as_dict()


@shared_task(name="channels_ingest.email.send_campaign", bind=True, max_retries=8, acks_late=True)
def send_campaign(self, campaign_id: int):
    from . import campaigns

    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        return "missing"
    try:
        campaign = campaigns.send(campaign)
    except TransientSendError as exc:
        if self.request.retries >= self.max_retries:
            Campaign.objects.filter(pk=campaign_id).update(status=Campaign.Status.FAILED,
                                                           status_detail=f"Gave up after retries: {exc}"[:500])
            return "failed"
        logger.warning("campaign %s paused (%s); retrying", campaign_id, exc)
        raise self.retry(exc=exc, countdown=min(900, 2 ** (self.request.retries + 3)))
    return campaign.status


@shared_task(name="channels_ingest.email.send_booking_email", bind=True, max_retries=6, acks_late=True)
def send_booking_email(self, booking_id: int, kind: str):
    from crm.models import Booking

    from .transactional import send_booking_email as send

    booking = Booking.objects.select_related("customer").filter(pk=booking_id).first()
    if booking is None:
        return "missing"
    try:
        record = send(booking, kind)
    except TransientSendError as exc:
        raise self.retry(exc=exc, countdown=min(600, 2 ** (self.request.retries + 2)))
    return record.status if record else "skipped"


@shared_task(name="channels_ingest.email.send_due_reminders")
def send_due_reminders():
    from .transactional import due_reminders

    ids = list(due_reminders().values_list("pk", flat=True))
    for booking_id in ids:
        send_booking_email.delay(booking_id, "reminder")
    return len(ids)
