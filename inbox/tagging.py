"""Adding and removing a conversation's tags (re-exported by services).

One transaction each, the conversation row-locked: the tag link, a history
row (who tagged what, when) and a live event so every open list and thread
shows the change. Tag names are slugs ("vip", "allergy-nuts"): what a person
types is lower-cased and slugified, and refused when nothing is left.
"""
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from . import events, history
from .changes import locked
from .models import Conversation, Tag
from .payloads import conversation_summary

MAX_TAG_CHARS = 40  # fits the history row's from/to value


def tag_name(raw) -> str:
    """The stored form of a tag a person typed; ValidationError when it has no letters or digits."""
    name = slugify(str(raw or ""))[:MAX_TAG_CHARS].strip("-")
    if not name:
        raise ValidationError("A tag needs letters or digits (for example: vip, allergy-nuts).")
    return name


def _names(conversation) -> list[str]:
    return list(conversation.tags.order_by("name").values_list("name", flat=True))


def add_tag(*, conversation: Conversation, name: str, by=None) -> list[str]:
    """Tag the conversation (creating the tag if it is new); returns its tags. Adding a tag it has changes nothing."""
    return _change(conversation, tag_name(name), by, add=True)


def remove_tag(*, conversation: Conversation, name: str, by=None) -> list[str]:
    """Take the tag off the conversation; returns its tags. Removing a tag it lacks changes nothing."""
    return _change(conversation, tag_name(name), by, add=False)


def _change(conversation, name, by, *, add: bool) -> list[str]:
    with transaction.atomic():
        conversation = locked(conversation)
        has = conversation.tags.filter(name=name).first()
        if (has is not None) == add:
            return _names(conversation)
        if add:
            conversation.tags.add(Tag.objects.get_or_create(name=name)[0])
            history.record(history.Kind.TAGGED, conversation, at=timezone.now(), actor=by, to_value=name)
        else:
            conversation.tags.remove(has)
            history.record(history.Kind.UNTAGGED, conversation, at=timezone.now(), actor=by, from_value=name)
        names = _names(conversation)
        events.record(events.CONVERSATION_UPDATED, conversation=conversation,
                      payload={**conversation_summary(conversation, by=by), "tags": names})
    return names
