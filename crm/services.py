"""Writes for customers. Every path that meets a new email or phone comes here."""
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import identity
from .models import Customer, CustomerIdentity, CustomerNote

CUSTOMER_NOTE_MAX_CHARS = 5000


def customer_for_identity(*, kind: str, value: str, first_name: str = "", last_name: str = "",
                          preferred_channel: str | None = None) -> tuple[Customer, bool]:
    """Find the customer reachable at this email/phone, or create them.

    Returns (customer, created). Two callers racing for the same new identity
    get the same customer: the loser's insert hits the unique constraint and
    it reads the winner's row instead.
    """
    value = identity.normalize(kind, value)
    found = CustomerIdentity.objects.select_related("customer").filter(kind=kind, value=value).first()
    if found:
        return found.customer, False
    if preferred_channel is None:
        preferred_channel = identity.PREFERRED_CHANNEL[kind]
    try:
        with transaction.atomic():
            customer = Customer.objects.create(
                first_name=first_name[:100], last_name=last_name[:100], preferred_channel=preferred_channel
            )
            CustomerIdentity.objects.create(customer=customer, kind=kind, value=value, is_primary=True)
            return customer, True
    except IntegrityError:
        return CustomerIdentity.objects.select_related("customer").get(kind=kind, value=value).customer, False


def split_name(display_name: str) -> tuple[str, str]:
    parts = (display_name or "").strip().strip('"').split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1] if len(parts) > 1 else ""


def set_opt_out(*, kind: str, value: str, opted_out: bool, keyword: str = "", at=None) -> bool:
    """Mark the identity opted out of messages (STOP) or back in (START); returns whether it changed.

    An identity nobody has yet changes nothing (the inbound message that carried
    the keyword creates it first)."""
    value = identity.normalize(kind, value)
    found = CustomerIdentity.objects.filter(kind=kind, value=value)
    if opted_out:
        return bool(found.filter(opted_out_at__isnull=True).update(
            opted_out_at=at or timezone.now(), opt_out_keyword=keyword.upper()[:20]))
    return bool(found.filter(opted_out_at__isnull=False).update(opted_out_at=None, opt_out_keyword=""))
def add_customer_note(*, customer: Customer, author, body: str) -> CustomerNote:
    """A staff note about the customer (not one conversation). Staff only see it."""
    body = (body or "").strip()
    if not body:
        raise ValidationError("Write the note before saving it.")
    if len(body) > CUSTOMER_NOTE_MAX_CHARS:
        raise ValidationError(f"A customer note is at most {CUSTOMER_NOTE_MAX_CHARS:,} characters "
                              f"(this one has {len(body):,}).")
    return CustomerNote.objects.create(customer=customer, author=author, body=body)
