"""Hand-built data for the analytics tests: local times in America/Los_Angeles."""
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from crm.models import Booking, LostReason, Payment

LA = ZoneInfo("America/Los_Angeles")


def local(*parts):
    """An aware instant from a local wall time in Los Angeles."""
    return datetime(*parts, tzinfo=LA)


def booking(customer, *, status, event_at, total, inquiry_at=None, quoted_at=None, confirmed_at=None,
            cancelled_at=None, completed_at=None, lost=None, guests=10, source="website", **extra):
    b = Booking(customer=customer, status=status, event_at=event_at, total=Decimal(total), guest_count=guests,
                inquiry_at=inquiry_at or event_at, quoted_at=quoted_at, confirmed_at=confirmed_at,
                cancelled_at=cancelled_at, completed_at=completed_at or (event_at if status == "completed" else None),
                source=source, **extra)
    if lost:
        b.lost_reason = LostReason.objects.get(slug=lost)
        b.lost_at = inquiry_at or event_at
    b.save()
    return b


def pay(b, kind, amount, at):
    return Payment.objects.create(booking=b, kind=kind, amount=Decimal(amount), paid_at=at)
