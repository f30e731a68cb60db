"""Status and assignment changes of a conversation.

Staff make them through services (screens, API, admin); routing rules make
them while a message is received. One transaction each, the conversation
row-locked, an event recorded for the browsers.
"""
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from myhibachi.roles import is_staff_member

from . import events, history
from .errors import InvalidTransition
from .models import Conversation
from .payloads import conversation_summary
from .selectors import status_counts_changed

Status = Conversation.Status

TRANSITIONS = {
    Status.OPEN: {Status.PENDING, Status.RESOLVED, Status.CLOSED},
    Status.PENDING: {Status.OPEN, Status.RESOLVED, Status.CLOSED},
    Status.RESOLVED: {Status.OPEN, Status.CLOSED},
    Status.CLOSED: {Status.OPEN},
}


def locked(conversation) -> Conversation:
    """The conversation's row, locked for this transaction, with its customer."""
    return Conversation.objects.select_for_update().select_related("customer").get(pk=conversation.pk)


ACTIVE = (Status.OPEN, Status.PENDING)


def _refuse_second_active(conversation) -> None:
    """A customer has one active conversation at most (a partial unique index holds it):
    reopening an older one while another is open or pending is refused, naming it."""
    other = (Conversation.objects.filter(customer_id=conversation.customer_id, status__in=ACTIVE)
             .exclude(pk=conversation.pk).values_list("pk", flat=True).first())
    if other is not None:
        raise InvalidTransition(
            f"{conversation.customer.name} already has an active conversation (#{other}); "
            "continue there, or resolve it before reopening this one.")


def set_status(*, conversation: Conversation, status: str, by=None) -> Conversation:
    if status not in Status.values:
        raise ValidationError(f"Unknown status {status!r}; use one of {', '.join(Status.values)}.")
    with transaction.atomic():
        conversation = locked(conversation)
        if conversation.status == status:
            return conversation
        if status not in TRANSITIONS[conversation.status]:
            raise InvalidTransition(
                f"A {conversation.status} conversation cannot be set to {status}"
                + (" (someone may have changed it a moment ago; reload to see its current state)." if by else ".")
            )
        if status in ACTIVE and conversation.status not in ACTIVE:
            _refuse_second_active(conversation)
        now = timezone.now()
        history.record(history.Kind.STATUS_CHANGED, conversation, at=now, actor=by,
                       from_value=conversation.status, to_value=status)
        if status == Status.RESOLVED or (status == Status.CLOSED and conversation.resolved_at is None):
            conversation.resolved_at = now
        elif status in (Status.OPEN, Status.PENDING):
            conversation.resolved_at = None
        conversation.status = status
        try:
            with transaction.atomic():  # a savepoint: another reopening of this customer may have won
                conversation.save(update_fields=["status", "resolved_at"])
        except IntegrityError:
            raise InvalidTransition(f"{conversation.customer.name} already has an active conversation; "
                                    "reload to see it.")
        status_counts_changed()
        events.record(events.CONVERSATION_UPDATED, conversation=conversation,
                      payload=conversation_summary(conversation, by=by))
    return conversation


def assign(*, conversation: Conversation, assignee=None, by=None) -> Conversation:
    if assignee is not None and not is_staff_member(assignee):
        raise ValidationError(f"{assignee.get_username()} is not an active staff member and cannot be assigned.")
    with transaction.atomic():
        conversation = locked(conversation)
        if conversation.assignee_id == (assignee.pk if assignee else None):
            return conversation
        history.record(history.Kind.ASSIGNED, conversation, at=timezone.now(), actor=by,
                       from_value=conversation.assignee_id or "", to_value=assignee.pk if assignee else "")
        conversation.assignee = assignee
        conversation.save(update_fields=["assignee"])
        events.record(events.CONVERSATION_UPDATED, conversation=conversation,
                      payload=conversation_summary(conversation, by=by))
    return conversation
