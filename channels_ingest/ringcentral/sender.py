"""Staff replies by SMS: settings.INBOX_SENDERS["sms"] points here when RingCentral is configured.

Called by inbox.tasks.deliver_message (Celery): the same retry and permanent
failure rules as email — 429/5xx/no answer raise TransientSendError (retried
with backoff), any other refusal PermanentSendError (the reply is marked failed
with RingCentral's reason). RingCentral's message id is stored on the reply the
moment it is known, so a retried task never sends the same reply twice.
"""
import logging

from django.conf import settings

from crm import identity
from crm.models import CustomerIdentity
from inbox import channels, services
from inbox.delivery import PermanentSendError, TransientSendError
from inbox.models import Message

from . import client as rc

logger = logging.getLogger(__name__)
SMS_PATH = f"{rc.EXTENSION}/sms"


def send(message: Message) -> str:
    if message.external_id:
        return message.external_id  # RingCentral already has it (a retry after a crash): never send twice
    to = (message.metadata or {}).get("to")
    if not to or identity.is_unparsed(to):
        raise PermanentSendError("This reply has no phone number we can text.")
    if not settings.RINGCENTRAL_SMS_FROM:
        raise PermanentSendError("No business number to text from: set RINGCENTRAL_SMS_FROM.")
    limit = channels.get("sms").max_reply_units
    if channels.utf16_units(message.text) > limit:
        raise PermanentSendError(f"SMS text is limited to {limit:,} characters; this one is "
                                 f"{channels.utf16_units(message.text):,}.")
    opted_out = CustomerIdentity.objects.filter(kind=identity.PHONE, value=to, opted_out_at__isnull=False).first()
    if opted_out is not None:  # they texted STOP after the reply was queued
        raise PermanentSendError(f"Not sent: {to} opted out of SMS (texted {opted_out.opt_out_keyword or 'STOP'}).")
    body = {"from": {"phoneNumber": settings.RINGCENTRAL_SMS_FROM}, "to": [{"phoneNumber": to}], "text": message.text}
    try:
        with rc.client() as api:
            record = api.post_json(SMS_PATH, body)
    except rc.NotConfigured as exc:
        raise PermanentSendError(str(exc))
    except rc.Unavailable as exc:
        raise TransientSendError(exc.message)
    except rc.Refused as exc:
        raise PermanentSendError(f"RingCentral refused the SMS: {exc.message}")
    external_id = str(record.get("id") or "")
    if not external_id:
        raise PermanentSendError("RingCentral accepted the SMS without a message id.")
    services.update_delivery(message=message, status="queued", external_id=external_id,
                             metadata={"ringcentral_status": record.get("messageStatus", "")})
    return external_id
