"""Staff side of the chat: the composer's "typing…" signal to the visitor."""
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.views.decorators.http import require_POST

from inbox.access import access_conversation

from . import services


@require_POST
@login_required
def staff_typing(request, pk):
    """POST /chat/typing/<conversation id>: the visitor who last wrote in it sees "<first name> is typing…".

    Staff only (access_conversation); 204 either way, nothing stored. The composer calls it at most
    every few seconds while an agent types a chat reply (static/chat/staff-typing.js)."""
    conversation = access_conversation(request.user, pk)
    digest = services.recipient_of(conversation)
    layer = get_channel_layer()
    if digest and layer is not None:
        frame = {"type": "typing", "agent": request.user.first_name or ""}
        async_to_sync(layer.group_send)(services.visitor_group(digest), {"type": "chat.frame", "frame": frame})
    return HttpResponse(status=204)
