"""The channels the inbox knows, one entry each.

Everything that differs by channel reads its entry here instead of testing
the channel's name: how its senders are found, whether staff can answer on
it and to which address, whether replies carry a subject, which sender
delivers them, its label and icon, and how a message of it is previewed.
Adding a channel is one ``register(ChannelSpec(...))`` here (or in its
adapter package's AppConfig.ready) plus the adapter package that receives
and sends it (channels_ingest/<channel>/, on channels_ingest.base).
"""
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
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


# --- which channels can carry a reply now ------------------------------------------

IDENTITY_NOUNS = {identity.EMAIL: "email address", identity.PHONE: "phone number"}
# What reply_options reads of each identity (CustomerIdentity instances, loaded with at least these).
IDENTITY_FIELDS = ("kind", "value", "is_primary", "opted_out_at", "opt_out_keyword")


@dataclass(frozen=True)
class ReplyOptions:
    """The channels a reply to one customer can go out on right now.

    available: the channels' entries, in registry order; missing: (entry,
    the reason in words a person acts on) for every other answerable channel;
    default: the channel the composer and the API pick when none is named
    (None when nothing reaches the customer); addresses: the address a reply
    on each available channel goes to (channels answered in their own
    session, the chat, have none); opted_out: the names in missing only
    because the customer asked not to be written to there (texted STOP): they
    still reach the customer, so the composer offers them with the reason and
    the default may be one, and a reply on one is refused saying why rather
    than quietly sent elsewhere."""

    available: list
    missing: list = field(default_factory=list)
    default: str | None = None
    addresses: dict = field(default_factory=dict)
    opted_out: frozenset = frozenset()

    def names(self) -> list[str]:
        return [spec.name for spec in self.available]

    def offered(self) -> list:
        """The composer's choice: the available channels and the opted-out ones, in registry order."""
        return [spec for spec in _registry.values() if spec in self.available or spec.name in self.opted_out]

    def reason(self, name: str) -> str | None:
        """Why name cannot carry a reply now; None when it can."""
        for spec, why in self.missing:
            if spec.name == name:
                return why
        if name in self.names():
            return None
        try:
            spec = get(name)
        except ValidationError:
            return f"There is no channel called {name!r}."
        writable = " or ".join(s.label for s in self.available) or "another channel"
        return f"A {spec.label.lower()} cannot be answered in writing; reply by {writable}."


def reply_options(customer, *, identities=None, last_inbound: str | None = None,
                  looked_up: bool = False) -> ReplyOptions:
    """Which channels can carry a reply to this customer now, why each other one cannot, and the default.

    A channel can reply when staff can answer on it, a sender is configured
    for it (settings.INBOX_SENDERS), the customer has a readable identity it
    is addressed to (an email address, a phone number; a chat needs a chat the
    customer started) and has not opted out of it there (SMS: texted STOP).
    The default is the channel the customer last wrote on when it reaches
    them; else the one reaching the same identity (a call: SMS); else their
    preferred channel; else the first that can.

    identities (the customer's CustomerIdentity rows with IDENTITY_FIELDS,
    primary first) and last_inbound (the channel of their newest inbound
    message) save the queries when the caller has them; looked_up=True says
    last_inbound is known even when None. The composer, the API and the send
    path (services.reply, retry_reply) all read this one rule.
    """
    if identities is None:
        from crm.models import CustomerIdentity

        identities = list(CustomerIdentity.objects.filter(customer_id=customer.pk)
                          .order_by("-is_primary", "id").only(*IDENTITY_FIELDS))
    if last_inbound is None and not looked_up:
        from .models import Message

        last_inbound = (Message.objects.filter(customer_id=customer.pk, direction="inbound")
                        .order_by("-created_at", "-id").values_list("channel", flat=True).first())
    identity_kinds = {found.kind for found in identities}
    available, missing, addresses, opted_out = [], [], {}, set()
    for spec in _registry.values():
        if not spec.can_reply:
            continue
        address = _address(spec, identities)
        why, asked_not_to = _why_not(spec, customer, identity_kinds, address)
        if why:
            missing.append((spec, why))
            if asked_not_to:
                opted_out.add(spec.name)
        else:
            available.append(spec)
            if address is not None:
                addresses[spec.name] = address.value
    reaching = [spec.name for spec in _registry.values() if spec in available or spec.name in opted_out]
    default = None
    if last_inbound in reaching:
        default = last_inbound
    elif last_inbound in _registry:  # e.g. a call: answer on what reaches the same phone number
        kind = _registry[last_inbound].identity_kind
        default = next((name for name in reaching if _registry[name].reply_to_kind == kind), None)
    if default is None and getattr(customer, "preferred_channel", None) in reaching:
        default = customer.preferred_channel
    if default is None and reaching:
        default = reaching[0]
    return ReplyOptions(available=available, missing=missing, default=default, addresses=addresses,
                        opted_out=frozenset(opted_out))


def _address(spec: ChannelSpec, identities):
    """The identity a reply on this channel goes to: the primary readable one of its kind (an unparsed
    number is no address); None for channels answered in their own session, or when there is none."""
    if spec.reply_to_kind is None:
        return None
    return next((found for found in identities if found.kind == spec.reply_to_kind
                 and not found.value.startswith(identity.UNPARSED)), None)


def _why_not(spec: ChannelSpec, customer, identity_kinds, address) -> tuple[str | None, bool]:
    """Why a reply on spec cannot go out now (None: it can), and whether that is only because the
    customer opted out of it (their address is reached, they asked not to be written to there)."""
    if not settings.INBOX_SENDERS.get(spec.name):
        return f"{spec.label} replies are not set up yet (no {spec.label} sender is configured).", False
    name = getattr(customer, "name", "") or "This customer"
    if spec.reply_to_kind is None:
        # Answered in the customer's own session (the chat): they must have started one.
        if spec.identity_kind not in identity_kinds:
            return f"{name} has not started a {spec.label.lower()} with us, so there is none to answer in.", False
        return None, False
    if address is None:
        noun = IDENTITY_NOUNS.get(spec.reply_to_kind, spec.reply_to_kind)
        return f"{name} has no {noun} on file.", False
    if address.opted_out_at is not None:
        when = timezone.localtime(address.opted_out_at).strftime("%b %-d, %Y")
        return (f"{address.value} opted out of {spec.label} by texting {address.opt_out_keyword or 'STOP'} on "
                f"{when}; {spec.label} replies are not sent until they text START. Reply by another channel."), True
    return None, False


register(ChannelSpec("email", "Email", identity_kind=identity.EMAIL, can_reply=True, reply_to_kind=identity.EMAIL,
                     has_subject=True))
register(ChannelSpec("sms", "SMS", identity_kind=identity.PHONE, can_reply=True, reply_to_kind=identity.PHONE,
                     max_reply_units=1000))
register(ChannelSpec("chat", "Chat", identity_kind=identity.VISITOR, can_reply=True))
register(ChannelSpec("call", "Call", identity_kind=identity.PHONE, can_reply=False))
