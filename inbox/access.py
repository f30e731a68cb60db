"""The one way to get at a conversation on behalf of a user.

Agents and managers may read and act on every conversation; managers alone
manage rules, canned responses and users. Views never fetch a conversation
any other way, so a new rule (e.g. teams) changes here only.
"""
from django.core.exceptions import PermissionDenied
from django.http import Http404

from myhibachi.roles import is_manager, is_staff_member

from . import selectors
from .models import Conversation


def access_conversation(user, conversation_id) -> Conversation:
    if not is_staff_member(user):
        raise PermissionDenied("Only myhibachi staff may open conversations.")
    try:
        pk = int(conversation_id)
        if not 0 < pk < 2**63:
            raise ValueError(pk)
        return selectors.conversation_detail(pk)
    except (Conversation.DoesNotExist, TypeError, ValueError):
        raise Http404(f"There is no conversation {conversation_id}.")


def can_manage_inbox_settings(user) -> bool:
    """Routing rules, canned responses and users."""
    return is_manager(user)
