"""Which revenue days a booking or payment change leaves stale that its new values do not name,
and the hint to open dashboards that figures changed.

The incremental refresh finds changed rows by their updated_at and rebuilds
the days they fall on now; a moved date (or a deleted row) also leaves its
old day wrong, so that day is marked here. No query in the common case: the
loaded values are remembered on the instance and compared after the save.
"""
from django.db.models.signals import post_delete, post_init, post_save
from django.dispatch import receiver

from crm.models import Booking, Payment
from inbox import events

from . import refresh

CHANGED = "analytics.changed"  # the dashboard reloads its figures when it hears this (static/js/analytics.js)

DATE_FIELDS = {Booking: ("confirmed_at", "event_at"), Payment: ("paid_at",)}


def _moments(instance):
    return {getattr(instance, name) for name in DATE_FIELDS[type(instance)]} - {None}


@receiver(post_init, sender=Booking)
@receiver(post_init, sender=Payment)
def remember_dates(sender, instance, **kwargs):
    instance._analytics_loaded = _moments(instance) if instance.pk else set()


@receiver(post_save, sender=Booking)
@receiver(post_save, sender=Payment)
def mark_old_days(sender, instance, created, **kwargs):
    old = getattr(instance, "_analytics_loaded", set()) - _moments(instance)
    if old:
        refresh.mark_dirty(old)
    instance._analytics_loaded = _moments(instance)
    events.hint(CHANGED, {"model": sender._meta.model_name})


@receiver(post_delete, sender=Booking)
@receiver(post_delete, sender=Payment)
def mark_deleted_days(sender, instance, **kwargs):
    refresh.mark_dirty(_moments(instance))
    events.hint(CHANGED, {"model": sender._meta.model_name})
