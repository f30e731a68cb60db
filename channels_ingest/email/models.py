"""Tables of the email channel: mailboxes we poll, what we could not store, who must
not be mailed, what we sent and what SendGrid told us, campaigns.

App label channels_ingest (the package is inside it), so the migrations stay in
channels_ingest/migrations; channels_ingest/models.py imports them. Writers:
Suppression, RejectedEmail and SentEmail through email/services.py; campaigns
through email/campaigns.py; a mailbox's poll state through email/imap.py and
email/locks.py; TrackingEvent through email/tracking.py.
"""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from crm.identity import fold_email
from crm.models import Customer

from .passwords import PLAIN_TEXT_REFUSED, plain_text_allowed, validate_password_env


class Mailbox(models.Model):
    """An IMAP folder polled for customer email. Password: from an environment
    variable (password_env) or stored encrypted (set through the admin form)."""

    class Tls(models.TextChoices):
        IMPLICIT = "implicit", "Implicit TLS (IMAPS, usually port 993)"
        STARTTLS = "starttls", "STARTTLS (usually port 143)"
        NONE = "none", "None (plain text, local test servers only)"

    name = models.SlugField(max_length=80, unique=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=993)
    tls = models.CharField("TLS", max_length=10, choices=Tls.choices, default=Tls.IMPLICIT)
    username = models.CharField(max_length=255)
    password_env = models.CharField(
        "password environment variable", max_length=100, blank=True, validators=[validate_password_env],
        help_text="Name of an environment variable holding the password: IMAP_PASSWORD_<NAME>, e.g. "
                  "IMAP_PASSWORD_SALES (no other names). Wins over a stored one.",
    )
    password_encrypted = models.TextField(blank=True, editable=False)
    folder = models.CharField(max_length=255, default="INBOX")
    processed_folder = models.CharField(
        max_length=255, blank=True,
        help_text="Opt-in: move each stored message to this folder. Empty (the default) leaves the server's mail untouched.",
    )
    active = models.BooleanField(default=True, help_text="Polled every IMAP_POLL_SECONDS by the Celery beat task.")
    uidvalidity = models.BigIntegerField(null=True, blank=True, editable=False)
    last_uid = models.BigIntegerField(default=0, editable=False)
    # A lease row lock for installations without Redis (see email/locks.py).
    lease_owner = models.CharField(max_length=64, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_polled_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_poll_stats = models.JSONField(default=dict, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "mailboxes"

    def __str__(self):
        return f"{self.name} ({self.username}@{self.host}/{self.folder})"

    def clean(self):
        super().clean()
        if self.tls == self.Tls.NONE and not plain_text_allowed():
            raise ValidationError({"tls": PLAIN_TEXT_REFUSED})


class RejectedEmail(models.Model):
    """An email we could not turn into an inbox message (e.g. no usable sender).
    Its raw source is kept in storage so nothing is lost; staff can retry it."""

    source = models.CharField(max_length=20)  # imap / sendgrid-inbound
    mailbox = models.ForeignKey(Mailbox, null=True, blank=True, on_delete=models.SET_NULL, related_name="rejected")
    uid = models.BigIntegerField(null=True, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    reason = models.TextField()
    raw_path = models.CharField(max_length=500, blank=True, help_text="Raw source in the default storage.")
    size = models.PositiveIntegerField(default=0)
    resolved = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        # One row per email however often it is fetched or posted, also when two
        # workers reject it at once. Webhook mail has no mailbox; the rows of a
        # deleted mailbox lose theirs (SET_NULL) and are left out of both.
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "message_id"], condition=Q(mailbox__isnull=False),
                                    name="rejected_email_once_per_mailbox"),
            models.UniqueConstraint(fields=["source", "message_id"], condition=~Q(source="imap"),
                                    name="rejected_email_once_per_webhook"),
        ]

    def __str__(self):
        return f"Rejected email {self.message_id or self.pk}: {self.reason[:60]}"


class Suppression(models.Model):
    """An address we must not send bulk or transactional mail to."""

    class Reason(models.TextChoices):
        BOUNCED = "bounced", "Hard bounce"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        COMPLAINED = "complained", "Spam complaint"
        MANUAL = "manual", "Added by staff"

    email = models.EmailField(max_length=254, unique=True)
    reason = models.CharField(max_length=12, choices=Reason.choices)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.email} ({self.reason})"

    def save(self, *args, **kwargs):
        self.email = fold_email(self.email)
        super().save(*args, **kwargs)


class Campaign(models.Model):
    class Segment(models.TextChoices):
        ALL = "all", "Every customer with an email address"
        LOYALTY = "loyalty", "Customers in a loyalty tier"
        PAST_BOOKING = "past_booking", "Customers with a past (completed) booking"
        LAPSED = "lapsed", "Customers without a booking for N months"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=120)
    subject = models.CharField(max_length=255)
    body = models.TextField(help_text="Plain text. Merge fields: {{ first_name }}, {{ last_name }}, {{ full_name }}, "
                                      "{{ loyalty_tier }}, {{ unsubscribe_url }} (a link is always added at the end).")
    segment = models.CharField(max_length=12, choices=Segment.choices, default=Segment.ALL)
    loyalty_tier = models.CharField(max_length=20, blank=True, help_text="For the loyalty segment.")
    months_without_booking = models.PositiveIntegerField(null=True, blank=True, help_text="For the lapsed segment.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT, editable=False)
    status_detail = models.CharField(max_length=500, blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Figures, each counting recipients once (kept exact by email/campaigns.py).
    recipients_count = models.PositiveIntegerField(default=0, editable=False)
    suppressed_count = models.PositiveIntegerField(default=0, editable=False)
    sent_count = models.PositiveIntegerField(default=0, editable=False)
    failed_count = models.PositiveIntegerField(default=0, editable=False)
    delivered_count = models.PositiveIntegerField(default=0, editable=False)
    opened_count = models.PositiveIntegerField(default=0, editable=False)
    clicked_count = models.PositiveIntegerField(default=0, editable=False)
    bounced_count = models.PositiveIntegerField(default=0, editable=False)
    unsubscribed_count = models.PositiveIntegerField(default=0, editable=False)
    complained_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name

    def clean(self):
        from .campaigns import validate_campaign

        validate_campaign(self)


class CampaignRecipient(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        SUPPRESSED = "suppressed", "Suppressed"
        FAILED = "failed", "Failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients")
    customer = models.ForeignKey(Customer, null=True, on_delete=models.SET_NULL, related_name="+")
    email = models.EmailField(max_length=254)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    loyalty_tier = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.CharField(max_length=500, blank=True)
    esp_message_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "email"], name="email_campaign_unique_recipient")]
        indexes = [models.Index(fields=["campaign", "status"], name="email_recipient_status_idx")]

    def __str__(self):
        return f"{self.email} · {self.campaign}"


class SentEmail(models.Model):
    """One email we handed to the backend (staff reply or transactional), so
    tracking events find their message by the ESP's id."""

    class Kind(models.TextChoices):
        REPLY = "reply", "Staff reply"
        CONFIRMATION = "confirmation", "Booking confirmation"
        REMINDER = "reminder", "Booking reminder"

    kind = models.CharField(max_length=12, choices=Kind.choices)
    message = models.ForeignKey("inbox.Message", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    booking = models.ForeignKey("crm.Booking", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    to = models.EmailField(max_length=254)
    message_id_header = models.CharField(max_length=255, blank=True)
    esp_message_id = models.CharField(max_length=100, null=True, blank=True, unique=True)
    provider_message_id = models.CharField(max_length=100, blank=True, db_index=True,
                                           help_text="SendGrid's X-Message-Id.")
    status = models.CharField(max_length=12, default="sent")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "booking"], condition=Q(booking__isnull=False),
                                    name="email_sent_once_per_booking"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} to {self.to}"


class TrackingEvent(models.Model):
    """Every tracking event SendGrid posted, once (dedupe by its event id)."""

    event_id = models.CharField(max_length=100, unique=True)
    event_type = models.CharField(max_length=20)
    esp_message_id = models.CharField(max_length=100, blank=True, db_index=True)
    recipient = models.CharField(max_length=254, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    sent_email = models.ForeignKey(SentEmail, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    campaign_recipient = models.ForeignKey(CampaignRecipient, null=True, blank=True, on_delete=models.SET_NULL,
                                           related_name="events")
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.event_type} {self.recipient}"
