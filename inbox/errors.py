"""Refusals of the inbox's services, each with a message for the person who asked."""


class InboxError(Exception):
    """A refused action, with a message for the person who asked."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidTransition(InboxError):
    """The conversation is not in a state that allows this (e.g. replying to a closed one)."""


class ReplyTooLarge(InboxError):
    """A reply or note over its length limit."""


class CannotReply(InboxError):
    """The reply cannot go out on this channel (no address on file, a call)."""
