"""Refusals of the inbox, each with a message for the person who asked and the
HTTP status and code it answers with. They are turned into responses in one
place for the API (myhibachi/api.py) and one for the screens (inbox.views.refusal)."""


class InboxError(Exception):
    """A refused action, with a message for the person who asked."""

    status = 400
    code = "refused"
    field = None  # the request field the refusal is about, when there is one
    details = None  # more for the API body (a dict the edge fills in, e.g. StaleReply's new items)

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidTransition(InboxError):
    """The conversation is not in a state that allows this (e.g. replying to a closed one)."""

    status = 409
    code = "invalid_transition"


class StaleReply(InboxError):
    """New messages reached the customer's thread after the last one the agent saw
    (the reply's seen_through): the reply is held so they can read them first."""

    status = 409
    code = "stale_reply"

    def __init__(self, message: str, *, new_messages):
        super().__init__(message)
        self.new_messages = list(new_messages)


class ReplyTooLarge(InboxError):
    """A reply or note over its length limit."""

    status = 413
    code = "too_large"


class CannotReply(InboxError):
    """The reply cannot go out on this channel (no address on file, a call)."""

    status = 422
    code = "cannot_reply"
    field = "channel"


class BadCursor(InboxError, ValueError):
    """A page cursor this server did not give out."""

    status = 400
    code = "bad_cursor"
    field = "cursor"
