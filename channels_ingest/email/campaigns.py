"""Bulk email campaigns: a segment of customers, one personalised email each,
sent in batches (one SendGrid API call per batch through Anymail's merge_data),
rate-limited, with a one-click unsubscribe link and List-Unsubscribe headers.
Suppressed addresses are skipped; each recipient is sent at most once.
"""
import logging
import re
import time
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, linebreaks

from crm.models import Booking, Customer, CustomerIdentity, loyalty_tier, loyalty_tier_names
from inbox.delivery import PermanentSendError, TransientSendError

from .models import Campaign, CampaignRecipient, Suppression
from .sender import deliver
from .services import suppress, suppressed_among

logger = logging.getLogger(__name__)

MERGE_FIELDS = ("first_name", "last_name", "full_name", "loyalty_tier", "unsubscribe_url")
FIELD = re.compile(r"{{\s*([A-Za-z_][\w.]*)\s*}}")
UNSUBSCRIBE_SALT = "myhibachi.email.unsubscribe"


def validate_campaign(campaign) -> None:
    errors = {}
    unknown = sorted({f for text in (campaign.subject, campaign.body) for f in FIELD.findall(text or "")}
                     - set(MERGE_FIELDS))
    if unknown:
        errors["body"] = (f"Unknown merge field(s): {', '.join(unknown)}. "
                          f"Use {', '.join('{{ ' + f + ' }}' for f in MERGE_FIELDS)}.")
    if campaign.segment == Campaign.Segment.LOYALTY and campaign.loyalty_tier not in loyalty_tier_names():
        errors["loyalty_tier"] = f"Choose one of: {', '.join(loyalty_tier_names())}."
    if campaign.segment == Campaign.Segment.LAPSED and not campaign.months_without_booking:
        errors["months_without_booking"] = "Say how many months without a booking (1 or more)."
    if errors:
        raise ValidationError(errors)


# --- who gets it -------------------------------------------------------------

def segment(campaign) -> "QuerySet[Customer]":
    now = timezone.now()
    active = ~Q(status=Booking.Status.CANCELLED)
    customers = Customer.objects.annotate(
        completed=Count("bookings", filter=Q(bookings__status=Booking.Status.COMPLETED), distinct=True))
    if campaign.segment == Campaign.Segment.LOYALTY:
        tiers = sorted(settings.LOYALTY_TIERS.items(), key=lambda item: item[1])
        names = [name for name, _ in tiers]
        if campaign.loyalty_tier == "none":
            return customers.filter(completed__lt=tiers[0][1])
        index = names.index(campaign.loyalty_tier)
        customers = customers.filter(completed__gte=tiers[index][1])
        if index + 1 < len(tiers):
            customers = customers.filter(completed__lt=tiers[index + 1][1])
        return customers
    if campaign.segment == Campaign.Segment.PAST_BOOKING:
        return customers.filter(Exists(Booking.objects.filter(active, customer=OuterRef("pk"), event_at__lt=now)))
    if campaign.segment == Campaign.Segment.LAPSED:
        since = now - timedelta(days=30 * campaign.months_without_booking)
        booked = Booking.objects.filter(active, customer=OuterRef("pk"))
        return customers.filter(Exists(booked)).exclude(Exists(booked.filter(event_at__gte=since)))
    return customers


def prepare_recipients(campaign) -> int:
    """Freeze the segment into recipient rows (idempotent); returns how many will be mailed."""
    email = CustomerIdentity.objects.filter(customer=OuterRef("pk"), kind="email").order_by("-is_primary", "id")
    rows = (
        segment(campaign).annotate(email=Subquery(email.values("value")[:1])).exclude(email=None)
        .annotate(suppressed=Exists(Suppression.objects.filter(email=OuterRef("email"))))
        .values_list("pk", "first_name", "last_name", "email", "completed", "suppressed")
    )
    batch = []
    for pk, first, last, address, completed, suppressed in rows.iterator(chunk_size=2000):
        batch.append(CampaignRecipient(
            campaign=campaign, customer_id=pk, email=address, first_name=first, last_name=last,
            loyalty_tier=loyalty_tier(completed),
            status=CampaignRecipient.Status.SUPPRESSED if suppressed else CampaignRecipient.Status.PENDING,
        ))
        if len(batch) >= 1000:
            CampaignRecipient.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    CampaignRecipient.objects.bulk_create(batch, ignore_conflicts=True)
    figures = campaign.recipients.aggregate(total=Count("id"), suppressed=Count("id", filter=Q(status="suppressed")))
    Campaign.objects.filter(pk=campaign.pk).update(recipients_count=figures["total"],
                                                   suppressed_count=figures["suppressed"])
    return figures["total"] - figures["suppressed"]


# --- unsubscribe -------------------------------------------------------------

def unsubscribe_token(*, email: str, campaign_id: int) -> str:
    return signing.dumps({"e": email, "c": campaign_id}, salt=UNSUBSCRIBE_SALT, compress=True)


def read_unsubscribe_token(token: str) -> dict | None:
    try:
        data = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("e"), str) else None


def unsubscribe_url(token: str) -> str:
    return settings.EMAIL_PUBLIC_BASE_URL.rstrip("/") + reverse("email_unsubscribe", args=[token])


def unsubscribe(*, email: str, campaign_id: int | None) -> bool:
    """Suppress the address and count it once for the campaign. Returns whether it was new."""
    new = suppress(email, reason="unsubscribed", detail=f"Unsubscribe link of campaign {campaign_id}")
    if campaign_id:
        first = CampaignRecipient.objects.filter(campaign_id=campaign_id, email=email,
                                                 unsubscribed_at__isnull=True).update(unsubscribed_at=timezone.now())
        if first:
            Campaign.objects.filter(pk=campaign_id).update(unsubscribed_count=F("unsubscribed_count") + 1)
    return new


# --- sending -----------------------------------------------------------------

def _placeholders(text: str, suffix: str = "") -> str:
    return FIELD.sub(lambda m: f"-{m.group(1)}{suffix}-", text)


def _fields(recipient, url) -> dict:
    full = f"{recipient.first_name} {recipient.last_name}".strip()
    return {"first_name": recipient.first_name or "there", "last_name": recipient.last_name,
            "full_name": full or "there", "loyalty_tier": recipient.loyalty_tier, "unsubscribe_url": url}


def _bodies(campaign):
    text = campaign.body.rstrip() + "\n\n--\nUnsubscribe: {{ unsubscribe_url }}\n"
    html = (linebreaks(escape(campaign.body)) + '<p style="font-size:12px;color:#777">'
            '<a href="{{ unsubscribe_url }}">Unsubscribe</a> from My Hibachi news.</p>')
    return text, html


def uses_anymail() -> bool:
    return settings.EMAIL_BACKEND.startswith("anymail.")


def _batch_message(campaign, recipients, tokens):
    text, html = _bodies(campaign)
    message = EmailMultiAlternatives(subject=_placeholders(campaign.subject), body=_placeholders(text),
                                     from_email=settings.DEFAULT_FROM_EMAIL, to=[r.email for r in recipients])
    message.attach_alternative(_placeholders(html, "_html"), "text/html")
    merge_data, merge_headers = {}, {}
    for recipient in recipients:
        url = unsubscribe_url(tokens[recipient.pk])
        fields = _fields(recipient, url)
        merge_data[recipient.email] = {**fields, **{f"{k}_html": escape(v) for k, v in fields.items()}}
        merge_headers[recipient.email] = {"List-Unsubscribe": f"<{url}>",
                                          "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    message.merge_data = merge_data
    message.merge_headers = merge_headers
    message.esp_extra = {"merge_field_format": "-{}-"}  # {{ x }} became -x-
    message.tags = ["campaign"]
    message.metadata = {"campaign": campaign.pk}
    return message


def _single_messages(campaign, recipients, tokens):
    """For backends without merge data (SMTP, console): one rendered email each."""
    text, html = _bodies(campaign)
    messages = []
    for recipient in recipients:
        url = unsubscribe_url(tokens[recipient.pk])
        fields = _fields(recipient, url)

        def render(template, as_html=False, fields=fields):
            return FIELD.sub(lambda m: escape(fields[m.group(1)]) if as_html else fields[m.group(1)], template)

        message = EmailMultiAlternatives(subject=render(campaign.subject), body=render(text),
                                         from_email=settings.DEFAULT_FROM_EMAIL, to=[recipient.email],
                                         headers={"List-Unsubscribe": f"<{url}>",
                                                  "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
        message.attach_alternative(render(html, as_html=True), "text/html")
        messages.append(message)
    return messages


def _claim(campaign, size):
    with transaction.atomic():
        ids = list(CampaignRecipient.objects.select_for_update(skip_locked=True)
                   .filter(campaign=campaign, status=CampaignRecipient.Status.PENDING)
                   .order_by("id").values_list("id", flat=True)[:size])
        CampaignRecipient.objects.filter(id__in=ids).update(status=CampaignRecipient.Status.SENDING)
    recipients = list(CampaignRecipient.objects.filter(id__in=ids).order_by("id"))
    late = suppressed_among([r.email for r in recipients])
    if late:
        CampaignRecipient.objects.filter(id__in=ids, email__in=late).update(status=CampaignRecipient.Status.SUPPRESSED)
        Campaign.objects.filter(pk=campaign.pk).update(suppressed_count=F("suppressed_count") + len(late))
    return [r for r in recipients if r.email not in late]


def send(campaign: Campaign, *, progress=None) -> Campaign:
    """Send every pending recipient. Raises TransientSendError (rows released) to be retried later."""
    claimed = Campaign.objects.filter(pk=campaign.pk, status__in=[Campaign.Status.QUEUED, Campaign.Status.SENDING])
    if not claimed.update(status=Campaign.Status.SENDING, started_at=campaign.started_at or timezone.now()):
        return campaign
    if not campaign.recipients.exists():
        prepare_recipients(campaign)
    # Rows left "sending" by a worker that died mid-call may have gone out: never send them twice.
    stale = campaign.recipients.filter(status=CampaignRecipient.Status.SENDING)
    lost = stale.update(status=CampaignRecipient.Status.FAILED, error="Interrupted while sending; not resent.")
    if lost:
        Campaign.objects.filter(pk=campaign.pk).update(failed_count=F("failed_count") + lost)
    rate, size = settings.EMAIL_CAMPAIGN_RATE_PER_SECOND, settings.EMAIL_CAMPAIGN_BATCH_SIZE
    connection = get_connection()
    started, done = time.monotonic(), 0
    try:
        connection.open()
        while recipients := _claim(campaign, size):
            done += _send_batch(campaign, recipients, connection)
            if progress is not None:
                progress(done)
            wait = done / rate - (time.monotonic() - started)
            if wait > 0:
                time.sleep(wait)
    finally:
        connection.close()
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENT, finished_at=timezone.now())
    campaign.refresh_from_db()
    return campaign


def _send_batch(campaign, recipients, connection) -> int:
    ids = [r.pk for r in recipients]
    tokens = {r.pk: unsubscribe_token(email=r.email, campaign_id=campaign.pk) for r in recipients}
    messages = [_batch_message(campaign, recipients, tokens)] if uses_anymail() else _single_messages(
        campaign, recipients, tokens)
    try:
        for message in messages:
            message.connection = connection
            deliver(message)
    except TransientSendError:
        CampaignRecipient.objects.filter(id__in=ids).update(status=CampaignRecipient.Status.PENDING)
        raise
    except PermanentSendError as exc:
        CampaignRecipient.objects.filter(id__in=ids).update(status=CampaignRecipient.Status.FAILED, error=str(exc)[:500])
        Campaign.objects.filter(pk=campaign.pk).update(failed_count=F("failed_count") + len(ids),
                                                       status_detail=str(exc)[:500])
        return 0
    now = timezone.now()
    status = getattr(messages[0], "anymail_status", None)
    for recipient in recipients:
        found = status.recipients.get(recipient.email) if status is not None else None
        recipient.esp_message_id = found.message_id if found is not None else None
        recipient.status, recipient.sent_at = CampaignRecipient.Status.SENT, now
    CampaignRecipient.objects.bulk_update(recipients, ["esp_message_id", "status", "sent_at"], batch_size=1000)
    Campaign.objects.filter(pk=campaign.pk).update(sent_count=F("sent_count") + len(recipients))
    return len(recipients)


def queue(campaign: Campaign, *, by=None) -> bool:
    """Draft -> queued, and hand it to Celery. False when it was already queued or sent."""
    validate_campaign(campaign)
    if not Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.DRAFT).update(status=Campaign.Status.QUEUED):
        return False
    from .tasks import send_campaign

    transaction.on_commit(lambda: send_campaign.delay(campaign.pk))
    return True


