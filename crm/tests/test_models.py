from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from crm.models import Booking, Customer, MarketingSpend, loyalty_tier
from tests.factories import make_customer


@pytest.mark.parametrize("completed, tier", [(0, "none"), (1, "none"), (2, "silver"), (4, "silver"),
                                             (5, "gold"), (9, "gold"), (10, "platinum"), (50, "platinum")])
def test_loyalty_tier_follows_the_thresholds_in_settings(completed, tier):
    assert loyalty_tier(completed) == tier


def test_loyalty_tier_thresholds_can_be_changed_in_settings(settings):
    settings.LOYALTY_TIERS = {"silver": 1, "gold": 3}
    assert loyalty_tier(1) == "silver"
    assert loyalty_tier(3) == "gold"


def _booking(customer, status="completed", **extra):
    event = timezone.now() - timedelta(days=10)
    return Booking.objects.create(customer=customer, event_at=event, guest_count=10, status=status,
                                  total=Decimal("600"), deposit=Decimal("100"), **extra)


def test_customer_tier_counts_only_completed_bookings(db):
    customer = make_customer()
    for _ in range(5):
        _booking(customer)
    _booking(customer, status="cancelled")
    assert Customer.objects.with_booking_stats().get(pk=customer.pk).loyalty_tier == "gold"
    assert customer.loyalty_tier == "gold"


def test_booking_step_times_are_kept(db):
    booking = _booking(make_customer(), status="quoted")
    assert booking.quoted_at is not None and booking.completed_at is None
    booking.status = "completed"
    booking.save()
    assert booking.completed_at is not None


@pytest.mark.parametrize("field, value", [("guest_count", 0), ("total", Decimal("-1")), ("deposit", Decimal("700"))])
def test_booking_constraints_live_in_the_database(db, field, value):
    booking = _booking(make_customer())
    with pytest.raises(IntegrityError), transaction.atomic():
        Booking.objects.filter(pk=booking.pk).update(**{field: value})


def test_marketing_spend_is_one_row_per_source_and_month(db):
    MarketingSpend.objects.create(source="yelp", month=timezone.now().date(), amount=Decimal("100"))
    with pytest.raises(IntegrityError), transaction.atomic():
        MarketingSpend.objects.create(source="yelp", month=timezone.now().date().replace(day=1), amount=Decimal("5"))


def test_the_five_default_lost_reasons_exist_after_migrating(db):
    from crm.models import LostReason

    assert list(LostReason.objects.values_list("slug", flat=True)) == [
        "date_unavailable", "price", "no_response", "chose_competitor", "other"]


def test_a_booking_or_lead_marked_lost_needs_a_reason(db):
    from django.core.exceptions import ValidationError

    from crm.models import Lead, LostReason

    customer = make_customer()
    booking = Booking(customer=customer, event_at=timezone.now(), guest_count=10, status="lost", total=600)
    with pytest.raises(ValidationError, match="needs a reason"):
        booking.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        booking.save()
    with pytest.raises(IntegrityError), transaction.atomic():
        Lead.objects.create(source="yelp", status="lost")
    price = LostReason.objects.get(slug="price")
    booking.lost_reason = price
    booking.save()
    assert booking.lost_at is not None and booking.cancelled_at is None  # lost is not a cancellation
    assert Lead.objects.create(source="yelp", status="lost", lost_reason=price).lost_reason == price


def test_payments_are_positive_and_a_refund_counts_against_cash(db):
    from crm.models import Payment

    booking = _booking(make_customer())
    refund = Payment.objects.create(booking=booking, kind="refund", amount=Decimal("40"))
    assert refund.signed_amount == Decimal("-40")
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.create(booking=booking, kind="deposit", amount=Decimal("-5"))
