"""Tables of the RingCentral channel (registered under the channels_ingest app label)."""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from crm import identity


class SyncState(models.Model):
    """Where a periodic read of RingCentral stands (one row per feed: "sms", "calls").

    sms: the message-sync token (ISync continues from it; empty: the next run is an
    FSync). calls: the start time of the newest call read (the next read overlaps it).
    locked_until is the lease that keeps two workers from syncing the same feed at once.
    """

    feed = models.CharField(max_length=20, unique=True)
    sync_token = models.TextField(blank=True)
    cursor_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    lock_owner = models.CharField(max_length=40, blank=True)

    def __str__(self):
        return self.feed


class Subscription(models.Model):
    """Our webhook subscription at RingCentral (manage.py ringcentral_subscribe; renewed by beat)."""

    subscription_id = models.CharField(max_length=80, unique=True)
    address = models.URLField(max_length=500)
    event_filters = models.JSONField(default=list)
    status = models.CharField(max_length=20, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    renewed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.subscription_id} ({self.status}, until {self.expires_at:%Y-%m-%d %H:%M})"


class AgentPhone(models.Model):
    """A staff member's own RingCentral number: click to call rings it first (RingOut), then the customer."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ringcentral_phone")
    phone_number = models.CharField(max_length=20, help_text="E.164, e.g. +14155550123 (a RingCentral number)")

    class Meta:
        verbose_name = "agent RingCentral number"

    def __str__(self):
        return f"{self.user}: {self.phone_number}"

    def clean(self):
        try:
            self.phone_number = identity.normalize_phone(self.phone_number)
        except ValidationError as exc:
            raise ValidationError({"phone_number": exc.messages})

    def save(self, *args, **kwargs):
        self.phone_number = identity.normalize_phone(self.phone_number)
        super().save(*args, **kwargs)


class PendingNotification(models.Model):
    """An instant-SMS notification the webhook acknowledged and has not stored yet.

    The webhook writes the notification as received (one INSERT, committed
    before RingCentral gets its 200) and answers; ``webhooks.store_pending``
    stores these rows in batches and deletes them in the same transaction, so
    a notification is either still here or stored, never neither. A row
    whose storing failed MAX_ATTEMPTS times alone is kept for ops (with its
    error) and no longer retried; the message-sync brings its SMS anyway.
    """

    body = models.TextField(help_text="The notification's JSON, as RingCentral sent it.")
    received_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Failed attempts to store it on its own.")
    last_error = models.CharField(max_length=500, blank=True)

    def __str__(self):
        return f"notification {self.pk} of {self.received_at:%Y-%m-%d %H:%M:%S}"
