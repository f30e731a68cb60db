"""Rollups the analytics read instead of the raw tables (see docs/analytics.md).

Each is rebuilt, never patched: a unit (a local day of revenue, a
conversation's response cycles) is deleted and recomputed from the source
rows inside one transaction, so a refresh run twice gives the same rows.
analytics/refresh.py is their only writer.
"""
from django.conf import settings
from django.db import models


class RevenueDay(models.Model):
    """One lens's bookings and money for a local day (BUSINESS_TIME_ZONE): three rows a day at most.

    booked: bookings confirmed that day that are not cancelled, by total.
    event:  completed bookings whose event falls on that day, by total.
    cash:   payments made that day, deposits and balances minus refunds.
    (No slices: by source, event type and location the day held about one row per booking at the
    issue's scale; the report builder splits the same source rows itself, refresh.lens_rows.)
    """

    class Lens(models.TextChoices):
        BOOKED = "booked", "Booked (by confirmation date)"
        EVENT = "event", "Event date (completed bookings)"
        CASH = "cash", "Cash (payments, net of refunds)"

    day = models.DateField()
    lens = models.CharField(max_length=8, choices=Lens.choices)
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
    bucket = models.SmallIntegerField(null=True, help_text="The value bucket of wall_seconds (analytics/narrowing.py).")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["conversation", "number"], name="analytics_cycle_unique")]
        # Covering (PostgreSQL): a range's durations are read from the index alone.
        indexes = [models.Index(fields=["replied_at"], name="analytics_cycle_replied_cov",
                                include=["agent", "channel", "wall_seconds", "business_seconds"]),
                   models.Index(fields=["started_at"], name="analytics_cycle_started_idx"),
                   models.Index(fields=["agent", "replied_at"], name="analytics_cycle_agent_cov",
                                include=["wall_seconds", "business_seconds"]),
                   # One value bucket's waits of a range, overall and per agent (analytics/narrowing.py).
                   models.Index(fields=["bucket", "replied_at"], name="analytics_cycle_bucket_cov",
                                include=["wall_seconds"]),
                   models.Index(fields=["agent", "bucket", "replied_at"], name="analytics_cycle_agent_bucket",
                                include=["wall_seconds"])]


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
    bucket = models.SmallIntegerField(null=True, help_text="The value bucket of wall_seconds (analytics/narrowing.py).")

    class Meta:
        indexes = [models.Index(fields=["resolved_at"], name="analytics_resolution_at_cov",
                                include=["agent", "wall_seconds", "business_seconds"]),
                   # Per agent, each agent's range read alone (percentiles.by_key): no sort by agent.
                   models.Index(fields=["agent", "resolved_at"], name="analytics_resolution_agent_cov",
                                include=["wall_seconds", "business_seconds"]),
                   models.Index(fields=["conversation"], name="analytics_resolution_conv_idx"),
                   models.Index(fields=["agent", "bucket", "resolved_at"], name="analytics_resolution_bucket",
                                include=["wall_seconds"])]


class BookingFact(models.Model):
    """One row per booking: what every booking figure needs, local dates made once (analytics/rollups.py).

    paid_in: deposits + balances; refunded: refunds; off_at: the earlier of cancelled_at and lost_at.
    first_touch: the source of the customer's earliest lead ("" without one). date_unavailable: lost
    to "date unavailable". Page loads read the day rollups below, and this table only through an
    index for one local day (cash today, pace since midnight) and the order-value median.
    """

    booking = models.OneToOneField("crm.Booking", primary_key=True, on_delete=models.DO_NOTHING,
                                   db_constraint=False, related_name="analytics_fact")
    customer_id = models.BigIntegerField()
    status = models.CharField(max_length=12)
    source = models.CharField(max_length=12)
    first_touch = models.CharField(max_length=12, blank=True)
    lost_reason_id = models.BigIntegerField(null=True)
    date_unavailable = models.BooleanField()
    quoted = models.BooleanField()
    confirmed = models.BooleanField()
    guests = models.PositiveIntegerField()
    total = models.DecimalField(max_digits=12, decimal_places=2)
    paid_in = models.DecimalField(max_digits=14, decimal_places=2)
    refunded = models.DecimalField(max_digits=14, decimal_places=2)
    inquiry_day = models.DateField()
    event_at = models.DateTimeField()
    event_day = models.DateField()
    event_month = models.DateField()
    confirmed_at = models.DateTimeField(null=True)
    confirmed_day = models.DateField(null=True)
    off_at = models.DateTimeField(null=True)
    off_day = models.DateField(null=True)

    class Meta:
        indexes = [models.Index(fields=["inquiry_day", "status", "total"], name="analytics_bf_inquiry_idx"),
                   models.Index(fields=["event_day"], name="analytics_bf_event_idx"),
                   models.Index(fields=["event_month"], name="analytics_bf_month_idx"),
                   # A customer's bookings, and "did they confirm one within N days" (inbox conversion).
                   models.Index(fields=["customer_id", "confirmed_at"], name="analytics_bf_customer_conf_idx"),
                   models.Index(fields=["confirmed_at"], name="analytics_bf_confirmed_idx"),
                   models.Index(fields=["off_at"], name="analytics_bf_off_idx")]


class FunnelCounts(models.Model):
    """What FunnelDay and FunnelMonth count, by one slice (dim, key):

    dim "source" (key: the booking's source) and "first_touch" (key: the first lead's source, "" none):
        inquiries, quoted, confirmed, completed, lost, cancelled; of the completed, guests and value.
    dim "reason" (key: the lost reason's id): inquiries = bookings lost for that reason.
    dim "turned" (key: the local event date): inquiries = bookings lost to "date unavailable".
    """

    dim = models.CharField(max_length=12)
    key = models.CharField(max_length=12, blank=True)
    inquiries = models.PositiveIntegerField(db_default=0)
    quoted = models.PositiveIntegerField(db_default=0)
    confirmed = models.PositiveIntegerField(db_default=0)
    completed = models.PositiveIntegerField(db_default=0)
    lost = models.PositiveIntegerField(db_default=0)
    cancelled = models.PositiveIntegerField(db_default=0)
    guests = models.PositiveIntegerField(db_default=0)
    value = models.DecimalField(max_digits=14, decimal_places=2, db_default=0)

    COUNTS = ("inquiries", "quoted", "confirmed", "completed", "lost", "cancelled", "guests", "value")

    class Meta:
        abstract = True


class FunnelDay(FunnelCounts):
    """Bookings by local inquiry day and one slice (FunnelCounts)."""

    day = models.DateField()

    class Meta:
        indexes = [models.Index(fields=["day", "dim"], name="analytics_funnel_day_idx")]


class FunnelMonth(FunnelCounts):
    """FunnelDay added up by local inquiry month (its first day): a range's whole months read these
    (rollups.months_and_days)."""

    month = models.DateField(help_text="The first local day of the month.")

    class Meta:
        indexes = [models.Index(fields=["month", "dim"], name="analytics_funnel_month_idx")]


class CashDay(models.Model):
    """Bookings by local event day and status (inquiry, quoted, confirmed, completed): count, totals,
    paid_net (deposits + balances - refunds), due (the sum of total - deposits - balances where
    positive) and due_count (bookings with something due)."""

    day = models.DateField()
    status = models.CharField(max_length=12)
    count = models.PositiveIntegerField()
    total = models.DecimalField(max_digits=14, decimal_places=2)
    paid_net = models.DecimalField(max_digits=14, decimal_places=2)
    due = models.DecimalField(max_digits=14, decimal_places=2)
    due_count = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["day"], name="analytics_cash_day_idx")]


class PaceDay(models.Model):
    """A ledger of what is on the books for an event month: on the local day a booking was confirmed
    its count and total are added, on the day it was cancelled or lost (after confirming) taken off.
    On the books for month M at the start of day D: the sum of M's rows before D."""

    month = models.DateField()
    day = models.DateField()
    count = models.IntegerField()
    amount = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        indexes = [models.Index(fields=["month", "day"], name="analytics_pace_idx")]


class CustomerFact(models.Model):
    """One row per customer with a completed booking: first and second completed event (local dates,
    in event order), repeat_months (the fewest months N with the second within N months of the
    first), days_to_second, completed count, ltv (completed totals minus every refund to the
    customer) and the local date of the latest live booking (not lost or cancelled)."""

    customer_id = models.BigIntegerField(primary_key=True)
    first_day = models.DateField()
    first_month = models.DateField()
    second_day = models.DateField(null=True)
    repeat_months = models.PositiveIntegerField(null=True)
    days_to_second = models.PositiveIntegerField(null=True)
    completed = models.PositiveIntegerField()
    ltv = models.DecimalField(max_digits=14, decimal_places=2)
    last_live_day = models.DateField()

    class Meta:
        indexes = [models.Index(fields=["first_day"], name="analytics_cf_first_cov",
                                include=["first_month", "ltv", "repeat_months", "days_to_second"]),
                   # Churn counts the customers last live before a cut-off day: by that day first, so the
                   # count reads only them (the first day only bounds them; with it first, a range over
                   # nearly every customer was read).
                   models.Index(fields=["last_live_day", "first_day"], name="analytics_cf_lapsed_idx")]


class CohortMonth(models.Model):
    """A cohort's figures (customers whose first completed event fell in this local month): how many,
    their lifetime value summed and its median (percentile_cont, as the facts give it), and how many
    had another completed event within 6, 12 and 24 months. A range's whole months read these; its
    other days are summed from CustomerFact (metrics.customers). The refresh computes a month again
    whenever a member's facts change."""

    first_month = models.DateField(unique=True)
    customers = models.PositiveIntegerField()
    ltv_sum = models.DecimalField(max_digits=16, decimal_places=2)
    ltv_median = models.FloatField(null=True)
    repeat_6 = models.PositiveIntegerField()
    repeat_12 = models.PositiveIntegerField()
    repeat_24 = models.PositiveIntegerField()


class CustomerDay(models.Model):
    """Completed events on a local day, and how many of them were a customer's first (new)."""

    day = models.DateField()
    completed = models.PositiveIntegerField()
    new = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["day"], name="analytics_custday_idx")]


class LeadDay(models.Model):
    """Leads by local creation day and source: leads; converted (their booking completed) and the
    converted bookings' totals net of their refunds (revenue). lost_reason_id is set on rows of
    leads lost without a booking (one row per reason), empty otherwise."""

    day = models.DateField()
    source = models.CharField(max_length=12)
    lost_reason_id = models.BigIntegerField(null=True)
    leads = models.PositiveIntegerField()
    converted = models.PositiveIntegerField()
    revenue = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        indexes = [models.Index(fields=["day"], name="analytics_leadday_idx")]


class ActivityCounts(models.Model):
    """What ActivityDay and ActivityMonth count: a kind of history row, by agent, channel or hour."""

    kind = models.CharField(max_length=20)
    agent = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.DO_NOTHING,
                              db_constraint=False, related_name="+")
    channel = models.CharField(max_length=10, blank=True)
    hour = models.PositiveSmallIntegerField(null=True)
    count = models.PositiveIntegerField()

    COUNTS = ("count",)

    class Meta:
        abstract = True


class ActivityDay(ActivityCounts):
    """History rows by local day: kind "received" by channel and "received_hour" by local hour (customer
    messages), "replied" and "note" by agent (rows with an actor), and "first_reply" by agent (the
    conversations the agent replied in that day and not on an earlier one: ReplyDay rows without a
    previous day). Staff counts and inbox volume read these."""

    day = models.DateField()

    class Meta:
        # Covering (PostgreSQL): a range's counts are read from the index alone (staff, inbox).
        indexes = [models.Index(fields=["kind", "day"], name="analytics_actday_idx",
                                include=["agent", "channel", "hour", "count"])]


class ActivityMonth(ActivityCounts):
    """ActivityDay added up by local month (the first day of it), the same kinds, agents, channels and
    hours: a range's whole months read these, a dozen rows per agent and kind a year instead of a
    row per day (rollups.months_and_days)."""

    month = models.DateField(help_text="The first local day of the month.")

    class Meta:
        indexes = [models.Index(fields=["kind", "month"], name="analytics_actmonth_idx",
                                include=["agent", "channel", "hour", "count"])]


class ReplyDay(models.Model):
    """Each local day an agent replied in a conversation, with the agent's previous such day in that
    conversation (prev_day): the conversations an agent handled in a range are the rows in it whose
    prev_day is empty (summed per day as ActivityDay "first_reply") or before the range (a partial
    index holds only the rows with a previous day), so no distinct count runs over the history."""

    day = models.DateField()
    agent = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, db_constraint=False,
                              related_name="+")
    conversation = models.ForeignKey("inbox.Conversation", on_delete=models.DO_NOTHING, db_constraint=False,
                                     related_name="+")
    prev_day = models.DateField(null=True)

    class Meta:
        # Covering: the resumed conversations of a range are counted from the index alone.
        indexes = [models.Index(fields=["day"], condition=models.Q(prev_day__isnull=False),
                                include=["prev_day", "agent"], name="analytics_replyday_resumed_idx"),
                   # The first replies of some days (ActivityDay "first_reply", rebuilt per day).
                   models.Index(fields=["day"], condition=models.Q(prev_day__isnull=True),
                                name="analytics_replyday_first_idx"),
                   models.Index(fields=["conversation"], name="analytics_replyday_conv_idx")]


class CycleDay(models.Model):
    """Waits for a first response by local day: how many started and how many were answered that day
    (the backlog at a local midnight is the sum of started - answered before it), and the first
    waits of conversations started that day by how soon they were answered (speed: 5m, 1h, 4h, 24h,
    later, unanswered) with how many of their customers confirmed a booking within
    ANALYTICS_CONVERSION_WINDOW_DAYS (booked)."""

    day = models.DateField()
    started = models.PositiveIntegerField(db_default=0)
    answered = models.PositiveIntegerField(db_default=0)
    speed = models.CharField(max_length=12, blank=True, db_default="")
    conversations = models.PositiveIntegerField(db_default=0)
    booked = models.PositiveIntegerField(db_default=0)

    class Meta:
        indexes = [models.Index(fields=["day"], name="analytics_cycleday_idx")]


class DurationMonth(models.Model):
    """How many waits (measure "wait": ResponseCycle by replied_at) or resolutions ("resolution":
    Resolution by resolved_at) of an agent fell in a local month and a value bucket of their wall
    seconds. A range's whole months add these up to find the bucket that holds each percentile's rank
    (analytics/narrowing.py); only that bucket's rows are then read and sorted. Rows without a bucket
    (written by code from before buckets) are counted under bucket -1, and send a range to the sort."""

    measure = models.CharField(max_length=10)
    month = models.DateField(help_text="The first local day of the month.")
    agent = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    bucket = models.SmallIntegerField()
    count = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["measure", "month"], name="analytics_durmonth_idx",
                                include=["agent", "bucket", "count"])]


class DirtyUnit(models.Model):
    """Something to rebuild at the next refresh that no updated_at shows: a booking (deleted, or a
    payment of it deleted or moved), a customer (merged, or a lead of theirs changed: first touch)
    or a local day of leads."""

    kind = models.CharField(max_length=12)
    key = models.CharField(max_length=40)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "key"], name="analytics_dirty_unit_unique")]


class DirtyDay(models.Model):
    """A local day whose revenue must be rebuilt (a booking or payment changed)."""

    day = models.DateField(unique=True)


class RefreshState(models.Model):
    """Fill state of a rollup: how far it has read (the last history row id) and when it ran."""

    name = models.CharField(max_length=40, unique=True)
    last_id = models.BigIntegerField(default=0)
    refreshed_at = models.DateTimeField(null=True)
    full_refreshed_at = models.DateTimeField(null=True)
    # A new random number each time a refresh writes this part's rollups, in the same transaction
    # (0: never written). The dashboard caches figures under it (analytics/figure_cache.py).
    generation = models.BigIntegerField(default=0)


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
