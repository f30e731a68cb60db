"""Customers, the identities they reach us by, their bookings, leads and spend."""
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Count, Min, Q
from django.utils import timezone

from . import identity


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    CHAT = "chat", "Chat"
    CALL = "call", "Call"


class Source(models.TextChoices):
    WEBSITE = "website", "Website"
    PHONE = "phone", "Phone"
    REFERRAL = "referral", "Referral"
    YELP = "yelp", "Yelp"
    GOOGLE = "google", "Google"
    INSTAGRAM = "instagram", "Instagram"
    OTHER = "other", "Other"


class EventType(models.TextChoices):
    BIRTHDAY = "birthday", "Birthday"
    WEDDING = "wedding", "Wedding"
    CORPORATE = "corporate", "Corporate"
    HOLIDAY = "holiday", "Holiday"
    OTHER = "other", "Other"


class LostReason(models.Model):
    """Why a booking or lead was lost (not a cancellation): an editable list.

    The five defaults come from a data migration; their slugs are stable
    (analytics reads "date_unavailable" for turned-away demand), their names
    can be edited and more reasons added in the admin.
    """

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    order = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True, help_text="Inactive reasons stay on old records but are not offered.")

    DATE_UNAVAILABLE = "date_unavailable"
    DEFAULTS = [("date_unavailable", "Date unavailable"), ("price", "Price"), ("no_response", "No response"),
                ("chose_competitor", "Chose a competitor"), ("other", "Other")]

    class Meta:
        ordering = ["order", "name"]

    def __str__(self):
        return self.name


def loyalty_tier(completed_bookings: int) -> str:
    """The tier for a number of completed bookings (thresholds in settings.LOYALTY_TIERS)."""
    tier = "none"
    for name, threshold in sorted(settings.LOYALTY_TIERS.items(), key=lambda item: item[1]):
        if completed_bookings >= threshold:
            tier = name
    return tier


def loyalty_tier_names():
    return ["none", *sorted(settings.LOYALTY_TIERS, key=settings.LOYALTY_TIERS.get)]


class CustomerQuerySet(models.QuerySet):
    def with_booking_stats(self):
        """Annotate completed/previous booking counts and the next upcoming event."""
        now = timezone.now()
        return self.annotate(
            completed_bookings=Count("bookings", filter=Q(bookings__status=Booking.Status.COMPLETED), distinct=True),
            next_event_at=Min(
                "bookings__event_at",
                filter=Q(bookings__event_at__gte=now)
                & Q(bookings__status__in=[Booking.Status.INQUIRY, Booking.Status.QUOTED, Booking.Status.CONFIRMED]),
            ),
        )


class Customer(models.Model):
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    preferred_channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.EMAIL)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Kept current by a PostgreSQL trigger (crm migration 0002); unused on SQLite.
    search_vector = SearchVectorField(null=True, editable=False)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["last_name", "first_name"], name="crm_customer_name_idx")]

    def __str__(self):
        return self.name

    @property
    def name(self):
        full = f"{self.first_name} {self.last_name}".strip()
        return full or "Unknown customer"

    @property
    def loyalty_tier(self):
        count = getattr(self, "completed_bookings", None)
        if count is None:
            count = self.bookings.filter(status=Booking.Status.COMPLETED).count()
        return loyalty_tier(count)


class CustomerIdentity(models.Model):
    """One way to reach a customer: a normalised email, an E.164 phone number, or the
    digest of a website chat visitor's token (see crm/identity.py)."""

    class Kind(models.TextChoices):
        EMAIL = identity.EMAIL, "Email"
        PHONE = identity.PHONE, "Phone"
        VISITOR = identity.VISITOR, "Website chat visitor"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    value = models.CharField(max_length=254)
    is_primary = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    # The customer asked us to stop writing to this address or number (texted STOP): staff replies
    # to it are refused until they opt back in (START). Set by crm.services.set_opt_out.
    opted_out_at = models.DateTimeField(null=True, blank=True)
    opt_out_keyword = models.CharField(max_length=20, blank=True)

    class Meta:
        verbose_name_plural = "customer identities"
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "value"],
                name="crm_identity_unique_kind_value",
                violation_error_message="Another customer already has this email or phone.",
            ),
            models.CheckConstraint(condition=~Q(value=""), name="crm_identity_value_not_empty"),
            models.CheckConstraint(condition=Q(kind__in=["email", "phone", "visitor"]), name="crm_identity_kind_valid"),
        ]
        indexes = [models.Index(fields=["customer", "kind"], name="crm_identity_customer_idx")]

    def __str__(self):
        return self.value

    def clean(self):
        if self.kind not in self.Kind.values:
            return  # the field's own error already says so
        try:
            self.value = identity.normalize(self.kind, self.value)
        except ValidationError as exc:
            raise ValidationError({"value": exc.messages})

    def save(self, *args, **kwargs):
        # Normalise in code too, so no path can store "John@Example.com ".
        self.value = identity.normalize(self.kind, self.value)
        super().save(*args, **kwargs)


class Booking(models.Model):
    class Status(models.TextChoices):
        INQUIRY = "inquiry", "Inquiry"
        QUOTED = "quoted", "Quoted"
        CONFIRMED = "confirmed", "Confirmed"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        # Never confirmed: the customer went elsewhere (a reason is required).
        # A cancellation, by contrast, undoes a booking that was made.
        LOST = "lost", "Lost"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="bookings")
    event_at = models.DateTimeField("event date and time")
    guest_count = models.PositiveIntegerField()
    address = models.CharField(max_length=255, blank=True, help_text="Where the chef cooks.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.INQUIRY)
    inquiry_at = models.DateTimeField(default=timezone.now)
    quoted_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    lost_at = models.DateTimeField(null=True, blank=True)
    lost_reason = models.ForeignKey(LostReason, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    event_type = models.CharField(max_length=12, choices=EventType.choices, default=EventType.OTHER)
    location = models.CharField("location / area", max_length=80, blank=True, db_index=True,
                                help_text="The service area or city of the event, e.g. \"San Jose\".")
    total = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0"))
    deposit = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0"))
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.WEBSITE)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Analytics refreshes the days of bookings saved since its last run (analytics/refresh.py).
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-event_at"]
        constraints = [
            models.CheckConstraint(condition=Q(guest_count__gte=1), name="crm_booking_guests_positive"),
            models.CheckConstraint(condition=Q(total__gte=0), name="crm_booking_total_not_negative"),
            models.CheckConstraint(
                condition=Q(deposit__gte=0) & Q(deposit__lte=models.F("total")),
                name="crm_booking_deposit_within_total",
            ),
            models.CheckConstraint(
                condition=~Q(status="completed") | Q(completed_at__isnull=False),
                name="crm_booking_completed_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status="cancelled") | Q(cancelled_at__isnull=False),
                name="crm_booking_cancelled_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status="lost") | (Q(lost_at__isnull=False) & Q(lost_reason__isnull=False)),
                name="crm_booking_lost_has_reason",
                violation_error_message="A lost booking needs a reason.",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "status", "event_at"], name="crm_booking_customer_idx"),
            models.Index(fields=["status", "event_at"], name="crm_booking_status_idx"),
            models.Index(fields=["source", "created_at"], name="crm_booking_source_idx"),
            models.Index(fields=["confirmed_at"], name="crm_booking_confirmed_idx"),
            models.Index(fields=["inquiry_at"], name="crm_booking_inquiry_idx"),
        ]

    def __str__(self):
        return f"{self.customer} · {self.event_at:%Y-%m-%d} · {self.guest_count} guests"

    STEP_FIELDS = {
        Status.INQUIRY: "inquiry_at",
        Status.QUOTED: "quoted_at",
        Status.CONFIRMED: "confirmed_at",
        Status.COMPLETED: "completed_at",
        Status.CANCELLED: "cancelled_at",
        Status.LOST: "lost_at",
    }

    def clean(self):
        if self.status == self.Status.LOST and self.lost_reason_id is None:
            raise ValidationError({"lost_reason": "A lost booking needs a reason."})

    def save(self, *args, **kwargs):
        # Each step keeps the time it was first reached. reached_step tells
        # post_save receivers (the confirmation email) that this save got there.
        field = self.STEP_FIELDS[self.status]
        self.reached_step = None
        if getattr(self, field) is None:
            setattr(self, field, timezone.now())
            self.reached_step = self.status
        super().save(*args, **kwargs)


    @property
    def balance_due(self):
        return self.total - self.deposit


class CustomerNote(models.Model):
    """What staff know about a customer, whatever the conversation: "allergic to
    shellfish", "gate code 4411". Internal, never sent; written by crm.services."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="customer_notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["customer", "-created_at"], name="crm_customer_note_idx")]
        constraints = [models.CheckConstraint(condition=~Q(body=""), name="crm_customer_note_not_empty")]

    def __str__(self):
        return f"Note on {self.customer}"


class Lead(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New"
        CONTACTED = "contacted", "Contacted"
        QUALIFIED = "qualified", "Qualified"
        CONVERTED = "converted", "Converted"
        LOST = "lost", "Lost"

    source = models.CharField(max_length=12, choices=Source.choices)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    booking = models.OneToOneField(
        Booking, null=True, blank=True, on_delete=models.SET_NULL, related_name="lead", verbose_name="converted booking"
    )
    lost_reason = models.ForeignKey(LostReason, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["source", "created_at"], name="crm_lead_source_idx")]
        constraints = [
            models.CheckConstraint(condition=~Q(status="lost") | Q(lost_reason__isnull=False),
                                   name="crm_lead_lost_has_reason",
                                   violation_error_message="A lost lead needs a reason."),
        ]

    def clean(self):
        if self.status == self.Status.LOST and self.lost_reason_id is None:
            raise ValidationError({"lost_reason": "A lost lead needs a reason."})

    def __str__(self):
        return f"{self.get_source_display()} lead · {self.get_status_display()}"


class Payment(models.Model):
    """Money that moved for a booking: a deposit, a balance payment, or a refund.

    The amount is always positive; a refund's kind says it went out. Cash
    figures sum deposits and balances minus refunds by paid_at.
    """

    class Kind(models.TextChoices):
        DEPOSIT = "deposit", "Deposit"
        BALANCE = "balance", "Balance"
        REFUND = "refund", "Refund"

    class Method(models.TextChoices):
        CARD = "card", "Card"
        CASH = "cash", "Cash"
        CHECK = "check", "Check"
        TRANSFER = "transfer", "Bank transfer"
        OTHER = "other", "Other"

    booking = models.ForeignKey(Booking, on_delete=models.PROTECT, related_name="payments")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    paid_at = models.DateTimeField(default=timezone.now)
    method = models.CharField(max_length=10, choices=Method.choices, default=Method.CARD)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-paid_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="crm_payment_amount_positive"),
            models.CheckConstraint(condition=Q(kind__in=["deposit", "balance", "refund"]), name="crm_payment_kind_valid"),
        ]
        indexes = [
            models.Index(fields=["paid_at"], name="crm_payment_paid_at_idx"),
            models.Index(fields=["booking", "kind"], name="crm_payment_booking_idx"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.amount} · booking {self.booking_id}"

    @property
    def signed_amount(self) -> Decimal:
        return -self.amount if self.kind == self.Kind.REFUND else self.amount


class MarketingSpend(models.Model):
    source = models.CharField(max_length=12, choices=Source.choices)
    month = models.DateField(help_text="The first day of the month the spend belongs to.")
    amount = models.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        ordering = ["-month", "source"]
        constraints = [
            models.UniqueConstraint(fields=["source", "month"], name="crm_spend_unique_source_month"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="crm_spend_amount_not_negative"),
        ]

    def __str__(self):
        return f"{self.get_source_display()} {self.month:%Y-%m}: {self.amount}"

    def save(self, *args, **kwargs):
        self.month = self.month.replace(day=1)
        super().save(*args, **kwargs)
