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
from django.utils import timezone

from crm.identity import fold_email, normalize_email
from crm.models import Channel
from inbox import services
from inbox.models import Message

from ..base import count
from .models import SentEmail
from . import services as email_services, threads
from .parser import ParsedEmail, parse_email
from .storage import save_raw, store_attachments

logger = logging.getLogger(__name__)

STORED, DUPLICATE, REJECTED = "stored", "duplicate", "rejected"
# A bounce or auto-reply without a readable sender still has to belong to someone.
SYSTEM_SENDER = "mailer-daemon@unknown.invalid"

# Where delivery reports refused as not about our mail are counted (manage.py channel_counts).
BOUNCE_SOURCE = "email-bounces"


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
    hints = threads.find_conversations([(p.in_reply_to, p.references, p.from_addr) for p in parsed])
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
    hint = threads.find_conversation(in_reply_to=parsed.in_reply_to, references=parsed.references,
                                     sender=parsed.from_addr)
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
    """Act on a delivery-status report only when it is about an email we sent; returns that email.

    The report must name one of our own Message-IDs (HMAC-signed, so nobody can make one up) and
    that id must match the stored outbound message. Then only the address that message went to is
    suppressed, and only if the report says that address failed permanently; the message is marked
    failed. A report naming nothing of ours changes nothing (anyone can write one, naming anyone):
    it is stored for staff to read like any other email, and counted.
    """
    bounce = parsed.bounce
    outbound = _our_outbound(bounce.original_message_ids)
    if outbound is None:
        count(BOUNCE_SOURCE, "not_ours")
        logger.warning("delivery report %s names no email we sent (%s): nothing suppressed or changed",
                       parsed.message_id, ", ".join(bounce.original_message_ids[:5]) or "no Message-ID")
        return None
    if not bounce.permanent:
        return outbound
    to = _sent_to(outbound)
    failed = [r for r in bounce.recipients if to and fold_email(r["email"]) == to
              and (r["action"] == "failed" or r["status"].startswith("5"))]
    if bounce.recipients and not failed:
        count(BOUNCE_SOURCE, "other_recipients")
        logger.warning("delivery report %s is about our message %s but not about its recipient %s: ignored",
                       parsed.message_id, outbound.pk, to or "(unknown)")
        return outbound
    reason = bounce.reason
    if failed:
        reason = " ".join(filter(None, [failed[0]["status"], failed[0]["diagnostic"]])) or reason
        email_services.suppress(to, reason="bounced", detail=reason)
    services.update_delivery(message=outbound, status="failed", reason=f"Bounced: {reason}"[:500])
    email_services.set_sent_status(message=outbound, status="bounced")
    return outbound


def _our_outbound(ids: list) -> Message | None:
    """The outbound email named by the first of these Message-IDs that is ours (HMAC verified) and stored."""
    named = {}  # message pk -> (our Message-ID, conversation id), first id first
    for message_id in ids[:20]:
        pk, conversation_id = threads.message_pk_from(message_id), threads.conversation_id_from(message_id)
        if pk is not None and conversation_id is not None:
            named.setdefault(pk, (message_id, conversation_id))
    if not named:
        return None
    found = (Message.objects.select_related("conversation", "conversation__customer")
             .filter(channel=Channel.EMAIL, direction=Message.Direction.OUTBOUND, pk__in=named).in_bulk())
    for pk, (message_id, conversation_id) in named.items():
        message = found.get(pk)
        if message is not None and (message.external_id == message_id or message.conversation_id == conversation_id):
            return message
    return None


def _sent_to(outbound: Message) -> str:
    """The address this outbound email was sent to, folded."""
    to = (SentEmail.objects.filter(message=outbound).values_list("to", flat=True).first()
          or (outbound.metadata or {}).get("to") or "")
    return fold_email(to)


def reject(raw: bytes, parsed: ParsedEmail, *, source, mailbox, uid, reason: str) -> IngestResult:
    """Keep the raw email once (RejectedEmail's constraints), however often it arrives."""
    email_services.keep_rejected(raw, source=source, mailbox=mailbox, uid=uid, message_id=parsed.message_id,
                                 reason=reason)
    logger.warning("email %s rejected: %s", parsed.message_id, reason)
    return IngestResult(REJECTED, message_id=parsed.message_id, reason=reason)
