"""RingCentral records (message-store, call log) turned into the adapter base's events,
and what follows once they are stored: STOP/START, MMS and recording downloads, "call back".

Both inbound paths (the webhook and the syncs) go through ``ingest()``, so a
message is stored once whichever path brings it first: the dedupe key is the
RingCentral id (Message.external_id, unique per channel).
"""
import logging
import re
from datetime import datetime

from django.db import transaction
from django.utils.dateparse import parse_datetime

from crm import identity
from crm.services import set_opt_out
from inbox import services
from inbox.models import Message

from ..base import BadPayload, DeliveryReport, InboundMessage, Outcome, dispatch

logger = logging.getLogger(__name__)

# Carrier keywords (CTIA): the whole text, any case, trailing punctuation ignored.
OPT_OUT_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
OPT_IN_WORDS = {"START", "UNSTOP"}
# RingCentral messageStatus -> our delivery status (Queued is where our "sent" already is).
DELIVERY = {"Sent": "sent", "Delivered": "delivered", "DeliveryFailed": "failed", "SendingFailed": "failed"}
# Call results that need someone to call back.
CALL_BACK_RESULTS = {"Missed", "Voicemail", "Hang Up", "Abandoned"}


def keyword(text: str) -> str:
    word = re.sub(r"[\s.!]+$", "", (text or "").strip()).upper()
    return word if word in OPT_OUT_WORDS | OPT_IN_WORDS else ""


def _when(value) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) else None


def _number(party) -> tuple[str, bool]:
    """(our stored form of the party's number, whether it could not be read)."""
    raw = ""
    if isinstance(party, dict):
        raw = str(party.get("phoneNumber") or party.get("extensionNumber") or party.get("name") or "")
    raw = raw.strip() or "unknown"
    return identity.phone_or_unparsed(raw)


def message_events(record) -> list:
    """One message-store record (a webhook body, a sync or list record) as events."""
    if not isinstance(record, dict) or record.get("id") in (None, ""):
        raise BadPayload("a message record needs an id")
    if record.get("type", "SMS") != "SMS":
        return []  # voicemail and fax come through the call log; Pager is staff-to-staff
    external_id = str(record["id"])[:255]
    if record.get("direction") == "Outbound":
        status = DELIVERY.get(record.get("messageStatus", ""))
        if status is None:
            return []
        reason = ""
        if status == "failed":
            code = record.get("errorCode") or record.get("deliveryErrorCode") or ""
            reason = f"RingCentral: {record.get('messageStatus')}" + (f" ({code})" if code else "")
        return [DeliveryReport(channel="sms", external_id=external_id, status=status, reason=reason)]
    sender, unparsed = _number(record.get("from"))
    to = record.get("to") if isinstance(record.get("to"), list) else []
    text = record.get("subject")
    text = text if isinstance(text, str) else ""
    media = [
        {"id": str(a.get("id")), "uri": a.get("uri"), "content_type": str(a.get("contentType") or "")[:100],
         "filename": str(a.get("fileName") or f"attachment-{a.get('id')}")[:255], "size": a.get("size")}
        for a in record.get("attachments") or []
        if isinstance(a, dict) and a.get("type") == "MmsAttachment" and isinstance(a.get("uri"), str)
    ]
    metadata = {
        "ringcentral_id": external_id,
        "to": [str(p.get("phoneNumber", ""))[:40] for p in to if isinstance(p, dict)][:10],
        "ringcentral_conversation": str((record.get("conversation") or {}).get("id", ""))[:40],
    }
    if unparsed:
        metadata["unparsed_number"] = True
    if media:
        metadata["attachments"] = media
        metadata["media_pending"] = True
    if keyword(text):
        metadata["keyword"] = keyword(text)
    return [InboundMessage(channel="sms", sender=sender, sender_kind=identity.PHONE, external_id=external_id,
                           text=text, received_at=_when(record.get("creationTime")), metadata=metadata)]


def call_events(record) -> list:
    """One call-log record (view=Detailed) as a `call` item of the thread."""
    if not isinstance(record, dict) or not record.get("id"):
        raise BadPayload("a call record needs an id")
    direction = "outbound" if record.get("direction") == "Outbound" else "inbound"
    result = str(record.get("result") or "Unknown")[:40]
    customer, unparsed = _number(record.get("to") if direction == "outbound" else record.get("from"))
    from_number = str((record.get("from") or {}).get("phoneNumber") or "")[:40]
    to_number = str((record.get("to") or {}).get("phoneNumber") or "")[:40]
    try:
        duration = max(0, int(record.get("duration") or 0))
    except (TypeError, ValueError):
        duration = 0
    call = {"direction": direction, "from": from_number, "to": to_number, "start": record.get("startTime"),
            "duration": duration, "result": result, "session_id": str(record.get("sessionId") or "")[:60]}
    recording = record.get("recording")
    if isinstance(recording, dict) and isinstance(recording.get("contentUri"), str):
        call["recording"] = {"id": str(recording.get("id", ""))[:40], "uri": recording["contentUri"]}
    call_back = direction == "inbound" and result in CALL_BACK_RESULTS
    metadata = {"call": call, "ringcentral_id": str(record["id"])[:255]}
    if call_back:
        metadata["call_back"] = True
    if unparsed:
        metadata["unparsed_number"] = True
    if "recording" in call:
        metadata["media_pending"] = True
    word = "Incoming" if direction == "inbound" else "Outgoing"
    minutes, seconds = divmod(duration, 60)
    text = f"{word} call · {result}" + (f" · {minutes}:{seconds:02d}" if duration else "")
    # A missed call or voicemail opens (or reopens) the conversation; an answered or outgoing
    # call only joins the thread, it does not make the conversation unread.
    return [InboundMessage(channel="call", sender=customer, sender_kind=identity.PHONE,
                           external_id=str(record["id"])[:255], text=text, open_new=call_back,
                           received_at=_when(record.get("startTime")), metadata=metadata)]


def ingest(source: str, events: list) -> Outcome:
    """Store the events (deduped by RingCentral id) and do what follows from them."""
    outcome = dispatch(source, events)
    after_ingest(events)
    return outcome


def after_ingest(events: list) -> None:
    inbound = [event for event in events if isinstance(event, InboundMessage)]
    if not inbound:
        return
    _apply_keywords([event for event in inbound if event.metadata.get("keyword")])
    pending = {(event.channel, event.external_id) for event in inbound
               if event.metadata.get("media_pending") or event.metadata.get("call_back")}
    if pending:
        _follow_up(pending)


def _apply_keywords(events: list) -> None:
    """The newest STOP/START from each number decides: a replayed or late older one changes nothing."""
    for sender in {event.sender for event in events if not identity.is_unparsed(event.sender)}:
        latest = (Message.objects.filter(channel="sms", direction=Message.Direction.INBOUND,
                                         metadata__from=sender, metadata__keyword__isnull=False)
                  .order_by("-created_at", "-id").values("metadata", "created_at").first())
        if latest is None:
            continue
        word = latest["metadata"]["keyword"]
        changed = set_opt_out(kind=identity.PHONE, value=sender, opted_out=word in OPT_OUT_WORDS, keyword=word,
                              at=latest["created_at"])
        if changed:
            logger.info("SMS %s: %s", "opt-out" if word in OPT_OUT_WORDS else "opt-in", sender)


def _follow_up(keys) -> None:
    from .tasks import download_media

    by_channel = {}
    for channel, external_id in keys:
        by_channel.setdefault(channel, []).append(external_id)
    for channel, ids in by_channel.items():
        for message in Message.objects.filter(channel=channel, external_id__in=ids).select_related("conversation"):
            if message.metadata.get("call_back") and not message.metadata.get("call_back_marked"):
                services.set_call_back(conversation=message.conversation, needed=True)
                services.annotate_message(message=message, metadata={"call_back_marked": True})
            if message.metadata.get("media_pending"):
                message_id = message.pk
                transaction.on_commit(lambda message_id=message_id: download_media.delay(message_id))
