"""What a booking, payment or lead change leaves stale that no updated_at shows, and the hint to
open dashboards that figures changed.

The incremental refresh finds changed bookings and payments by their updated_at: it rebuilds the
revenue days they fall on now, and the booking rollups from their facts (whose old rows say which
old days, months and customers they fed). What it cannot see is marked here: a moved revenue date
or a deleted row leaves its old revenue day wrong; a deleted booking, or a payment deleted or moved
to another booking, leaves that booking's fact wrong; a lead (which has no updated_at) changes its
customer's first touch and its local day's lead figures; a merge moves bookings with a queryset
update. A booking or payment save costs no query in the common case (the loaded values are
remembered on the instance and compared after the save); a lead save marks its customer and day
(two inserts), since leads are few and have no updated_at.
"""
from django.db.models.signals import post_delete, post_init, post_save
from django.dispatch import receiver

from crm.merge import customer_merged
from crm.models import Booking, Customer, Lead, Payment
from inbox import events

from . import refresh, timebase

CHANGED = "analytics.changed"  # the dashboard reloads its figures when it hears this (static/js/analytics.js)

DATE_FIELDS = {Booking: ("confirmed_at", "event_at"), Payment: ("paid_at",)}


def _moments(instance):
    return {getattr(instance, name) for name in DATE_FIELDS[type(instance)]} - {None}


@receiver(post_init, sender=Booking)
@receiver(post_init, sender=Payment)
def remember_dates(sender, instance, **kwargs):
    instance._analytics_loaded = _moments(instance) if instance.pk else set()
    if sender is Payment:
        instance._analytics_booking = instance.booking_id if instance.pk else None


@receiver(post_save, sender=Booking)
@receiver(post_save, sender=Payment)
def mark_old_days(sender, instance, created, **kwargs):
    old = getattr(instance, "_analytics_loaded", set()) - _moments(instance)
    if old:
        refresh.mark_dirty(old)
    instance._analytics_loaded = _moments(instance)
    if sender is Payment:
        moved_from = getattr(instance, "_analytics_booking", None)
        if moved_from is not None and moved_from != instance.booking_id:
            refresh.mark_units("booking", [moved_from])
        instance._analytics_booking = instance.booking_id
    events.hint(CHANGED, {"model": sender._meta.model_name})


@receiver(post_delete, sender=Booking)
@receiver(post_delete, sender=Payment)
def mark_deleted_days(sender, instance, **kwargs):
    refresh.mark_dirty(_moments(instance))
    refresh.mark_units("booking", [instance.pk if sender is Booking else instance.booking_id])
    events.hint(CHANGED, {"model": sender._meta.model_name})


def _lead_units(instance):
    return {"customer": instance.customer_id,
            "lead_day": timebase.local_date(instance.created_at) if instance.created_at else None}


@receiver(post_init, sender=Lead)
def remember_lead(sender, instance, **kwargs):
    instance._analytics_units = _lead_units(instance) if instance.pk else {}


@receiver(post_save, sender=Lead)
@receiver(post_delete, sender=Lead)
def mark_lead_units(sender, instance, **kwargs):
    now = _lead_units(instance)
    before = getattr(instance, "_analytics_units", {})
    for kind in ("customer", "lead_day"):
        refresh.mark_units(kind, {now[kind], before.get(kind)})
    instance._analytics_units = now
    events.hint(CHANGED, {"model": "lead"})


@receiver(customer_merged, sender=Customer)
def mark_merged_customers(sender, source_id, into, **kwargs):
    refresh.mark_units("customer", [source_id, into.pk])
