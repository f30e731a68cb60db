"""Email for the demo as SendGrid would have left it: the record of every staff reply and booking
email (SentEmail, written through channels_ingest/email/services.py, its one writer), the tracking
events SendGrid posted for them (TrackingEvent, with the raw event as email/tracking.py keeps it),
and two sent campaigns with their recipients and figures (each recipient counted once per kind,
as email/tracking.py counts them).

Bounces are SendGrid's "blocked" kind, which suppresses nobody (email/tracking.py): a demo address
on the do-not-email list would contradict the replies it gets later.
"""
import base64
import functools
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parseaddr

from django.conf import settings
from django.db.models import F

from channels_ingest.email import services as email_services
from channels_ingest.email.models import Campaign, CampaignRecipient, SentEmail, TrackingEvent
from channels_ingest.email.threads import message_domain
from crm.models import Booking, loyalty_tier

from . import insert

# (opened / delivered, clicked / opened, bounced / sent) by kind of mail.
RATES = {"reply": (0.65, 0.05, 0.02), "confirmation": (0.85, 0.3, 0.01), "reminder": (0.8, 0.15, 0.01),
         "campaign": (0.3, 0.2, 0.015)}
# SendGrid's own event names (the raw payload) for Anymail's normalised ones (TrackingEvent.event_type).
RAW = {"delivered": "delivered", "opened": "open", "clicked": "click", "bounced": "bounce"}
BLOCKED = ["550 5.7.1 Message rejected: the receiving server takes it for bulk mail",
           "554 5.7.1 Service unavailable; client host blocked using a reputation list"]
LINKS = {"reply": "https://myhibachi.test/menu", "confirmation": "https://myhibachi.test/my-booking",
         "reminder": "https://myhibachi.test/my-booking", "campaign": "https://myhibachi.test/book"}
CAMPAIGNS = [
    {"name": "Book your next party", "days_ago": 200, "segment": Campaign.Segment.ALL,
     "subject": "{{ first_name }}, your backyard hibachi party is one email away",
     "body": "Hi {{ first_name }},\n\nWeekends fill up fast. Book your party now: our chef brings the grill, "
             "the food and the show.\n\nBook at https://myhibachi.test/book or just answer this email.\n\nMy Hibachi"},
    {"name": "Thank you: 10% off your next party", "days_ago": 45, "segment": Campaign.Segment.PAST_BOOKING,
     "subject": "Thank you, {{ first_name }}: 10% off your next party",
     "body": "Hi {{ first_name }},\n\nThank you for cooking with us. Your next party is 10% off when you book "
             "by the end of the month.\n\nBook at https://myhibachi.test/book\n\nMy Hibachi"},
]


def _token(rng, size=16) -> str:
    return base64.urlsafe_b64encode(rng.getrandbits(8 * size).to_bytes(size, "big")).decode().rstrip("=")


def _uuid(rng) -> str:
    """Anymail's message id for SendGrid (a version 4 UUID)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def our_message_id(index: int, n: int) -> str:
    """The Message-ID of a staff reply (seeded replies carry a plain one, not threads.py's signed token)."""
    return f"demo.{index}.{n}@{message_domain()}"


@functools.lru_cache(maxsize=4)
def _address(header: str) -> str:
    return parseaddr(header)[1]


def inbound_metadata(*, address: str, name: str, message_id: str, answers: str | None) -> dict:
    """The metadata of a customer's email, as email/ingest.py stores one read over IMAP."""
    metadata = {"source": "imap", "message_id": message_id, "from_name": name, "from": address,
                "to": [_address(settings.DEFAULT_FROM_EMAIL)]}
    if answers:
        metadata["in_reply_to"] = [answers]
        metadata["references"] = [answers]
    return metadata


@dataclass
class Mail:
    """One email handed to SendGrid and what SendGrid said of it."""
    kind: str
    to: str
    sent_at: object
    esp_id: str
    provider_id: str
    events: list = field(default_factory=list)  # (event id, type, when, payload), oldest first

    def first(self, event_type):
        return next((at for _, kind, at, _ in self.events if kind == event_type), None)

    @property
    def delivery_status(self) -> str:
        """The message's delivery status after these events (inbox.delivery: only forward, failed wins)."""
        kinds = {kind for _, kind, _, _ in self.events}
        if "bounced" in kinds:
            return "failed"
        return next((k for k in ("clicked", "opened", "delivered") if k in kinds), "sent")

    @property
    def reason(self) -> str:
        bounce = next((payload for _, kind, _, payload in self.events if kind == "bounced"), None)
        return f"Bounced: {bounce['reason']}" if bounce else ""


def plan(rng, kind: str, *, to: str, sent_at, now) -> Mail:
    """What became of one email: delivered within seconds (or bounced), maybe opened and clicked later."""
    mail = Mail(kind=kind, to=to, sent_at=sent_at, esp_id=_uuid(rng), provider_id=_token(rng))
    opens, clicks, bounces = RATES[kind]
    happened = []
    if rng.random() < bounces:
        happened.append(("bounced", sent_at + timedelta(seconds=rng.randrange(2, 90)),
                         {"type": "blocked", "reason": rng.choice(BLOCKED), "status": "5.7.1"}))
    else:
        delivered = sent_at + timedelta(seconds=rng.randrange(1, 40))
        happened.append(("delivered", delivered, {"response": "250 2.0.0 OK"}))
        if rng.random() < opens:
            opened = delivered + timedelta(minutes=min(int(rng.expovariate(1 / 240)), 4320) + 1)
            happened.append(("opened", opened, {"useragent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X)"}))
            if rng.random() < clicks:
                happened.append(("clicked", opened + timedelta(seconds=rng.randrange(5, 600)), {"url": LINKS[kind]}))
    for event_type, at, extra in happened:
        if at > now:
            break
        event_id = _token(rng)
        mail.events.append((event_id, event_type, at, {
            "email": to, "event": RAW[event_type], "timestamp": int(at.timestamp()), "sg_event_id": event_id,
            "sg_message_id": f"{mail.provider_id}.filterdrecv-demo-1-0", "anymail_id": mail.esp_id,
            "category": [kind], **extra}))
    return mail


def tracking_events(mail: Mail, *, sent_email_id=None, recipient_id=None, now) -> list:
    return [TrackingEvent(event_id=event_id, event_type=kind, esp_message_id=mail.esp_id, recipient=mail.to,
                          occurred_at=at, sent_email_id=sent_email_id, campaign_recipient_id=recipient_id,
                          payload=payload, created_at=min(at + timedelta(seconds=5), now))
            for event_id, kind, at, payload in mail.events]


def sent_email(mail: Mail, *, message=None, booking=None, message_id_header="") -> SentEmail:
    return SentEmail(kind=mail.kind, message_id=message and message.pk, booking_id=booking and booking.pk, to=mail.to,
                     message_id_header=message_id_header,
                     esp_message_id=mail.esp_id, provider_message_id=mail.provider_id,
                     status="bounced" if mail.first("bounced") else "sent", created_at=mail.sent_at)


def booking_mail(rng, bookings, *, to: str, now) -> list:
    """(SentEmail, Mail) of the confirmation and reminder each booking got (email/transactional.py's
    rules: a confirmation when confirmed, a reminder EMAIL_REMINDER_HOURS before a confirmed event)."""
    found = []
    before = timedelta(hours=settings.EMAIL_REMINDER_HOURS)
    for booking in bookings:
        if booking.confirmed_at is None:
            continue
        confirmed = booking.confirmed_at + timedelta(seconds=rng.randrange(20, 300))
        if confirmed <= now:
            mail = plan(rng, SentEmail.Kind.CONFIRMATION, to=to, sent_at=confirmed, now=now)
            found.append((sent_email(mail, booking=booking), mail))
        reminded = max(booking.event_at - before + timedelta(seconds=rng.randrange(0, 900)),
                       confirmed + timedelta(minutes=10))
        if booking.status in (Booking.Status.CONFIRMED, Booking.Status.COMPLETED) and reminded <= now:
            mail = plan(rng, SentEmail.Kind.REMINDER, to=to, sent_at=reminded, now=now)
            found.append((sent_email(mail, booking=booking), mail))
    return found


def store_sent(pairs: list, *, now) -> None:
    """The SentEmail records (through their one writer) and their tracking events."""
    if not pairs:
        return
    records = email_services.record_sent_history([record for record, _ in pairs])
    insert([event for record, (_, mail) in zip(records, pairs)
            for event in tracking_events(mail, sent_email_id=record.pk, now=now)])


# --- campaigns ------------------------------------------------------------------------------

def campaigns(*, now, by) -> list:
    """The demo's sent campaigns, made once (found by name on later runs)."""
    found = []
    for spec in CAMPAIGNS:
        started = now - timedelta(days=spec["days_ago"])
        campaign, _ = Campaign.objects.get_or_create(name=spec["name"], defaults={
            "subject": spec["subject"], "body": spec["body"], "segment": spec["segment"],
            "status": Campaign.Status.SENT, "created_by": by, "created_at": started - timedelta(days=2),
            "started_at": started, "finished_at": started + timedelta(minutes=15)})
        found.append(campaign)
    return found


def recipients(rng, campaigns, *, customer, to: str, bookings, now) -> list:
    """(CampaignRecipient, Mail) for each campaign this customer was in: a customer by then, and for
    the past-booking segment one with a past booking then (email/campaigns.py's segments)."""
    found = []
    for campaign in campaigns:
        if customer.created_at >= campaign.started_at:
            continue
        past = [b for b in bookings if b.status != Booking.Status.CANCELLED and b.event_at < campaign.started_at]
        if campaign.segment == Campaign.Segment.PAST_BOOKING and not past:
            continue
        sent_at = campaign.started_at + timedelta(seconds=rng.randrange(0, 900))
        mail = plan(rng, "campaign", to=to, sent_at=sent_at, now=now)
        opened = mail.first("opened")
        found.append((CampaignRecipient(
            campaign_id=campaign.pk, customer_id=customer.pk, email=to, first_name=customer.first_name,
            last_name=customer.last_name, status=CampaignRecipient.Status.SENT, esp_message_id=mail.esp_id,
            loyalty_tier=loyalty_tier(sum(b.status == Booking.Status.COMPLETED for b in past)), sent_at=sent_at,
            delivered_at=mail.first("delivered"), opened_at=opened, clicked_at=mail.first("clicked"),
            bounced_at=mail.first("bounced")), mail))
    return found


def store_recipients(pairs: list, *, now) -> None:
    """The recipients, their tracking events, and each campaign's figures moved on by them."""
    if not pairs:
        return
    rows = insert([recipient for recipient, _ in pairs])
    insert([event for recipient, (_, mail) in zip(rows, pairs)
            for event in tracking_events(mail, recipient_id=recipient.pk, now=now)])
    figures = {}
    for recipient in rows:
        counts = figures.setdefault(recipient.campaign_id, dict.fromkeys(
            ("recipients_count", "sent_count", "delivered_count", "opened_count", "clicked_count", "bounced_count"), 0))
        counts["recipients_count"] += 1
        counts["sent_count"] += 1
        for name in ("delivered", "opened", "clicked", "bounced"):
            counts[f"{name}_count"] += getattr(recipient, f"{name}_at") is not None
    for campaign_id, counts in figures.items():
        Campaign.objects.filter(pk=campaign_id).update(**{name: F(name) + n for name, n in counts.items()})
