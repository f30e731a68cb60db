"""The one way to get at a conversation on behalf of a user.

Agents and managers may read and act on every conversation; managers alone
manage rules, canned responses and users. Views never fetch a conversation
any other way, so a new rule (e.g. teams) changes here only.
"""
from django.core.exceptions import PermissionDenied
from django.http import Http404

from myhibachi.ids import BadId, parse_id
from myhibachi.roles import is_staff_member

from . import selectors
from .models import Conversation, Message


def access_conversation(user, conversation_id) -> Conversation:
    if not is_staff_member(user):
        raise PermissionDenied("Only myhibachi staff may open conversations.")
    try:
        return selectors.conversation_detail(parse_id(conversation_id))
    except (Conversation.DoesNotExist, BadId):
        raise Http404(f"There is no conversation {conversation_id}.")


def access_reply(conversation: Conversation, message_id) -> Message:
    """A staff reply in the conversation's customer thread (Retry, Send by email instead);
    404 for anything else: another customer's message, a customer's own, an unknown id."""
    try:
        return Message.objects.get(pk=parse_id(message_id), customer_id=conversation.customer_id,
                                   direction=Message.Direction.OUTBOUND)
    except (Message.DoesNotExist, BadId):
        raise Http404("That reply is not in this customer's thread.")
