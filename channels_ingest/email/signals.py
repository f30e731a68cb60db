"""Booking events that send email: the confirmation goes out once, after the
transaction that first confirmed the booking commits (admin action, API or
code — anything that saves the booking). Bulk updates and fixtures send
nothing, so seeding and imports never mail customers."""
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from crm.models import Booking


@receiver(post_save, sender=Booking, dispatch_uid="email-booking-confirmation")
def send_confirmation_when_confirmed(sender, instance, raw=False, **kwargs):
    if raw or not settings.EMAIL_BOOKING_CONFIRMATIONS:
        return
    if getattr(instance, "reached_step", None) != Booking.Status.CONFIRMED:
        return
    from .tasks import send_booking_email

    booking_id = instance.pk
    transaction.on_commit(lambda: send_booking_email.delay(booking_id, "confirmation"))
