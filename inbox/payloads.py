"""Event payloads: small, and only what every staff member may see.

The services and receiving record them with each event (inbox/events.py);
the socket forwards them as they are and the events API returns them.
"""
from . import text as text_rules


def _username(user):
    return user.get_username() if user else None


def _full_name(user):
    """What toasts call the person: "Alex Kim", else the username."""
    return (user.get_full_name() or user.get_username()) if user else None


def conversation_summary(conversation, by=None) -> dict:
    return {
        "id": conversation.pk,
        "status": conversation.status,
        "assignee": conversation.assignee_id,
        "assignee_name": _username(conversation.assignee) if conversation.assignee_id else None,
        "is_unread": conversation.is_unread,
        "last_activity_at": conversation.last_activity_at.isoformat() if conversation.last_activity_at else None,
        "by": _username(by),
        "by_id": by.pk if by else None,
        "by_name": _full_name(by),
    }


def message_summary(message) -> dict:
    return {
        "id": message.pk,
        "channel": message.channel,
        "direction": message.direction,
        "preview": text_rules.preview(message.text, message.subject),
        "delivery_status": message.delivery_status,
        "status_reason": message.status_reason,
        "author": _username(message.author) if message.author_id else None,
        "created_at": message.created_at.isoformat(),
    }


def note_summary(note) -> dict:
    return {"id": note.pk, "author": _username(note.author), "preview": text_rules.one_line(note.body),
            "created_at": note.created_at.isoformat()}


def mention(note, *, author, customer) -> dict:
    return {"note": note.pk, "by": _username(author), "by_id": author.pk if author else None,
            "by_name": _full_name(author), "customer": customer.name}
