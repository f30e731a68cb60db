"""Every write of the email channel's own records, and the reads the senders share.

- the do-not-email list: ``suppress``, ``suppression_for``, ``suppressed_among``;
- mail we could not store: ``keep_rejected``;
- mail we sent: ``record_reply``, ``claim_booking_email`` / ``finish_booking_email`` /
  ``release_booking_email``, ``set_sent_status``; ``record_sent_history`` for mail sent
  before (the demo data of manage.py seed_demo).

Campaign figures are written by campaigns.py, a mailbox's poll state by imap.py
and locks.py, tracking records by tracking.py; nothing else writes these models.
"""
import logging

from django.db import IntegrityError, transaction

from crm.identity import fold_email

from .models import RejectedEmail, SentEmail, Suppression
from .storage import save_raw

logger = logging.getLogger(__name__)

# What stops booking mail (confirmations, reminders); an unsubscribe from campaigns does not.
HARD_REASONS = (Suppression.Reason.BOUNCED, Suppression.Reason.COMPLAINED)


# --- the do-not-email list ---------------------------------------------------------

def suppress(email: str, *, reason: str, detail: str = "") -> bool:
    """Record the address once; returns whether it is new. The first reason is kept."""
    email = fold_email(email)
    if not email or "@" not in email:
        return False
    try:
        with transaction.atomic():
            Suppression.objects.create(email=email, reason=reason, detail=detail[:500])
    except IntegrityError:
        return False
    logger.info("suppressed %s (%s)", email, reason)
    return True


def suppression_for(email: str, *, reasons=None) -> Suppression | None:
    """The address's entry on the list (only for these reasons, when given), or None."""
    found = Suppression.objects.filter(email=fold_email(email))
    if reasons is not None:
        found = found.filter(reason__in=reasons)
    return found.first()


def suppressed_among(emails) -> set:
    """Which of these addresses (folded) are on the list."""
    return set(Suppression.objects.filter(email__in=[fold_email(e) for e in emails])
               .values_list("email", flat=True))


# --- mail we could not store ---------------------------------------------------------

def keep_rejected(raw: bytes, *, source: str, mailbox, uid, message_id: str, reason: str) -> None:
    """Keep the raw email once (RejectedEmail's constraints), however often it arrives."""
    key = {"source": source, "mailbox": mailbox, "message_id": message_id[:255]}
    if RejectedEmail.objects.filter(**key).exists():  # the common repeat: the same mail fetched again
        return
    raw_path = save_raw(raw)  # named by its digest: the same file for every copy of this email
    try:
        with transaction.atomic():
            RejectedEmail.objects.create(**key, uid=uid, reason=reason, raw_path=raw_path, size=len(raw))
    except IntegrityError:
        logger.info("email %s was rejected by another worker at the same time; one row kept", message_id)


# --- mail we sent ------------------------------------------------------------------------

def record_reply(message, *, to: str, message_id_header: str, esp_message_id, provider_message_id: str) -> None:
    """What became of a staff reply at SendGrid (one record per reply, updated on a resend)."""
    SentEmail.objects.update_or_create(
        message=message, kind=SentEmail.Kind.REPLY,
        defaults={"to": to, "message_id_header": message_id_header, "esp_message_id": esp_message_id,
                  "provider_message_id": provider_message_id},
    )


def claim_booking_email(*, kind: str, booking, to: str) -> SentEmail | None:
    """The record of this booking's mail of this kind, made now; None if it was sent (or is being sent)."""
    try:
        with transaction.atomic():
            return SentEmail.objects.create(kind=kind, booking=booking, to=to, status="sending")
    except IntegrityError:
        return None


def finish_booking_email(record: SentEmail, *, status: str, esp_message_id=None, provider_message_id="") -> None:
    record.status = status
    fields = ["status"]
    if esp_message_id is not None or provider_message_id:
        record.esp_message_id, record.provider_message_id = esp_message_id, provider_message_id
        fields += ["esp_message_id", "provider_message_id"]
    record.save(update_fields=fields)


def release_booking_email(record: SentEmail) -> None:
    """Give the claim back, so a retry of the send can take it again."""
    record.delete()


def record_sent_history(records: list, *, batch_size: int = 1000) -> list:
    """Store records of mail that was sent before, as given (their sending time and status
    included), in bulk; returns them with their ids. Nothing is sent or checked: the caller
    made the records (the demo data of manage.py seed_demo)."""
    return SentEmail.objects.bulk_create(records, batch_size=batch_size)


def set_sent_status(*, message=None, sent: SentEmail | None = None, status: str) -> None:
    """What SendGrid or a bounce report says of a sent email (by its inbox message or its record)."""
    records = SentEmail.objects.filter(pk=sent.pk) if sent is not None else SentEmail.objects.filter(message=message)
    records.update(status=status)
