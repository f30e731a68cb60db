"""Staff screens of the RingCentral channel: click to call. (MMS files and recordings are served by
inbox.views.attachment, as every channel's stored files are.)"""
import logging

from django.http import HttpResponse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from crm import identity
from crm.models import CustomerIdentity
from inbox import services
from inbox.access import access_conversation
from inbox.views import staff_screen

from . import client as rc
from .models import AgentPhone

logger = logging.getLogger(__name__)
RINGOUT_PATH = f"{rc.EXTENSION}/ring-out"


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
