"""One path for every inbound email, whichever way it arrived (IMAP poll,
SendGrid Inbound Parse): parse, dedupe by Message-ID, thread, store through
inbox.services.receive_message. Never raises for bad input: what cannot be
stored as a message is kept raw as a RejectedEmail and counted."""
import html as html_lib
import logging
import re
from dataclasses import dataclass

import nh3
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from crm.identity import normalize_email
from crm.models import Channel
from inbox import services
from inbox.models import Message

from ..models import RejectedEmail, SentEmail
from . import threads
from .parser import ParsedEmail, parse_email
from .storage import save_raw, store_attachments
from .suppression import suppress

logger = logging.getLogger(__name__)

STORED, DUPLICATE, REJECTED = "stored", "duplicate", "rejected"
# A bounce or auto-reply without a readable sender still has to belong to someone.
SYSTEM_SENDER = "mailer-daemon@unknown.invalid"


@dataclass
class IngestResult:
    status: str
    message_id: str = ""
    message: Message | None = None
    flagged: bool = False
    reason: str = ""


def html_to_text(html: str) -> str:
    if not html:
        return ""
    text = nh3.clean(re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</h\d>", "\n", html), tags=set())
    text = html_lib.unescape(text)
    return re.sub(r"\n\s*\n\s*\n+", "\n\n", re.sub(r"[ \t\r\f\v]+", " ", text)).strip()


def store_email(raw: bytes, *, source: str, mailbox=None, uid=None, oversize: int | None = None) -> IngestResult:
    """Store one raw email once. oversize: the real size when only the headers were fetched."""
    return _store(raw, _parse(raw, oversize), source=source, mailbox=mailbox, uid=uid)


def store_emails(emails: list, *, source: str, mailbox=None) -> list:
    """Store several raw emails, in order, as store_email would one after the other, in far fewer queries.

    emails are (raw, uid, oversize) triples; returns one IngestResult each.
    For the IMAP poller's commit groups: one Message-ID lookup and one
    threading lookup for the group, and the ordinary mail stored through
    inbox.services.receive_many. A bounce, an auto-reply, mail without a
    usable sender, and mail that repeats or answers a Message-ID of the same
    group go through store_email's own path at their turn. Must run inside a
    transaction; a database error is raised, not absorbed (the poller then
    stores the group again one message at a time).
    """
    parsed = [_parse(raw, oversize) for raw, _, oversize in emails]
    stored = _stored_ids({p.message_id for p in parsed})
    hints = threads.find_conversations([(p.in_reply_to, p.references) for p in parsed])
    results, batch, seen = [None] * len(emails), [], set()

    def flush():
        received = services.receive_many([kwargs for _, kwargs in batch])
        for (index, kwargs), one in zip(batch, received):
            results[index] = _result(parsed[index], one)
        batch.clear()

    for index, ((raw, uid, _), email, hint) in enumerate(zip(emails, parsed, hints)):
        if email.message_id in stored:
            results[index] = IngestResult(DUPLICATE, message_id=email.message_id)
            continue
        ordinary = (not email.kind and email.message_id not in seen
                    and seen.isdisjoint(email.in_reply_to) and seen.isdisjoint(email.references))
        seen.add(email.message_id)
        sender = _usable_sender(email) if ordinary else None
        if sender is not None:
            batch.append((index, _receive_kwargs(raw, email, sender, hint, source=source, mailbox=mailbox, uid=uid)))
        else:
            flush()  # what came before is written first: this one may depend on it
            results[index] = _store(raw, email, source=source, mailbox=mailbox, uid=uid)
    flush()
    return results


def _parse(raw: bytes, oversize: int | None) -> ParsedEmail:
    parsed = parse_email(raw, max_attachment_bytes=settings.EMAIL_ATTACHMENT_MAX_BYTES)
    if oversize:
        parsed.errors.append(
            f"message is {oversize:,} bytes, over the {settings.EMAIL_MAX_MESSAGE_BYTES:,}-byte limit: "
            "only its headers were fetched; read it in the mailbox itself"
        )
    return parsed


def _stored_ids(message_ids: set) -> set:
    return set(Message.objects.filter(channel=Channel.EMAIL, external_id__in=message_ids)
               .values_list("external_id", flat=True))


def _store(raw: bytes, parsed: ParsedEmail, *, source, mailbox, uid) -> IngestResult:
    if _stored_ids({parsed.message_id}):
        return IngestResult(DUPLICATE, message_id=parsed.message_id)
    hint = threads.find_conversation(in_reply_to=parsed.in_reply_to, references=parsed.references)
    if parsed.kind == "bounce" and parsed.bounce is not None:
        outbound = apply_bounce(parsed)
        if hint is None and outbound is not None:
            hint = outbound.conversation
    sender = _usable_sender(parsed)
    if sender is None:
        if not parsed.kind:
            return reject(raw, parsed, source=source, mailbox=mailbox, uid=uid,
                          reason=f"No usable sender address (From: {parsed.from_addr or 'missing'}).")
        sender = SYSTEM_SENDER
    received = services.receive_message(**_receive_kwargs(raw, parsed, sender, hint, source=source, mailbox=mailbox,
                                                          uid=uid))
    return _result(parsed, received)


def _usable_sender(parsed: ParsedEmail) -> str | None:
    try:
        normalize_email(parsed.from_addr)
    except ValidationError:
        return None
    return parsed.from_addr


def _receive_kwargs(raw, parsed: ParsedEmail, sender, hint, *, source, mailbox, uid) -> dict:
    metadata = _metadata(parsed, source=source, mailbox=mailbox, uid=uid)
    if parsed.errors:
        metadata["parse_error"] = "; ".join(parsed.errors)[:2000]
        metadata["raw_path"] = save_raw(raw)
        logger.warning("email %s stored with a parse warning: %s", parsed.message_id, metadata["parse_error"])
    return dict(
        channel=Channel.EMAIL, sender=sender, sender_name=parsed.from_name, subject=parsed.subject,
        text=parsed.text or html_to_text(parsed.html), html=parsed.html, external_id=parsed.message_id,
        metadata=metadata, received_at=_received_at(parsed), conversation=hint, open_new=not parsed.kind,
        looked_up=True,  # by the caller, just before
    )


def _result(parsed: ParsedEmail, received) -> IngestResult:
    return IngestResult(STORED if received.created else DUPLICATE, message_id=parsed.message_id,
                        message=received.message, flagged=bool(parsed.errors))


def _received_at(parsed: ParsedEmail):
    now = timezone.now()
    if parsed.date is None or parsed.date > now:
        return now
    return parsed.date


def _metadata(parsed: ParsedEmail, *, source, mailbox, uid) -> dict:
    meta = {"source": source, "message_id": parsed.message_id}
    if parsed.message_id_missing:
        meta["message_id_missing"] = True
    if parsed.from_name:
        meta["from_name"] = parsed.from_name[:200]
    if parsed.to:
        meta["to"] = parsed.to[:50]
    if parsed.cc:
        meta["cc"] = parsed.cc[:50]
    if parsed.in_reply_to:
        meta["in_reply_to"] = parsed.in_reply_to[:5]
    if parsed.references:
        meta["references"] = parsed.references[-20:]
    if mailbox is not None:
        meta["mailbox"] = mailbox.name
    if uid is not None:
        meta["imap_uid"] = uid
    if parsed.kind:
        meta["auto"] = parsed.kind
    if parsed.bounce is not None:
        meta["bounce"] = {"original_message_ids": parsed.bounce.original_message_ids[:5],
                          "recipients": parsed.bounce.recipients[:10], "reason": parsed.bounce.reason[:300]}
    if parsed.attachments:
        meta["attachments"] = store_attachments(parsed.attachments)
    return meta


def apply_bounce(parsed: ParsedEmail) -> Message | None:
    """Mark our outbound email failed and suppress hard-bounced addresses."""
    bounce = parsed.bounce
    if bounce.permanent:
        for recipient in bounce.recipients:
            if recipient["action"] == "failed" or recipient["status"].startswith("5"):
                suppress(recipient["email"], reason="bounced", detail=bounce.reason)
    ids = bounce.original_message_ids
    if not ids:
        return None
    pks = [pk for pk in (threads.message_pk_from(i) for i in ids) if pk is not None]
    outbound = (
        Message.objects.select_related("conversation", "conversation__customer")
        .filter(channel=Channel.EMAIL, direction=Message.Direction.OUTBOUND)
        .filter(external_id__in=ids).first()
    )
    if outbound is None and pks:
        outbound = (Message.objects.select_related("conversation", "conversation__customer")
                    .filter(channel=Channel.EMAIL, direction=Message.Direction.OUTBOUND, pk__in=pks).first())
    if outbound is None:
        return None
    if bounce.permanent:
        services.update_delivery(message=outbound, status="failed", reason=f"Bounced: {bounce.reason}"[:500])
        SentEmail.objects.filter(message=outbound).update(status="bounced")
    return outbound


def reject(raw: bytes, parsed: ParsedEmail, *, source, mailbox, uid, reason: str) -> IngestResult:
    """Keep the raw email once (RejectedEmail's constraints), however often it arrives."""
    key = {"source": source, "mailbox": mailbox, "message_id": parsed.message_id[:255]}
    if not RejectedEmail.objects.filter(**key).exists():  # the common repeat: the same mail fetched again
        raw_path = save_raw(raw)  # named by its digest: the same file for every copy of this email
        try:
            with transaction.atomic():
                RejectedEmail.objects.create(**key, uid=uid, reason=reason, raw_path=raw_path, size=len(raw))
        except IntegrityError:
            logger.info("email %s was rejected by another worker at the same time; one row kept", parsed.message_id)
    logger.warning("email %s rejected: %s", parsed.message_id, reason)
    return IngestResult(REJECTED, message_id=parsed.message_id, reason=reason)
