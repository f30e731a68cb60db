"""SMS and calls for the demo, made the way the RingCentral adapter makes them.

Each is first a record shaped like RingCentral's (a message-store record, a call-log
record) and then goes through channels_ingest/ringcentral/records.py, so its text,
metadata and failure reasons are the adapter's own: an inbound text has the number it
came from, ours and RingCentral's ids; a call has its direction, numbers, duration and
result, and "call_back" when it was missed or went to voicemail.
"""
from datetime import timezone as dt_timezone

from django.conf import settings

from channels_ingest.ringcentral import records

# RingCentral's message ids are numbers and its call-log ids opaque strings; demo ones are
# counted per customer (index * ID_SPAN + n), so no run repeats another's.
SMS_ID_BASE = 7_000_000_000_000
CALL_SESSION_BASE = 40_000_000_000
ID_SPAN = 10_000
# How texts fail (developers.ringcentral.com/guide/messaging/sms/sms-errors): the carrier says
# the number is not in service, the carrier's spam filter took it, the upstream refused the number.
FAILURES = [("DeliveryFailed", "SMS-CAR-411"), ("DeliveryFailed", "SMS-CAR-430"), ("SendingFailed", "SMS-UP-410")]
# A customer's call: missed, to voicemail, or answered; ours back: connected or not answered.
INBOUND_RESULTS = {"Missed": 45, "Voicemail": 30, "Accepted": 25}
OUTBOUND_RESULTS = {"Call connected": 80, "No Answer": 20}
SECONDS = {"Missed": (0, 1), "Voicemail": (15, 90), "Accepted": (40, 900), "Call connected": (30, 600),
           "No Answer": (0, 1)}
# What staff text after a call that did not connect, by its result.
FOLLOW_UPS = {
    "Missed": "Sorry we missed you! How can we help with your party?",
    "Voicemail": "Thanks for your voicemail. We have that date open; how many guests are you expecting?",
    "No Answer": "Hi, this is My Hibachi; we just tried to reach you. Text us any time, we answer fast here.",
}


def business_number() -> str:
    """The number customers text and ring (RINGCENTRAL_SMS_FROM; a 555 number when unset)."""
    return settings.RINGCENTRAL_SMS_FROM or "+14155550100"


def _iso(at) -> str:
    return at.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def sms_id(index: int, n: int) -> str:
    return str(SMS_ID_BASE + index * ID_SPAN + n)


def inbound_sms(*, rc_id: str, phone: str, text: str, at, index: int) -> dict:
    """The metadata of a text from the customer, as the adapter and the receive path store it."""
    record = {"id": rc_id, "type": "SMS", "direction": "Inbound", "from": {"phoneNumber": phone},
              "to": [{"phoneNumber": business_number()}], "subject": text, "creationTime": _iso(at),
              "messageStatus": "Received", "conversation": {"id": str(900_000_000 + index)}}
    event, = records.message_events(record)
    return {**event.metadata, "from": event.sender}


def outbound_sms(rng, *, rc_id: str, phone: str) -> tuple[dict, str, str]:
    """(metadata, delivery status, reason) of a staff text: most delivered, some only sent, a few failed."""
    roll = rng.random()
    status, code = rng.choice(FAILURES) if roll < 0.04 else ("Sent", "") if roll < 0.2 else ("Delivered", "")
    record = {"id": rc_id, "type": "SMS", "direction": "Outbound", "messageStatus": status}
    if code:
        record["errorCode"] = code
    report, = records.message_events(record)
    return {"to": phone, "ringcentral_status": "Queued"}, report.status, report.reason


def call(rng, *, index: int, n: int, phone: str, at, inbound: bool, result: str | None = None) -> tuple[str, dict, str]:
    """(text, metadata, RingCentral id) of one call-log record: the customer's or ours to them."""
    results = INBOUND_RESULTS if inbound else OUTBOUND_RESULTS
    result = result or rng.choices(list(results), list(results.values()))[0]
    low, high = SECONDS[result]
    ours = {"phoneNumber": business_number()}
    theirs = {"phoneNumber": phone, "name": "Caller"} if inbound else {"phoneNumber": phone}
    record = {"id": f"Y{index * ID_SPAN + n}A", "sessionId": str(CALL_SESSION_BASE + index * ID_SPAN + n),
              "startTime": _iso(at), "duration": rng.randrange(low, high), "type": "Voice",
              "direction": "Inbound" if inbound else "Outbound", "action": "Phone Call", "result": result,
              "from": theirs if inbound else ours, "to": ours if inbound else theirs}
    event, = records.call_events(record)
    metadata = {**event.metadata, "from": event.sender}
    if metadata.get("call_back"):
        metadata["call_back_marked"] = True  # records.after_ingest tagged its conversation "call back"
    return event.text, metadata, event.external_id


def waits_for_call_back(messages) -> bool:
    """Whether a conversation keeps the "call back" tag: a missed call or voicemail (in time order)
    that no reply and no call of ours came after (inbox.services.reply and click to call clear it)."""
    waiting = False
    for message in messages:
        facts = message.metadata.get("call") if message.channel == "call" else None
        if facts and message.metadata.get("call_back"):
            waiting = True
        elif message.direction == "outbound" or (facts and facts["direction"] == "outbound"):
            waiting = False
    return waiting
