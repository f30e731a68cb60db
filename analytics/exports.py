"""CSV rows: a metric's series or one of its tables, flattened, or per-entity rows
(one per booking, payment or response wait) streamed straight from the database."""
import csv
from datetime import date, datetime
from decimal import Decimal

from crm.models import Booking, Payment

from . import timebase
from .models import ResponseCycle


class Echo:
    def write(self, value):
        return value


def flatten(row: dict, prefix="") -> dict:
    out = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}_"))
        elif isinstance(value, list):
            out[f"{prefix}{key}"] = " ".join(str(v) for v in value)
        else:
            out[f"{prefix}{key}"] = value
    return out


def cell(value):
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(timebase.zone()).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:.2f}"  # money: the same two decimals on every database
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # text typed by people never runs as a spreadsheet formula
    return value


def _bookings(rng, field):
    qs = (Booking.objects.filter(**{f"{field}__gte": rng.since, f"{field}__lt": rng.until})
          .order_by(field, "id").values_list("id", "customer_id", "status", "source", "event_type", "location",
                                               "inquiry_at", "confirmed_at", "event_at", "guest_count", "total",
                                               "lost_reason__name"))
    yield ["booking", "customer", "status", "source", "event_type", "location", "inquiry_at", "confirmed_at",
           "event_at", "guests", "total", "lost_reason"]
    yield from qs.iterator(chunk_size=2000)


def _payments(rng):
    yield ["payment", "booking", "kind", "amount", "signed_amount", "method", "paid_at"]
    for pk, booking, kind, amount, method, at in (Payment.objects.filter(paid_at__gte=rng.since, paid_at__lt=rng.until)
                                                  .order_by("paid_at", "id")
                                                  .values_list("id", "booking_id", "kind", "amount", "method", "paid_at")
                                                  .iterator(chunk_size=2000)):
        yield [pk, booking, kind, amount, -amount if kind == Payment.Kind.REFUND else amount, method, at]


def _waits(rng, field):
    yield ["conversation", "wait", "channel", "started_at", "replied_at", "agent", "wall_seconds", "business_seconds"]
    yield from (ResponseCycle.objects.filter(**{f"{field}__gte": rng.since, f"{field}__lt": rng.until})
                .order_by(field, "id").values_list("conversation_id", "number", "channel", "started_at", "replied_at",
                                                   "agent__username", "wall_seconds", "business_seconds")
                .iterator(chunk_size=2000))


# Which entities each metric can list, and by which date they fall in the range.
ENTITIES = {
    "revenue": lambda rng, lens: _payments(rng) if lens == "cash" else _bookings(
        rng, "confirmed_at" if lens == "booked" else "event_at"),
    "bookings": lambda rng, lens: _bookings(rng, "inquiry_at"),
    "cash": lambda rng, lens: _bookings(rng, "event_at"),
    "pace": lambda rng, lens: _bookings(rng, "event_at"),
    "staff": lambda rng, lens: _waits(rng, "replied_at"),
    "inbox": lambda rng, lens: _waits(rng, "started_at"),
}


def table_rows(rows: list):
    """Header and rows of a list of (possibly nested) dicts."""
    flat = [flatten(r) for r in rows]
    header = list(dict.fromkeys(k for r in flat for k in r))
    yield header
    for r in flat:
        yield [r.get(k) for k in header]


def stream(rows):
    writer = csv.writer(Echo())
    for row in rows:
        yield writer.writerow([cell(v) for v in row])
