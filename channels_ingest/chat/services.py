"""What a website chat visitor does, as inbox writes and reads.

A visitor is known by the SHA-256 digest of the token their browser keeps
(crm/identity.py: VISITOR); the token itself is never stored. Everything a
visitor's page is sent comes from ``visitor_frame``: the text, the time, who
wrote it (the visitor or staff) and, for staff, the replying agent's first name
— nothing else about staff, the customer record or other customers.

A visitor sees only the lines of their own token: what they wrote (inbound chat
messages whose ``metadata.from`` is their digest) and the staff replies
delivered to it (``metadata.visitor``). Merging their customer into a known
one (leave_contact) therefore shows them none of that customer's other history.
"""
import hashlib
import re
import unicodedata

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from crm import identity
from crm.merge import merge_customers
from crm.models import Customer, CustomerIdentity
from crm.services import customer_for_identity, split_name
from inbox import services
from inbox.models import Message

CHANNEL = "chat"
# A message id the widget makes for each line, so a line re-sent after a reconnect is stored once.
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,40}")
MAX_NAME_CHARS = 100


def digest_of(token: str) -> str:
    """The stored form of a visitor token ("sha256:<hex>"); ValidationError for a malformed token."""
    return identity.normalize_visitor(token)


def visitor_group(digest: str) -> str:
    """The channel-layer group of every open socket of one visitor (ASCII, < 100 characters)."""
    return "chat.visitor." + digest.split(":", 1)[1]


# --- presence (shared by every node through the cache) -------------------------------

def _presence_key(digest: str) -> str:
    return "chat-present:" + digest.split(":", 1)[1][:40]


def mark_present(digest: str) -> None:
    cache.set(_presence_key(digest), 1, timeout=settings.CHAT_PRESENCE_SECONDS)


def mark_absent(digest: str) -> None:
    cache.delete(_presence_key(digest))


def is_present(digest: str) -> bool:
    return bool(cache.get(_presence_key(digest)))


# --- what the visitor's page is sent --------------------------------------------------------

def visitor_frame(message: Message) -> dict:
    """One line as the visitor's page shows it. Only this, never the Message."""
    staff = message.direction == Message.Direction.OUTBOUND
    frame = {"type": "message", "id": message.pk, "from": "staff" if staff else "visitor", "text": message.text,
             "at": message.created_at.isoformat()}
    if staff:
        frame["agent"] = (message.author.first_name if message.author_id else "") or ""
    client_id = (message.metadata or {}).get("client_id")
    if client_id and not staff:
        frame["client_id"] = client_id
    return frame


def history(digest: str) -> list:
    """The visitor's own lines, oldest first (at most CHAT_HISTORY_LIMIT)."""
    customer_id = (CustomerIdentity.objects.filter(kind=identity.VISITOR, value=digest)
                   .values_list("customer_id", flat=True).first())
    if customer_id is None:
        return []
    mine = (Q(direction=Message.Direction.INBOUND, metadata__from=digest)
            | Q(direction=Message.Direction.OUTBOUND, metadata__visitor=digest))
    lines = (Message.objects.filter(mine, customer_id=customer_id, channel=CHANNEL).select_related("author")
             .only("id", "direction", "text", "metadata", "created_at", "author__first_name")
             .order_by("-created_at", "-id")[: settings.CHAT_HISTORY_LIMIT])
    lines = [m for m in lines if not (m.metadata or {}).get("kind")]  # contact notes, bot transcripts
    return [visitor_frame(m) for m in reversed(lines)]


# --- what the visitor writes ----------------------------------------------------------------

def check_text(text) -> str:
    """The text of a visitor's line, or ValidationError (empty, too long)."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("Write a message first.", code="empty")
    if len(text.encode("utf-8", "surrogatepass")) > settings.CHAT_MAX_MESSAGE_BYTES:
        raise ValidationError(f"A message can be at most {settings.CHAT_MAX_MESSAGE_BYTES // 1024} KB; "
                              "split it in two.", code="too_large")
    return text.strip()


def visitor_says(*, token: str, text: str, client_id: str | None = None):
    """Store a visitor's line in their customer's thread; returns services.Received."""
    digest = digest_of(token)
    text = check_text(text)
    metadata = {}
    external_id = None
    if client_id is not None:
        if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
            raise ValidationError("A message id is 8 to 40 letters, digits, '-' or '_'.", code="invalid_client_id")
        metadata["client_id"] = client_id
        # Unique per visitor: the same line sent again after a reconnect is stored once.
        external_id = f"{digest}:{client_id}"
    return services.receive_message(channel=CHANNEL, sender=digest, sender_kind=identity.VISITOR, text=text,
                                    external_id=external_id, metadata=metadata)


def clean_name(raw) -> str:
    """A name as a visitor typed it: one line of printable text, at most 100 characters. Kept as text
    (whatever it contains, e.g. a <script> tag, is shown as text everywhere)."""
    if not isinstance(raw, str):
        return ""
    kept = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in raw)
    return " ".join(kept.split())[:MAX_NAME_CHARS]


def attach_identities(customer: Customer, pairs, *, merge: bool):
    """Give the customer these (kind, value) identities (normalised). One that another customer
    already has: with merge=True the customer is merged into the first such customer (the others
    are left as they are: one visitor's word does not merge two known customers); with merge=False
    it is left alone. Returns (the customer now, [kinds not attached])."""
    skipped = []
    merged = False
    for kind, value in pairs:
        found = CustomerIdentity.objects.filter(kind=kind, value=value).only("customer_id").first()
        if found is None:
            primary = not CustomerIdentity.objects.filter(customer=customer, kind=kind, is_primary=True).exists()
            CustomerIdentity.objects.create(customer=customer, kind=kind, value=value, is_primary=primary)
        elif found.customer_id == customer.pk:
            continue
        elif merge and not merged:
            customer = merge_customers(source=customer, into=Customer.objects.get(pk=found.customer_id))
            merged = True
        else:
            skipped.append(kind)
    return customer, skipped


def contact_pairs(*, email="", phone="") -> list:
    """[(kind, normalised value)] of the given email and phone; ValidationError keyed by field."""
    pairs, errors = [], {}
    for kind, raw in ((identity.EMAIL, email), (identity.PHONE, phone)):
        if isinstance(raw, str) and raw.strip():
            try:
                pairs.append((kind, identity.normalize(kind, raw)))
            except ValidationError as exc:
                errors[kind] = exc.messages
    if errors:
        raise ValidationError(errors)
    return pairs


def leave_contact(*, token: str, name="", email="", phone="") -> Customer:
    """The visitor left their name, email and/or phone.

    A known email or phone links them to that customer: the visitor's customer is merged into
    it (crm/merge.py; everything moves, both threads' history says so). Unknown ones are recorded
    on the visitor's own customer. A name fills only a customer that has none. A line in the
    thread tells staff what was left. Returns the customer the visitor is now.
    """
    digest = digest_of(token)
    name = clean_name(name)
    pairs = contact_pairs(email=email, phone=phone)
    if not pairs and not name:
        raise ValidationError("Leave a name, an email address or a phone number.", code="empty")
    first, last = split_name(name)
    with transaction.atomic():
        customer, _ = customer_for_identity(kind=identity.VISITOR, value=digest, first_name=first, last_name=last)
        customer, skipped = attach_identities(customer, pairs, merge=True)
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if name and not (customer.first_name or customer.last_name):
            customer.first_name, customer.last_name = first[:100], last[:100]
            customer.save(update_fields=["first_name", "last_name"])
        left = {"name": name, **{kind: value for kind, value in pairs}}
        summary = " · ".join(value for value in (name, left.get("email", ""), left.get("phone", "")) if value)
        text = f"Left contact details: {summary}"
        if skipped:
            text += f" ({', '.join(skipped)} already belongs to another customer; not linked)"
        services.receive_message(channel=CHANNEL, sender=digest, sender_kind=identity.VISITOR, text=text,
                                 metadata={"kind": "contact", "contact": left, "not_linked": skipped})
    return customer


# --- staff replies and typing ---------------------------------------------------------------

def recipient_of(conversation) -> str | None:
    """The visitor digest a staff reply in this conversation goes to: the visitor who last wrote
    on the chat in it (else to the customer), else the customer's newest chat visitor identity."""
    last = (Message.objects.filter(conversation_id=conversation.pk, channel=CHANNEL,
                                   direction=Message.Direction.INBOUND)
            .order_by("-created_at", "-id").values_list("metadata__from", flat=True).first())
    if not last:
        last = (Message.objects.filter(customer_id=conversation.customer_id, channel=CHANNEL,
                                       direction=Message.Direction.INBOUND)
                .order_by("-created_at", "-id").values_list("metadata__from", flat=True).first())
    if isinstance(last, str) and identity.VISITOR_DIGEST.fullmatch(last):
        return last
    return (CustomerIdentity.objects.filter(customer_id=conversation.customer_id, kind=identity.VISITOR)
            .order_by("-id").values_list("value", flat=True).first())


def token_fingerprint(token: str) -> str:
    """A short, non-reversible label of a token for logs and rate-limit keys."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]
