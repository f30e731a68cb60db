"""Tables of the channel adapters: each channel package keeps its own (email/models.py),
imported here so Django finds them under the app label channels_ingest; and the
outcome counts every adapter shares (IngestCount, written by channels_ingest.base)."""
from django.db import models

from .email.models import (  # noqa: F401  (the email channel's tables, registered under this app)
    Campaign, CampaignRecipient, Mailbox, RejectedEmail, SentEmail, Suppression, TrackingEvent,
)
from .ringcentral.models import AgentPhone, PendingNotification, SyncState, Subscription  # noqa: F401  (SMS, calls)


from .chat.models import ChatbotSession  # noqa: F401,E402  (the website chat's table)


class IngestCount(models.Model):
    """How many payloads each source accepted, found already stored, or refused, per day.

    Written by channels_ingest.base.count() from every node and worker, read by
    ops with `manage.py channel_counts`: a refused webhook is a number someone
    can watch, not only a log line on one node.
    """

    source = models.CharField(max_length=40)  # e.g. sendgrid-inbound, imap, ringcentral-sms
    outcome = models.CharField(max_length=40)  # accepted, duplicate, refused_signature, ...
    day = models.DateField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-day", "source", "outcome"]
        constraints = [models.UniqueConstraint(fields=["source", "outcome", "day"], name="ingest_count_once_a_day")]

    def __str__(self):
        return f"{self.day} {self.source} {self.outcome}: {self.count}"
