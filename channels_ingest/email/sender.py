"""Staff replies by email: settings.INBOX_SENDERS["email"] points here.

Sends through Django's configured backend (Anymail's SendGrid backend when
EMAIL_PROVIDER=sendgrid, SMTP when smtp), from the business address, with our
own Message-ID (which carries the conversation, see threads.py) and
In-Reply-To/References to the customer's last email, so mail clients thread
it and the customer's answer comes back to the same conversation.
"""
import logging
import smtplib

from anymail.exceptions import AnymailError, AnymailInvalidAddress, AnymailRecipientsRefused, AnymailRequestsAPIError
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from crm.models import Channel
from inbox import attachments as stored_files
from inbox import services
from inbox.delivery import PermanentSendError, TransientSendError
from inbox.models import Message

from . import services as email_services
from .threads import outbound_message_id

logger = logging.getLogger(__name__)


def _brackets(ids):
    return " ".join(f"<{i}>" for i in ids)


def threading_headers(message: Message) -> dict:
    last = (
        Message.objects.filter(conversation_id=message.conversation_id, channel=Channel.EMAIL,
                               direction=Message.Direction.INBOUND, external_id__isnull=False)
        .exclude(external_id__startswith="sha256:")
        .order_by("-created_at", "-id").only("external_id", "metadata").first()
    )
    if last is None:
        return {}
    references = [r for r in (last.metadata or {}).get("references", []) if r != last.external_id][-10:]
    return {"In-Reply-To": f"<{last.external_id}>", "References": _brackets(references + [last.external_id])}


def build(message: Message, *, to: str, message_id: str) -> EmailMultiAlternatives:
    subject = message.subject or "Re: Your My Hibachi event"
    headers = {"Message-ID": f"<{message_id}>", **threading_headers(message)}
    metadata = message.metadata or {}
    email = EmailMultiAlternatives(subject=subject, body=message.text, from_email=settings.DEFAULT_FROM_EMAIL,
                                   to=[to], cc=metadata.get("cc") or None, headers=headers)
    email.attach_alternative(render_to_string("email/reply.html", {"text": message.text}), "text/html")
    for meta in metadata.get("attachments", []):  # stored when the reply was written (inbox/attachments.py)
        data = stored_files.read(meta)
        if data is None:
            raise PermanentSendError(f"The attachment {meta.get('filename', '')!r} is no longer stored; "
                                     "attach it again in a new reply.")
        email.attach(meta.get("filename") or "attachment", data, meta.get("content_type") or None)
    email.tags = ["reply"]
    email.metadata = {"inbox_message": message.pk}
    return email


def send(message: Message) -> str:
    """Send one queued reply; returns our Message-ID (stored as the message's external_id)."""
    to = (message.metadata or {}).get("to")
    if not to:
        raise PermanentSendError("This reply has no email address to go to.")
    suppressed = email_services.suppression_for(to)
    if suppressed is not None:
        raise PermanentSendError(
            f"Not sent: {to} is on the do-not-email list ({suppressed.get_reason_display().lower()} "
            f"on {suppressed.created_at:%Y-%m-%d}). Remove it there if the customer asks again."
        )
    message_id = outbound_message_id(conversation_id=message.conversation_id, message_id=message.pk)
    email = build(message, to=to, message_id=message_id)
    deliver(email)
    esp_id, provider_id = esp_ids(email)
    email_services.record_reply(message, to=to, message_id_header=message_id, esp_message_id=esp_id,
                                provider_message_id=provider_id)
    services.update_delivery(message=message, status="queued", metadata={
        "message_id": message_id, "esp_message_id": esp_id, "sendgrid_message_id": provider_id,
        "in_reply_to": email.extra_headers.get("In-Reply-To", ""),
    })
    return message_id


def esp_ids(email) -> tuple:
    """(Anymail's tracking id, SendGrid's X-Message-Id) when sent through Anymail; else (None, "")."""
    status = getattr(email, "anymail_status", None)
    if status is None or status.message_id is None:
        return None, ""
    esp_id = status.message_id if isinstance(status.message_id, str) else None
    response = getattr(status, "esp_response", None)
    provider_id = response.headers.get("X-Message-Id", "") if response is not None else ""
    return esp_id, provider_id


def deliver(email) -> None:
    """Send through the configured backend, turning its errors into the inbox's two kinds."""
    try:
        email.send()
    except (AnymailInvalidAddress, AnymailRecipientsRefused) as exc:
        raise PermanentSendError(f"The address was refused: {_short(exc)}")
    except AnymailRequestsAPIError as exc:
        code = exc.status_code
        if code is None or code == 429 or code >= 500:
            raise TransientSendError(f"SendGrid unavailable ({code or 'no answer'}): {_short(exc)}")
        raise PermanentSendError(f"SendGrid refused the email ({code}): {_short(exc)}")
    except AnymailError as exc:
        raise PermanentSendError(f"The email could not be built for SendGrid: {_short(exc)}")
    except smtplib.SMTPRecipientsRefused as exc:
        codes = ", ".join(f"{addr}: {code} {msg.decode(errors='replace')}" for addr, (code, msg) in exc.recipients.items())
        raise PermanentSendError(f"The mail server refused the address ({codes})"[:500])
    except smtplib.SMTPResponseException as exc:
        text = f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace') if isinstance(exc.smtp_error, bytes) else exc.smtp_error}"
        if exc.smtp_code >= 500:
            raise PermanentSendError(f"The mail server refused the email: {text}"[:500])
        raise TransientSendError(f"The mail server asked us to try later: {text}"[:500])
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientSendError(f"Could not reach the mail server: {exc}"[:500])


def _short(exc) -> str:
    return " ".join(str(exc).split())[:400]
