"""Which conversation an inbound email belongs to, from its headers only.

Our outbound Message-IDs carry the conversation: ``c<conversation>.m<message>.<sig>@<domain>``
where sig is a short HMAC of the two numbers, so a reply finds its thread even
if the customer answers from another address, and nobody can aim a made-up id
at someone else's conversation.

First match wins:
1. our token in In-Reply-To;
2. our token in References (newest first);
3. any stored email (ours or the customer's earlier ones) whose Message-ID is in
   In-Reply-To, then in References (newest first) -- but only when the sender's
   address is one of that conversation's customer's email identities. A plain
   Message-ID proves nothing (anyone on CC has seen it), so quoting it must not
   put a stranger's mail in someone else's thread, under their name.
No subject matching: without a match the inbox's own rules decide (the sender's
own customer and conversation).
"""
import hashlib
import hmac
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.crypto import constant_time_compare

from crm.identity import normalize_email
from crm.models import Channel, CustomerIdentity
from inbox.models import Conversation, Message

TOKEN = re.compile(r"^c(\d+)\.m(\d+)\.([0-9a-f]{10})@", re.I)


def _signature(conversation_id: int, message_id: int) -> str:
    key = ("myhibachi.email.thread:" + settings.SECRET_KEY).encode()
    return hmac.new(key, f"{conversation_id}.{message_id}".encode(), hashlib.sha256).hexdigest()[:10]


def message_domain() -> str:
    configured = getattr(settings, "EMAIL_MESSAGE_ID_DOMAIN", "")
    if configured:
        return configured
    address = settings.DEFAULT_FROM_EMAIL.rsplit("<", 1)[-1].strip(" >")
    return address.rsplit("@", 1)[-1] or "myhibachi.local"


def outbound_message_id(*, conversation_id: int, message_id: int) -> str:
    """Our Message-ID for an outbound email, without angle brackets."""
    return f"c{conversation_id}.m{message_id}.{_signature(conversation_id, message_id)}@{message_domain()}"


def conversation_id_from(message_id: str) -> int | None:
    match = TOKEN.match(message_id or "")
    if not match:
        return None
    conversation_id, msg_id, sig = int(match.group(1)), int(match.group(2)), match.group(3).lower()
    if not constant_time_compare(sig, _signature(conversation_id, msg_id)):
        return None
    return conversation_id


def message_pk_from(message_id: str) -> int | None:
    """The outbound Message pk named by one of our (verified) Message-IDs."""
    match = TOKEN.match(message_id or "")
    if match and conversation_id_from(message_id) is not None:
        return int(match.group(2))
    return None


def find_conversation(*, in_reply_to: list, references: list, sender: str) -> Conversation | None:
    """At most three queries; returns the conversation with its customer loaded. sender: the From address."""
    return find_conversations([(in_reply_to, references, sender)])[0]


def find_conversations(emails: list) -> list:
    """find_conversation for several emails at once: emails are (in_reply_to, references, sender) triples.

    At most three queries for the lot; one Conversation (customer loaded) or None per email.
    """
    wanted, senders = [], []  # per email: its ids, first match wins; its normalised sender or None
    for in_reply_to, references, sender in emails:
        in_reply_to = [i for i in in_reply_to if i][:20]
        references = [i for i in reversed(references) if i][:100]  # newest first
        wanted.append(list(dict.fromkeys(in_reply_to + references)))
        senders.append(_normalised(sender))
    tokens = [[cid for cid in (conversation_id_from(i) for i in ids) if cid is not None] for ids in wanted]
    every_id = {i for ids in wanted for i in ids}
    stored = {}
    if every_id:
        stored = dict(
            Message.objects.filter(channel=Channel.EMAIL, external_id__in=every_id)
            .values_list("external_id", "conversation_id")
        )
    found = {}
    conversation_ids = {cid for cids in tokens for cid in cids} | set(stored.values())
    if conversation_ids:
        found = Conversation.objects.select_related("customer").in_bulk(conversation_ids)
    plain = [[found[stored[i]] for i in ids if i in stored and stored[i] in found] for ids in wanted]
    owned = _owned_addresses({(c.customer_id, sender) for convs, sender in zip(plain, senders) if sender
                              for c in convs})
    answers = []
    for cids, convs, sender in zip(tokens, plain, senders):
        # Our own token first (in In-Reply-To, then References): it cannot be made up.
        conversation = next((found[cid] for cid in cids if cid in found), None)
        if conversation is None:
            # Then any stored email's Message-ID, from one of that customer's own addresses.
            conversation = next((c for c in convs if (c.customer_id, sender) in owned), None)
        answers.append(conversation)
    return answers


def _normalised(sender: str) -> str | None:
    try:
        return normalize_email(sender or "")
    except ValidationError:
        return None


def _owned_addresses(pairs: set) -> set:
    """The (customer id, email) pairs among these where the email is one of the customer's identities."""
    if not pairs:
        return set()
    return set(
        CustomerIdentity.objects.filter(kind=CustomerIdentity.Kind.EMAIL, value__in={e for _, e in pairs},
                                        customer_id__in={c for c, _ in pairs})
        .values_list("customer_id", "value")
    ) & pairs
