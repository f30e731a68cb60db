"""Staff screens of the RingCentral channel: MMS/recording files (authorised) and click to call."""
import logging

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from crm import identity
from crm.models import CustomerIdentity
from inbox import services
from inbox.access import access_conversation
from inbox.models import Message
from inbox.views import staff_screen

from . import client as rc
from .models import AgentPhone

logger = logging.getLogger(__name__)
RINGOUT_PATH = f"{rc.EXTENSION}/ring-out"
INLINE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "audio/mpeg", "audio/wav", "audio/x-wav")


@staff_screen
def media(request, message_id: int, index: str):
    """One stored MMS attachment (index 0, 1, …) or a call's recording ("recording"), to staff only."""
    message = Message.objects.filter(pk=message_id, channel__in=["sms", "call"]).only(
        "metadata", "conversation_id").first()
    if message is None:
        raise Http404("No such message.")
    access_conversation(request.user, message.conversation_id)
    if index == "recording":
        item = (message.metadata.get("call") or {}).get("recording") or {}
        filename = "recording"
    else:
        items = message.metadata.get("attachments") or []
        item = items[int(index)] if index.isdigit() and int(index) < len(items) else {}
        filename = item.get("filename") or "attachment"
    if not item.get("path") or not default_storage.exists(item["path"]):
        raise Http404("That file has not been downloaded from RingCentral (yet).")
    content_type = item.get("content_type") or "application/octet-stream"
    inline = content_type in INLINE_TYPES
    response = FileResponse(default_storage.open(item["path"], "rb"), content_type=content_type if inline else
                            "application/octet-stream", as_attachment=not inline, filename=filename)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _status(text: str, *, status: int = 200, error: bool = False) -> HttpResponse:
    """The line shown next to the Call button. Refusals are 422, which the screens swap in (base.html's
    htmx-config), including "RingCentral is not answering": a 503 would show staff nothing."""
    markup = format_html('<span class="ringout-status{}" role="{}">{}</span>', " error" if error else "",
                         "alert" if error else "status", text)
    return HttpResponse(markup, status=status)


@staff_screen
@require_POST
def ring_out(request, pk):
    """Click to call: RingCentral rings the agent's own number, then connects the customer's."""
    conversation = access_conversation(request.user, pk)
    agent = AgentPhone.objects.filter(user=request.user).first()
    if agent is None:
        return _status("You have no RingCentral number on file: a manager sets it under Agent RingCentral numbers "
                       "in the admin.", status=422, error=True)
    raw = request.POST.get("number", "")
    number, unparsed = identity.phone_or_unparsed(raw) if raw.strip() else ("", True)
    if unparsed or not CustomerIdentity.objects.filter(customer_id=conversation.customer_id, kind=identity.PHONE,
                                                       value=number).exists():
        return _status("Only the phone numbers on this customer's record can be called from here.", status=422,
                       error=True)
    try:
        with rc.client() as api:
            answer = api.post_json(RINGOUT_PATH, {"from": {"phoneNumber": agent.phone_number},
                                                  "to": {"phoneNumber": number}, "playPrompt": False})
    except rc.NotConfigured:
        return _status("Calling is not set up: RingCentral is not configured.", status=422, error=True)
    except rc.Unavailable as exc:
        logger.warning("RingOut failed for now: %s", exc.message)
        return _status("RingCentral is not answering; try again in a minute.", status=422, error=True)
    except rc.Refused as exc:
        return _status(f"RingCentral refused the call: {exc.message}", status=422, error=True)
    services.set_call_back(conversation=conversation, needed=False)
    state = (answer.get("status") or {}).get("callStatus", "InProgress")
    return _status(f"Calling your phone ({agent.phone_number}) first, then {number}. ({state})")
