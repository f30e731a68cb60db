"""The durable history of each conversation (ConversationActivity rows).

The services call these inside the transaction of the change they record,
so a change and its history row commit or roll back together.
"""
from . import sql
from .models import ConversationActivity

Kind = ConversationActivity.Kind
FIELDS = ("conversation", "kind", "actor", "from_value", "to_value", "channel", "message", "at")


def activity(kind, conversation, *, at, actor=None, from_value="", to_value="", channel="",
             message=None) -> ConversationActivity:
    """One unsaved row (record_many writes it)."""
    return ConversationActivity(conversation=conversation, kind=kind, actor=actor, from_value=from_value or "",
                                to_value=to_value or "", channel=channel, message=message, at=at)


def record_many(rows: list) -> None:
    """Write unsaved rows in one statement (a batch's rows included)."""
    if rows:
        sql.insert(rows, FIELDS)


def record(kind, conversation, *, at, **values) -> None:
    record_many([activity(kind, conversation, at=at, **values)])


def received(message, conversation, *, reopened: bool) -> list:
    """The rows of an inbound message: received, and reopened first when it reopened the conversation."""
    rows = []
    if reopened:
        rows.append(activity(Kind.REOPENED, conversation, at=message.created_at, from_value="resolved",
                             to_value="open", channel=message.channel, message=message))
    rows.append(activity(Kind.RECEIVED, conversation, at=message.created_at, channel=message.channel,
                         message=message))
    return rows
