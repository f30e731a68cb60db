"""Booking confirmation and reminder emails.

Rendered from templates/email/booking_<kind>.{subject.txt,txt,html}, or, with
EMAIL_PROVIDER=sendgrid and a template id in EMAIL_TEMPLATE_IDS[kind]
(SENDGRID_TEMPLATE_BOOKING_CONFIRMATION / _REMINDER), by SendGrid's dynamic
template with the same fields. Each booking gets each kind at most once.
Unsubscribing from campaigns does not stop these; a hard bounce or a spam
complaint does.
"""
import logging
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import timezone

from crm.models import Booking, CustomerIdentity
from inbox.delivery import PermanentSendError, TransientSendError

from .models import SentEmail
from . import services as email_services
from .campaigns import uses_anymail
from .sender import deliver, esp_ids

logger = logging.getLogger(__name__)

KINDS = (SentEmail.Kind.CONFIRMATION, SentEmail.Kind.REMINDER)


def context_for(booking: Booking) -> dict:
    local = booking.event_at.astimezone(ZoneInfo(settings.BUSINESS_TIME_ZONE))
    customer = booking.customer
    return {
        "first_name": customer.first_name or "there", "customer_name": customer.name,
        "event_date": local.strftime("%A, %B %-d, %Y"), "event_time": local.strftime("%-I:%M %p"),
        "guest_count": booking.guest_count, "total": f"{booking.total:.2f}", "deposit": f"{booking.deposit:.2f}",
        "booking_id": booking.pk,
    }


def build(booking: Booking, kind: str, to: str) -> EmailMultiAlternatives:
    ctx = context_for(booking)
    template_id = settings.EMAIL_TEMPLATE_IDS.get(kind) if uses_anymail() else None
    if template_id:
        email = EmailMultiAlternatives(from_email=settings.DEFAULT_FROM_EMAIL, to=[to])
        email.template_id = template_id
        email.merge_global_data = ctx
    else:
        subject = " ".join(render_to_string(f"email/booking_{kind}_subject.txt", ctx).split())
        email = EmailMultiAlternatives(subject=subject, body=render_to_string(f"email/booking_{kind}.txt", ctx),
                                       from_email=settings.DEFAULT_FROM_EMAIL, to=[to])
        email.attach_alternative(render_to_string(f"email/booking_{kind}.html", ctx), "text/html")
    email.tags = [kind]
    email.metadata = {"booking": booking.pk}
    return email


def send_booking_email(booking: Booking, kind: str) -> SentEmail | None:
    """Send once; returns the record, or None when skipped (no address, suppressed, already sent)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    to = (CustomerIdentity.objects.filter(customer_id=booking.customer_id, kind="email")
          .order_by("-is_primary", "id").values_list("value", flat=True).first())
    if not to:
        logger.info("booking %s: no email address, %s not sent", booking.pk, kind)
        return None
    if email_services.suppression_for(to, reasons=email_services.HARD_REASONS) is not None:
        logger.info("booking %s: %s is suppressed, %s not sent", booking.pk, to, kind)
        return None
    record = email_services.claim_booking_email(kind=kind, booking=booking, to=to)
    if record is None:
        return None  # already sent (or being sent) for this booking
    email = build(booking, kind, to)
    try:
        deliver(email)
    except TransientSendError:
        email_services.release_booking_email(record)  # let the retry claim it again
        raise
    except PermanentSendError as exc:
        email_services.finish_booking_email(record, status="failed")
        logger.warning("booking %s %s failed: %s", booking.pk, kind, exc)
        return record
    esp_message_id, provider_message_id = esp_ids(email)
    email_services.finish_booking_email(record, status="sent", esp_message_id=esp_message_id,
                                        provider_message_id=provider_message_id)
    return record


def due_reminders():
    """Confirmed bookings starting within EMAIL_REMINDER_HOURS that have no reminder yet."""
    now = timezone.now()
    sent = SentEmail.objects.filter(kind=SentEmail.Kind.REMINDER).values("booking_id")
    return (Booking.objects.filter(status=Booking.Status.CONFIRMED, event_at__gt=now,
                                   event_at__lte=now + timedelta(hours=settings.EMAIL_REMINDER_HOURS))
            .exclude(pk__in=sent).select_related("customer"))
