"""The report builder: one measure, up to two dimensions, filters and a range, kept as a JSON spec.

A spec is data checked against the whitelists below, never SQL and never a field name taken from
the request: a measure is a name in MEASURES, a dimension a name in DIMENSIONS that the measure
lists, a filter a dimension with values from that dimension's allowed set. The query is built with
the ORM only (filter, values, annotate), so it runs alike on PostgreSQL and SQLite.

    {"measure": "booked_revenue",
     "dimensions": ["source", "month"],
     "filters": {"event_type": ["wedding", "corporate"]},
     "range": {"start": "2026-01-01", "end": "2026-06-30"}}     # or {"preset": "last_12_months"}

Every measure reads the same rows as the metric it comes from (analytics/metrics.py, refresh.lens_rows
for the revenue lenses, the ResponseCycle and Resolution rollups), dated in BUSINESS_TIME_ZONE.
docs/analytics.md ("Report builder") says the same in prose.
"""
from dataclasses import dataclass, field
from datetime import date, datetime, timezone as dt_timezone
from decimal import Decimal
from typing import Callable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Case, CharField, Count, F, OuterRef, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce

from crm.models import Booking, Channel, EventType, Lead, Source, loyalty_tier_names
from inbox.models import ConversationActivity
from myhibachi.ids import BadId, parse_id

from . import metrics, percentiles, refresh, timebase
from .models import Resolution, ResponseCycle, RevenueDay

MAX_DIMENSIONS = 2
MAX_CELLS = 5000
MAX_FILTER_VALUES = 50
MAX_TEXT = 80  # a location is at most 80 characters (crm.Booking.location)
SPEC_KEYS = ("measure", "dimensions", "filters", "range")
Kind = ConversationActivity.Kind


class BadSpec(ValueError):
    """The spec cannot be run; the message says why in words a manager can act on."""


class TooManyCells(BadSpec):
    pass


# --- dimensions --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dimension:
    name: str
    label: str
    # The values a filter on it may name; None: any text up to MAX_TEXT (location), or any user id (agent).
    allowed: Callable[[], list] | None = None
    filterable: bool = True


def _choices(choices):
    return lambda: list(choices.values)


DIMENSIONS = {d.name: d for d in [
    Dimension("source", "Source", _choices(Source)),
    Dimension("agent", "Agent"),
    Dimension("channel", "Channel", _choices(Channel)),
    Dimension("loyalty_tier", "Loyalty tier", loyalty_tier_names),
    Dimension("event_type", "Event type", _choices(EventType)),
    Dimension("location", "Location"),
    Dimension("month", "Month", filterable=False),
]}
EMPTY_LABELS = {"agent": "(no agent)", "channel": "(none)", "location": "(no location)", "source": "(none)",
                "event_type": "(none)"}
CHOICE_LABELS = {"source": dict(Source.choices), "channel": dict(Channel.choices),
                 "event_type": dict(EventType.choices)}


def tier_of(customer_path: str):
    """The loyalty tier today of the customer at customer_path: their completed bookings against
    settings.LOYALTY_TIERS, as crm.models.loyalty_tier decides it ("none" without a customer)."""
    tiers = sorted(settings.LOYALTY_TIERS.items(), key=lambda item: -item[1])
    completed = (Booking.objects.filter(customer=OuterRef(customer_path), status=Booking.Status.COMPLETED)
                 .order_by().values("customer").annotate(n=Count("id"))
                 .annotate(tier=Case(*[When(n__gte=threshold, then=Value(name)) for name, threshold in tiers],
                                     default=Value("none"), output_field=CharField()))
                 .values("tier"))
    return Coalesce(Subquery(completed, output_field=CharField()), Value("none"))


# --- measures ------------------------------------------------------------------------------------
BOOKING = {"source": "source", "event_type": "event_type", "location": "location", "loyalty_tier": "customer"}
PAYMENT = {name: f"booking__{path}" for name, path in BOOKING.items()}
LEAD = {"source": "source", "loyalty_tier": "customer"}
ACTIVITY = {"agent": "actor", "channel": "channel", "loyalty_tier": "conversation__customer"}
RECEIVED = {"channel": "channel", "loyalty_tier": "conversation__customer"}
ROLLUP = {"agent": "agent", "channel": "channel", "loyalty_tier": "conversation__customer"}


@dataclass(frozen=True)
class Measure:
    name: str
    label: str
    kind: str  # count | money | duration: how a value is written, and what an empty cell is
    definition: str  # one line, as docs/analytics.md has it
    rows: Callable  # () -> the queryset of source rows, before the range
    date_field: str  # the timestamp that puts a row in the range and in a month
    paths: dict  # dimension -> field path on those rows (loyalty_tier: the path to the customer)
    value: Callable | None = None  # () -> the aggregate of a cell
    percentile: tuple | None = None  # (duration field, p): a percentile_cont instead of an aggregate
    rollup: bool = False  # reads a rollup: bring it up to date first
    dimensions: tuple = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "dimensions", tuple(d for d in DIMENSIONS if d in self.paths or d == "month"))

    @property
    def empty(self):
        """A cell without rows: 0 for counts and money, None (unknown) for a duration."""
        return {"count": 0, "money": Decimal("0.00"), "duration": None}[self.kind]


def _lens(lens):
    return lambda: refresh.lens_rows(lens)[0]


def _count():
    return Count("id")


MEASURES = {m.name: m for m in [
    Measure("inquiries", "Inquiries", "count",
            "Bookings whose inquiry falls in the range, by local inquiry date (the funnel's inquiries).",
            Booking.objects.all, "inquiry_at", BOOKING, _count),
    Measure("completed_bookings", "Completed bookings", "count",
            "Completed bookings by local event date (the count of the event-date revenue lens).",
            _lens(RevenueDay.Lens.EVENT), "event_at", BOOKING, _count),
    Measure("guests", "Guests", "count",
            "Guests of completed bookings, by local event date.",
            _lens(RevenueDay.Lens.EVENT), "event_at", BOOKING, lambda: Sum("guest_count")),
    Measure("booked_revenue", "Booked revenue", "money",
            "Totals of bookings by local confirmation date, left out if later cancelled or lost.",
            _lens(RevenueDay.Lens.BOOKED), "confirmed_at", BOOKING, lambda: Sum("total")),
    Measure("event_revenue", "Event-date revenue", "money",
            "Totals of completed bookings by local event date.",
            _lens(RevenueDay.Lens.EVENT), "event_at", BOOKING, lambda: Sum("total")),
    Measure("cash_net", "Cash (net)", "money",
            "Payments by local date paid: deposits + balances − refunds; split by the booking's fields.",
            _lens(RevenueDay.Lens.CASH), "paid_at", PAYMENT, lambda: Sum(refresh.signed_amount())),
    Measure("leads", "Leads", "count",
            "Leads created in the range, by local creation date.",
            Lead.objects.all, "created_at", LEAD, _count),
    Measure("converted_leads", "Converted leads", "count",
            "Leads created in the range whose booking was completed (the leads metric's converted).",
            lambda: Lead.objects.filter(booking__status=Booking.Status.COMPLETED), "created_at", LEAD, _count),
    Measure("received", "Messages received", "count",
            "Customer messages received, by local date and the channel they came on.",
            lambda: ConversationActivity.objects.filter(kind=Kind.RECEIVED), "at", RECEIVED, _count),
    Measure("replies", "Replies", "count",
            "Replies sent by staff, by local date, agent and channel.",
            lambda: ConversationActivity.objects.filter(kind=Kind.REPLIED, actor__isnull=False), "at", ACTIVITY,
            _count),
    Measure("conversations", "Conversations handled", "count",
            "Distinct conversations staff replied in; each counts once per cell, so cells need not add up "
            "to the total.",
            lambda: ConversationActivity.objects.filter(kind=Kind.REPLIED, actor__isnull=False), "at", ACTIVITY,
            lambda: Count("conversation", distinct=True)),
    Measure("resolutions", "Resolutions", "count",
            "Status changes to resolved, by local date, the agent who resolved and the channel.",
            Resolution.objects.all, "resolved_at", ROLLUP, _count, rollup=True),
    Measure("first_response_median", "First response (median)", "duration",
            "Median wall seconds of the waits answered in the range (from the latest of conversation start, "
            "reopen and bot hand-off to the first staff reply), by the agent who answered.",
            ResponseCycle.objects.all, "replied_at", ROLLUP, percentile=("wall_seconds", 0.5), rollup=True),
    Measure("first_response_p90", "First response (90th percentile)", "duration",
            "The 90th percentile of the same waits.",
            ResponseCycle.objects.all, "replied_at", ROLLUP, percentile=("wall_seconds", 0.9), rollup=True),
    Measure("resolution_median", "Resolution time (median)", "duration",
            "Median wall seconds from conversation start or the reopen before it to each resolution in the range.",
            Resolution.objects.all, "resolved_at", ROLLUP, percentile=("wall_seconds", 0.5), rollup=True),
]}


# --- the spec ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    measure: Measure
    dimensions: tuple
    filters: tuple  # ((dimension, (value, ...)), ...) in DIMENSIONS order
    range: dict  # {"preset": name} or {"start": "YYYY-MM-DD", "end": "YYYY-MM-DD"}
    rng: timebase.Range

    def as_json(self) -> dict:
        """The normalised spec: what is saved, and what validate() reads back to the same Spec."""
        return {"measure": self.measure.name, "dimensions": list(self.dimensions),
                "filters": {name: list(values) for name, values in self.filters}, "range": dict(self.range)}


def _short(value) -> str:
    return repr(value[:40] if isinstance(value, str) else value)


def _names(items) -> str:
    return ", ".join(items)


def validate(raw, *, today: date | None = None) -> Spec:
    """The Spec a JSON value stands for, or BadSpec saying what is wrong with it. A preset range is
    resolved against today (the local date), so a saved "last 12 months" moves with the calendar."""
    if not isinstance(raw, dict):
        raise BadSpec("A report spec is a JSON object with measure, dimensions, filters and range.")
    for key in raw:
        if key not in SPEC_KEYS:
            raise BadSpec(f"Unknown key {_short(key)} in the spec; it may have: {_names(SPEC_KEYS)}.")
    measure = MEASURES.get(raw.get("measure")) if isinstance(raw.get("measure"), str) else None
    if measure is None:
        raise BadSpec(f"Unknown measure {_short(raw.get('measure'))}; choose one of: {_names(MEASURES)}.")
    dimensions = _dimensions(measure, raw.get("dimensions", []))
    filters = _filters(measure, raw.get("filters", {}))
    chosen, rng = _range(raw.get("range", {"preset": "last_12_months"}), today)
    return Spec(measure, dimensions, filters, chosen, rng)


def _dimensions(measure, raw) -> tuple:
    if not isinstance(raw, list) or not all(isinstance(d, str) for d in raw):
        raise BadSpec(f"'dimensions' must be a list of at most {MAX_DIMENSIONS} dimension names.")
    if len(raw) > MAX_DIMENSIONS:
        raise BadSpec(f"At most {MAX_DIMENSIONS} dimensions, got {len(raw)}.")
    if len(set(raw)) < len(raw):
        raise BadSpec("A dimension is given twice.")
    for name in raw:
        if name not in measure.dimensions:
            raise BadSpec(f"{measure.label} cannot be split by {_short(name)}; it can be split by: "
                          f"{_names(measure.dimensions)}.")
    return tuple(raw)


def _filters(measure, raw) -> tuple:
    if not isinstance(raw, dict):
        raise BadSpec("'filters' must be an object of dimension name to a list of values.")
    takes = [d for d in measure.dimensions if DIMENSIONS[d].filterable]
    out = {}
    for name, values in raw.items():
        if name not in takes:
            raise BadSpec(f"{measure.label} cannot be filtered by {_short(name)}; it takes filters on: "
                          f"{_names(takes)}.")
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_FILTER_VALUES:
            raise BadSpec(f"The filter on {name} must be a list of 1 to {MAX_FILTER_VALUES} values.")
        out[name] = tuple(sorted({_filter_value(name, v) for v in values}, key=str))
    return tuple((name, out[name]) for name in DIMENSIONS if name in out)


def _filter_value(name, value):
    dimension = DIMENSIONS[name]
    if name == "agent":
        try:
            return parse_id(value)
        except BadId:
            raise BadSpec(f"An agent filter names people by their user id (a whole number), not {_short(value)}.")
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise BadSpec(f"A {dimension.label.lower()} filter value is text of at most {MAX_TEXT} characters, "
                      f"not {_short(value)}.")
    if dimension.allowed is not None and value not in dimension.allowed():
        raise BadSpec(f"{_short(value)} is not a {dimension.label.lower()}; use one of: "
                      f"{_names(dimension.allowed())}.")
    return value


def _range(raw, today):
    today = today or timebase.local_date(datetime.now(dt_timezone.utc))
    if not isinstance(raw, dict):
        raise BadSpec("'range' must be {\"preset\": name} or {\"start\": \"YYYY-MM-DD\", \"end\": \"YYYY-MM-DD\"}.")
    presets = [key for key, _ in timebase.PRESETS if key != "custom"]
    if "preset" in raw:
        if set(raw) != {"preset"} or raw["preset"] not in presets:
            raise BadSpec(f"Unknown range preset {_short(raw.get('preset'))}; use one of: {_names(presets)}, "
                          "or give start and end.")
        start, end = timebase.preset_range(raw["preset"], today)
        return {"preset": raw["preset"]}, timebase.Range(start, end, "month")
    if set(raw) != {"start", "end"} or not all(isinstance(v, str) and v for v in raw.values()):
        raise BadSpec("'range' must be {\"preset\": name} or {\"start\": \"YYYY-MM-DD\", \"end\": \"YYYY-MM-DD\"}.")
    try:  # the same rules as the analytics API: YYYY-MM-DD, start <= end, at most ten years
        rng = timebase.parse_range({"start": raw["start"], "end": raw["end"], "interval": "month"}, today=today)
    except timebase.BadRange as exc:
        raise BadSpec(str(exc))
    return {"start": rng.start.isoformat(), "end": rng.end.isoformat()}, rng


# --- running it --------------------------------------------------------------------------------------
@dataclass
class Result:
    spec: Spec
    rows: list  # [{dimension: value, ..., "value": v}], months filled in, sorted
    total: object  # the measure over every row of the range and filters
    labels: dict  # {dimension: {value: label}}

    def label(self, dimension, value) -> str:
        return self.labels[dimension].get(value, str(value))

    def as_json(self) -> dict:
        m = self.spec.measure
        return {"spec": self.spec.as_json(), "measure": {"name": m.name, "label": m.label, "kind": m.kind,
                                                         "definition": m.definition},
                "start": self.spec.rng.start, "end": self.spec.rng.end, "time_zone": timebase.zone().key,
                "dimensions": list(self.spec.dimensions), "rows": self.row_dicts(), "total": self.total}

    def header(self) -> list:
        names = []
        for d in self.spec.dimensions:
            names += [d, "agent_name"] if d == "agent" else [d]
        return names + [self.spec.measure.name]

    def row_dicts(self) -> list:
        header = self.header()
        return [dict(zip(header, row)) for row in self._flat()]

    def _flat(self):
        for row in self.rows:
            out = []
            for d in self.spec.dimensions:
                out += [row[d], self.label(d, row[d])] if d == "agent" else [row[d]]
            yield out + [row["value"]]

    def csv(self):
        """Header and rows for exports.stream: the same rows as the JSON."""
        yield self.header()
        yield from self._flat()


def _key(measure, name):
    if name == "month":
        return metrics.period_of(measure.date_field, "month")
    if name == "loyalty_tier":
        return tier_of(measure.paths[name])
    return F(measure.paths[name])


def queryset(spec: Spec):
    """The measure's rows in the range and the filters, each carrying its dimension keys (d_<name>)."""
    m, rng = spec.measure, spec.rng
    qs = m.rows().filter(**{f"{m.date_field}__gte": rng.since, f"{m.date_field}__lt": rng.until})
    names = [*spec.dimensions, *(n for n, _ in spec.filters if n not in spec.dimensions)]
    if names:
        qs = qs.annotate(**{f"d_{n}": _key(m, n) for n in names})
    for name, values in spec.filters:
        qs = qs.filter(**{f"d_{name}__in": values})
    return qs.order_by()


def _finish(measure, value):
    if value is None:
        return measure.empty
    if measure.kind == "money":
        return Decimal(value).quantize(Decimal("0.01"))
    return value


def run(spec: Spec) -> Result:
    """Rows of the report: one per combination of dimension values that has rows (every month of the
    range when month is a dimension), at most MAX_CELLS, else TooManyCells."""
    m = spec.measure
    if m.rollup:
        refresh.ensure_fresh()
    qs = queryset(spec)
    keys = [f"d_{d}" for d in spec.dimensions]
    too_many = TooManyCells(f"This report has more than {MAX_CELLS:,} cells; narrow the range, add a filter "
                            "or use fewer dimensions.")
    if m.percentile:
        value_field, p = m.percentile
        total = percentiles.overall(qs, value_field, (p,))[0]
        cells = ({k: v[0] for k, v in percentiles.grouped(qs, keys, value_field, (p,)).items()} if keys
                 else {(): total})
    else:
        total = qs.aggregate(value=m.value())["value"]
        if keys:
            found = list(qs.values(*keys).annotate(value=m.value())[:MAX_CELLS + 1])
            cells = {tuple(r[k] for k in keys): r["value"] for r in found}
        else:
            cells = {(): total}
    if len(cells) > MAX_CELLS:
        raise too_many
    cells = _with_every_month(spec, cells)
    if len(cells) > MAX_CELLS:
        raise too_many
    labels = _labels(spec, cells)
    rows = [{**{d: _shown(d, key[i]) for i, d in enumerate(spec.dimensions)}, "value": _finish(m, value)}
            for key, value in cells.items()]
    rows.sort(key=lambda row: [_order(d, row[d], labels) for d in spec.dimensions])
    return Result(spec, rows, _finish(m, total),
                  {d: {_shown(d, k): v for k, v in labels[d].items()} for d in spec.dimensions})


def _with_every_month(spec, cells) -> dict:
    """Every month of the range is present when month is a dimension (empty ones as empty cells)."""
    if "month" not in spec.dimensions:
        return cells
    at = spec.dimensions.index("month")
    months = timebase.Range(spec.rng.start, spec.rng.end, "month").buckets()
    others = {key[:at] + key[at + 1:] for key in cells} or ({()} if len(spec.dimensions) == 1 else set())
    out = dict(cells)
    for other in others:
        for month in months:
            out.setdefault(other[:at] + (month,) + other[at:], None)
    return out


def _shown(dimension, value):
    """A dimension value as JSON and CSV carry it: a month as YYYY-MM."""
    if dimension == "month" and isinstance(value, date):
        return value.strftime("%Y-%m")
    return value


def _labels(spec, cells) -> dict:
    out = {}
    for i, d in enumerate(spec.dimensions):
        values = {key[i] for key in cells}
        if d == "agent":
            people = get_user_model().objects.filter(pk__in=[v for v in values if v is not None])
            names = {u.pk: u.get_full_name() or u.get_username() for u in people}
            out[d] = {v: names.get(v, EMPTY_LABELS[d]) if v is not None else EMPTY_LABELS[d] for v in values}
        elif d == "month":
            out[d] = {v: v.strftime("%b %Y") for v in values}
        elif d == "loyalty_tier":
            out[d] = {v: v.capitalize() for v in values}
        else:
            choices = CHOICE_LABELS.get(d, {})
            out[d] = {v: choices.get(v, v) if v else EMPTY_LABELS[d] for v in values}
    return out


def _order(dimension, value, labels):
    """Months in time order, tiers from none up, anything else by its label; empty values last."""
    if value in (None, ""):
        return (1, "")
    if dimension == "month":
        return (0, value)
    if dimension == "loyalty_tier":
        names = loyalty_tier_names()
        return (0, f"{names.index(value):04d}" if value in names else value)
    return (0, labels[dimension].get(value, str(value)).casefold())
