"""Rollups the analytics read instead of the raw tables (see docs/analytics.md).

Each is rebuilt, never patched: a unit (a local day of revenue, a
conversation's response cycles) is deleted and recomputed from the source
rows inside one transaction, so a refresh run twice gives the same rows.
analytics/refresh.py is their only writer.
"""
from django.conf import settings
from django.db import models


class RevenueDay(models.Model):
    """One lens's bookings and money for a local day (BUSINESS_TIME_ZONE) and one slice.

    booked: bookings confirmed that day that are not cancelled, by total.
    event:  completed bookings whose event falls on that day, by total.
    cash:   payments made that day, deposits and balances minus refunds.
    """

    class Lens(models.TextChoices):
        BOOKED = "booked", "Booked (by confirmation date)"
        EVENT = "event", "Event date (completed bookings)"
        CASH = "cash", "Cash (payments, net of refunds)"

    day = models.DateField()
    lens = models.CharField(max_length=8, choices=Lens.choices)
    source = models.CharField(max_length=12)
    event_type = models.CharField(max_length=12)
    location = models.CharField(max_length=80, blank=True)
    count = models.PositiveIntegerField()
    amount = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        indexes = [models.Index(fields=["lens", "day"], name="analytics_revday_lens_idx")]


class ResponseCycle(models.Model):
    """One wait for a first staff reply: from the latest of conversation start, reopen and bot hand-off
    to the first reply by a staff member (replied_at empty while unanswered).

    Both durations are stored: wall seconds, and seconds within BUSINESS_HOURS
    (null when no business hours are set). Percentiles read them raw.
    """

    conversation = models.ForeignKey("inbox.Conversation", on_delete=models.CASCADE, related_name="+")
    number = models.PositiveIntegerField(help_text="0: the conversation's first wait; 1..: after reopens.")
    channel = models.CharField(max_length=10, blank=True)
    started_at = models.DateTimeField()
    replied_at = models.DateTimeField(null=True)
    agent = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    wall_seconds = models.FloatField(null=True)
    business_seconds = models.FloatField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["conversation", "number"], name="analytics_cycle_unique")]
        indexes = [models.Index(fields=["replied_at"], name="analytics_cycle_replied_idx"),
                   models.Index(fields=["started_at"], name="analytics_cycle_started_idx"),
                   models.Index(fields=["agent", "replied_at"], name="analytics_cycle_agent_idx")]


class Resolution(models.Model):
    """One resolution: a status change to "resolved", timed from the start of its cycle
    (conversation start or the reopen before it). Every resolution counts: the same rows
    feed cards, series and per-agent tables."""

    conversation = models.ForeignKey("inbox.Conversation", on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=10, blank=True)
    started_at = models.DateTimeField()
    resolved_at = models.DateTimeField()
    agent = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    wall_seconds = models.FloatField()
    business_seconds = models.FloatField(null=True)

    class Meta:
        indexes = [models.Index(fields=["resolved_at"], name="analytics_resolution_at_idx"),
                   models.Index(fields=["conversation"], name="analytics_resolution_conv_idx")]


class DirtyDay(models.Model):
    """A local day whose revenue must be rebuilt (a booking or payment changed)."""

    day = models.DateField(unique=True)


class RefreshState(models.Model):
    """Fill state of a rollup: how far it has read (the last history row id) and when it ran."""

    name = models.CharField(max_length=40, unique=True)
    last_id = models.BigIntegerField(default=0)
    refreshed_at = models.DateTimeField(null=True)
    full_refreshed_at = models.DateTimeField(null=True)


class SavedReport(models.Model):
    """A report builder spec saved by name (analytics/builder.py): data checked against whitelists,
    never SQL, and checked again every time it is loaded. Its owner may change or delete it; with
    `shared` other managers can see and run it too (analytics/reports.py decides)."""

    name = models.CharField(max_length=100)
    spec = models.JSONField(help_text="measure, dimensions, filters, range: see docs/analytics.md, Report builder.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    shared = models.BooleanField(default=False, help_text="Other managers can see and run it; only the owner "
                                                          "changes it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="analytics_report_owner_name_unique"),
                       models.CheckConstraint(condition=~models.Q(name=""), name="analytics_report_name_not_empty")]

    def __str__(self):
        return self.name
