"""The channels the inbox knows, one entry each.

Everything that differs by channel reads its entry here instead of testing
the channel's name: how its senders are found, whether staff can answer on
it and to which address, whether replies carry a subject, which sender
delivers them, its label and icon, and how a message of it is previewed.
Adding a channel is one ``register(ChannelSpec(...))`` here (or in its
adapter package's AppConfig.ready) plus the adapter package that receives
and sends it (channels_ingest/<channel>/, on channels_ingest.base).
"""
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string

from crm import identity

from . import text as text_rules

@dataclass(frozen=True)
class ChannelSpec:
    name: str
    label: str
    identity_kind: str  # how its senders are found (a crm.identity kind)
    can_reply: bool  # staff can write to the customer on it
    reply_to_kind: str | None = None  # the identity kind a reply is addressed to; None: the channel's own session
    has_subject: bool = False  # replies carry a subject (email)
    icon: str = ""  # the sprite symbol in templates/base.html (#i-<icon>); default: the name
    max_reply_units: int | None = None  # longest reply, in UTF-16 code units (SMS: 1,000); None: the inbox's limit

    @property
    def icon_id(self) -> str:
        return self.icon or self.name

    def sender(self):
        """The callable that delivers a reply on this channel (settings.INBOX_SENDERS), or None."""
        path = settings.INBOX_SENDERS.get(self.name)
        return import_string(path) if path else None

    def preview(self, *, text: str = "", subject: str = "") -> str:
        """The one-line preview of a message on the list, in events and in the API (inbox/text.py's rule)."""
        return text_rules.preview(text, subject)


_registry: dict[str, ChannelSpec] = {}


def register(spec: ChannelSpec) -> ChannelSpec:
    if spec.identity_kind not in identity.NORMALIZERS:
        raise ValueError(f"channel {spec.name!r}: unknown identity kind {spec.identity_kind!r}")
    if len(spec.name) > 10:
        raise ValueError(f"channel {spec.name!r}: names are at most 10 characters (Message.channel)")
    _registry[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """For tests that add a channel of their own."""
    _registry.pop(name, None)


def get(name: str) -> ChannelSpec:
    """The channel's entry; ValidationError with the known names if there is none."""
    try:
        return _registry[name]
    except (KeyError, TypeError):
        raise ValidationError(f"Unknown channel {name!r}; use one of {', '.join(_registry)}.", code="invalid_channel")


def utf16_units(text: str) -> int:
    """The length carriers and RingCentral count: UTF-16 code units (an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def all_channels() -> list[ChannelSpec]:
    return list(_registry.values())


def choices() -> list[tuple[str, str]]:
    """(name, label) of every channel: Message.channel's choices."""
    return [(spec.name, spec.label) for spec in _registry.values()]


def reply_choices() -> list[tuple[str, str]]:
    """(name, label) of the channels staff can answer on."""
    return [(spec.name, spec.label) for spec in _registry.values() if spec.can_reply]


register(ChannelSpec("email", "Email", identity_kind=identity.EMAIL, can_reply=True, reply_to_kind=identity.EMAIL,
                     has_subject=True))
register(ChannelSpec("sms", "SMS", identity_kind=identity.PHONE, can_reply=True, reply_to_kind=identity.PHONE,
                     max_reply_units=1000))
register(ChannelSpec("chat", "Chat", identity_kind=identity.VISITOR, can_reply=True))
register(ChannelSpec("call", "Call", identity_kind=identity.PHONE, can_reply=False))
