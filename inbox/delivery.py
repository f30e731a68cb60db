"""The contract between the inbox and channel senders.

A sender is a callable ``send(message) -> str | None`` registered in
settings.INBOX_SENDERS under its channel. It returns the provider's id for
the message, raises TransientSendError when trying again later may work
(rate limits, timeouts, 5xx) and PermanentSendError when it never will.
"""
from django.conf import settings
from django.utils.module_loading import import_string


class SendError(Exception):
    pass


class TransientSendError(SendError):
    pass


class PermanentSendError(SendError):
    pass


def sender_for(channel: str):
    path = settings.INBOX_SENDERS.get(channel)
    return import_string(path) if path else None
