"""The unified inbox: one conversation per customer thread, one Message row per
email, SMS, chat line or call, whatever the channel."""
from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone

from crm.models import Customer

from . import channels


class Tag(models.Model):
    name = models.SlugField(max_length=50, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name



class Conversation(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PENDING = "pending", "Pending"
        RESOLVED = "resolved", "Resolved"
        CLOSED = "closed", "Closed"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="conversations")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_conversations"
    )
    subject = models.CharField(max_length=255, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="conversations")
    # Denormalised so the inbox list reads one row per conversation, no subquery.
    last_message = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    last_activity_at = models.DateTimeField(default=timezone.now)
    is_unread = models.BooleanField(default=True, help_text="A customer message arrived that no staff member has opened.")
    first_response_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_activity_at", "-id"]
        indexes = [
            models.Index(fields=["customer", "-last_activity_at"], name="inbox_conv_customer_idx"),
            models.Index(fields=["status", "-last_activity_at", "-id"], name="inbox_conv_status_idx"),
            models.Index(fields=["assignee", "status", "-last_activity_at", "-id"], name="inbox_conv_assignee_idx"),
            models.Index(fields=["-last_activity_at", "-id"], name="inbox_conv_activity_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["open", "pending", "resolved", "closed"]), name="inbox_conv_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="resolved") | Q(resolved_at__isnull=False), name="inbox_conv_resolved_has_time"
            ),
            # One customer, one place: at most one open or pending conversation per customer
            # (the receive path joins it; reopening another one is refused while it is active).
            models.UniqueConstraint(
                fields=["customer"], condition=Q(status__in=["open", "pending"]),
                name="inbox_conv_one_active_per_customer",
                violation_error_message="This customer already has an open or pending conversation.",
            ),
        ]

    def __str__(self):
        return f"#{self.pk} {self.customer} ({self.status})"


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class DeliveryStatus(models.TextChoices):
        RECEIVED = "received", "Received"
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        OPENED = "opened", "Opened"
        CLICKED = "clicked", "Clicked"
        FAILED = "failed", "Failed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # Denormalised from the conversation: the thread view reads a customer's
    # messages across all their conversations with one index range scan.
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="messages")
    # Any channel of the registry (inbox/channels.py), which the services check on the way in.
    channel = models.CharField(max_length=10, choices=channels.choices)
    direction = models.CharField(max_length=10, choices=Direction.choices)
    subject = models.CharField(max_length=998, blank=True)
    text = models.TextField(blank=True)
    html = models.TextField(blank=True, help_text="Sanitised HTML (email only).")
    metadata = models.JSONField(default=dict, blank=True)
    external_id = models.CharField(max_length=255, null=True, blank=True)
    delivery_status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.RECEIVED)
    status_reason = models.CharField(max_length=500, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages_sent"
    )
    created_at = models.DateTimeField(default=timezone.now)
    # Subject and text, kept current by a PostgreSQL trigger (inbox migration 0004).
    search_vector = SearchVectorField(null=True, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "external_id"],
                condition=Q(external_id__isnull=False),
                name="inbox_message_unique_external_id",
                violation_error_message="This message was already stored.",
            ),
            models.CheckConstraint(
                condition=Q(direction__in=["inbound", "outbound"]), name="inbox_message_direction_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="inbox_msg_conversation_idx"),
            models.Index(fields=["customer", "-created_at", "-id"], name="inbox_msg_customer_idx"),
            # "A conversation is on a channel when any of its messages is" (docs/architecture.md):
            # the channel filter's EXISTS and the row's channel list read this index only.
            models.Index(fields=["conversation", "channel"], name="inbox_msg_conv_channel_idx"),
        ]

    def __str__(self):
        return f"{self.get_channel_display()} {self.direction} #{self.pk}"


class Note(models.Model):
    """An internal note: staff only, never sent to the customer."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="notes")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="notes")
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    search_vector = SearchVectorField(null=True, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["customer", "-created_at", "-id"], name="inbox_note_customer_idx")]
        constraints = [models.CheckConstraint(condition=~Q(body=""), name="inbox_note_body_not_empty")]

    def __str__(self):
        return f"Note #{self.pk} on conversation {self.conversation_id}"


class CannedResponse(models.Model):
    title = models.CharField(max_length=120)
    shortcut = models.SlugField(max_length=40, unique=True, help_text="Typed as /shortcut in the reply box.")
    body = models.TextField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["shortcut"]

    def __str__(self):
        return f"/{self.shortcut} — {self.title}"

    def clean(self):
        from .canned import validate_body

        try:
            validate_body(self.body)
        except ValidationError as exc:
            raise ValidationError({"body": exc.messages})


class RoutingRule(models.Model):
    name = models.CharField(max_length=120)
    order = models.PositiveIntegerField(default=100, help_text="Lower runs first.")
    active = models.BooleanField(default=True)
    conditions = models.JSONField(default=dict, blank=True)
    actions = models.JSONField(default=dict)

    class Trigger(models.TextChoices):
        CONVERSATION_CREATED = "conversation_created", "When a conversation starts"
        EVERY_MESSAGE = "every_message", "On every inbound message"

    trigger = models.CharField(max_length=24, choices=Trigger.choices, default=Trigger.CONVERSATION_CREATED)
    continue_processing = models.BooleanField(
        default=False, help_text="Evaluate later rules too when this one matches."
    )
    # Round-robin position: the id of the user this rule assigned last.
    round_robin_cursor = models.BigIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["order", "id"]
        indexes = [models.Index(fields=["active", "order"], name="inbox_rule_order_idx")]

    def __str__(self):
        return self.name

    def clean(self):
        from .routing import validate_rule

        validate_rule(self.conditions, self.actions)


class InboxEvent(models.Model):
    """Every real-time event, numbered. The id is the sequence number browsers
    use to notice a missed event and catch up (GET /api/v1/events?after=N)."""

    type = models.CharField(max_length=40)
    conversation = models.ForeignKey(Conversation, null=True, on_delete=models.CASCADE, related_name="+")
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Empty: every staff member may see it; set: only this user.",
    )
    payload = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.id} {self.type}"


class IdempotencyKey(models.Model):
    """The first answer to a POST carrying an Idempotency-Key header, kept so
    a retried request (e.g. by the load balancer) gets it again unchanged."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    # SHA-256 (hex) of the request body's bytes: the same key with another body is refused (422), not replayed.
    # Empty on keys stored before it existed (those compare method and path only, and expire within a day).
    request_hash = models.CharField(max_length=64, blank=True, default="")
    status_code = models.PositiveSmallIntegerField(null=True)
    response = models.JSONField(null=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="inbox_idempotency_unique_user_key")]


class ConversationActivity(models.Model):
    """What happened to a conversation, and who did it: one row per change, append-only.

    Written by the service that makes the change, in its transaction (the
    batch receive path too), and never pruned: analytics (response and
    resolution times, assignment and reopen counts, bot hand-offs) and the
    thread's history read it. InboxEvent, by contrast, is a pruned feed for
    browsers.
    """

    class Kind(models.TextChoices):
        RECEIVED = "received", "Message received"
        REPLIED = "replied", "Reply sent"
        STATUS_CHANGED = "status_changed", "Status changed"
        ASSIGNED = "assigned", "Assigned"
        REOPENED = "reopened", "Reopened by the customer"
        NOTE = "note", "Note added"
        BOT_HANDOFF = "bot_handoff", "Handed over by the chatbot"
        MERGED = "merged", "Customers merged"
        TAGGED = "tagged", "Tag added"
        UNTAGGED = "untagged", "Tag removed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="activity")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", help_text="The staff member; empty: the customer or the system.")
    # Status names for status changes, user ids for assignments, customer ids for a merge; empty otherwise.
    from_value = models.CharField(max_length=40, blank=True)
    to_value = models.CharField(max_length=40, blank=True)
    channel = models.CharField(max_length=10, blank=True)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]
        verbose_name_plural = "conversation activity"
        indexes = [
            models.Index(fields=["kind", "at"], name="inbox_activity_kind_at_idx"),
            models.Index(fields=["conversation", "at"], name="inbox_activity_conv_at_idx"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} on conversation {self.conversation_id} at {self.at:%Y-%m-%d %H:%M}"
