"""The assignee a request names, read in one place for the screens and the API.

Two questions, one vocabulary ("me", nobody, a user id):
- ``filter_value``: which conversations a list shows ("me", "unassigned" or a user id);
- ``assignee_for``: whom an assignment names (the requester, nobody, or an active user).
Both raise ValidationError with a message a person can act on.
"""
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from myhibachi.ids import BadId, parse_id

ME, UNASSIGNED = "me", "unassigned"
NOBODY = ("", "none", None)


def filter_value(raw):
    """ "me", "unassigned" or a user id (int) for selectors.filter_conversations."""
    if raw in (ME, UNASSIGNED):
        return raw
    try:
        return parse_id(raw)
    except BadId:
        raise ValidationError('Use a user id, "me" or "unassigned".', code="invalid_assignee")


def assignee_for(raw, *, user):
    """The user an assignment names: the requester for "me", None for nobody, else an active user by id."""
    if raw in NOBODY:
        return None
    if raw == ME:
        return user
    try:
        return get_user_model().objects.get(pk=parse_id(raw), is_active=True)
    except (BadId, get_user_model().DoesNotExist):
        raise ValidationError(f"Choose a staff member from the list. {str(raw)[:40]!r} is not an active one.",
                              code="invalid_assignee")
