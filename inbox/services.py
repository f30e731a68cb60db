"""Every write to the inbox. One transaction each; events are recorded inside
it and broadcast when it commits (see events.py).

Channel adapters call ``receive_message``; staff actions (screens, API,
admin) call ``reply``, ``set_status``, ``assign``, ``add_note``,
``mark_read``; senders and tracking webhooks call ``update_delivery``.
"""
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from crm import identity
from crm.models import Booking, Channel, Customer, CustomerIdentity
from crm.services import customer_for_identity, split_name
from myhibachi.roles import is_staff_member

from . import canned, events, sql
from .models import CannedResponse, Conversation, Message, Note
from .sanitize import clean_html
from .selectors import forget_status_counts

Status = Conversation.Status
ACTIVE = (Status.OPEN, Status.PENDING)
MAX_INBOUND_CHARS = 1_000_000
MAX_NOTE_CHARS = 20_000

TRANSITIONS = {
    Status.OPEN: {Status.PENDING, Status.RESOLVED, Status.CLOSED},
    Status.PENDING: {Status.OPEN, Status.RESOLVED, Status.CLOSED},
    Status.RESOLVED: {Status.OPEN, Status.CLOSED},
    Status.CLOSED: {Status.OPEN},
}

# Delivery progress only moves forward: a late "delivered" never replaces "opened".
DELIVERY_RANK = {
    Message.DeliveryStatus.QUEUED: 1,
    Message.DeliveryStatus.SENT: 2,
    Message.DeliveryStatus.DELIVERED: 3,
    Message.DeliveryStatus.OPENED: 4,
    Message.DeliveryStatus.CLICKED: 5,
    Message.DeliveryStatus.FAILED: 6,
}


class InboxError(Exception):
    """A refused action, with a message for the person who asked."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidTransition(InboxError):
    pass


class ReplyTooLarge(InboxError):
    pass


class CannotReply(InboxError):
    pass


# What an inbound message writes (the search vector is filled by a database trigger).
INBOUND_FIELDS = ("conversation", "customer", "channel", "direction", "subject", "text", "html", "metadata",
                  "external_id", "delivery_status", "status_reason", "author", "created_at")


@dataclass(frozen=True)
class Received:
    message: Message
    created: bool
    conversation_created: bool = False


# --- inbound ---------------------------------------------------------------

@dataclass
class Inbound:
    """receive_message's arguments, checked and normalised."""
    channel: str
    sender_kind: str
    sender_value: str
    sender_name: str
    text: str
    html: str
    subject: str
    external_id: str | None
    metadata: dict
    received_at: object
    hint: Conversation | None
    open_new: bool
    route: bool
    looked_up: bool = False


def receive_message(*, channel: str, sender: str, sender_kind: str | None = None, text: str = "",
                    html: str = "", subject: str = "", external_id: str | None = None,
                    metadata: dict | None = None, sender_name: str = "", received_at=None,
                    conversation: Conversation | None = None, open_new: bool = True,
                    route: bool = True, looked_up: bool = False) -> Received:
    """Store one inbound message from any channel and attach it to the customer's thread.

    sender is the email address or phone number it came from (normalised
    here). external_id is the channel's own id; the same (channel,
    external_id) delivered again returns the stored message and changes
    nothing, also when two deliveries race. conversation is a threading hint
    (e.g. from email headers). open_new=False is for auto-replies and
    bounces: they join an existing conversation without reopening it and
    never start one that shows up in the inbox. route=False skips the rules.
    looked_up=True: the caller has just looked (channel, external_id) up and
    found nothing, so it is not looked up again (the unique constraint still
    decides when two deliveries race).
    """
    prepared = _prepare(channel=channel, sender=sender, sender_kind=sender_kind, text=text, html=html,
                        subject=subject, external_id=external_id, metadata=metadata, sender_name=sender_name,
                        received_at=received_at, conversation=conversation, open_new=open_new, route=route,
                        looked_up=looked_up)
    return _receive_one(prepared)


def _receive_one(item: Inbound) -> Received:
    """receive_message after _prepare: the careful path, one message in a savepoint."""
    if item.external_id is not None and not item.looked_up:
        existing = Message.objects.filter(channel=item.channel, external_id=item.external_id).first()
        if existing is not None:
            return Received(existing, created=False)
    try:
        with transaction.atomic():
            return _receive(item)
    except IntegrityError:
        if item.external_id is None:
            raise
        existing = Message.objects.filter(channel=item.channel, external_id=item.external_id).first()
        if existing is None:
            raise
        return Received(existing, created=False)


def receive_many(items: list[dict]) -> list[Received]:
    """Store several inbound messages, in order, with a handful of queries for the lot.

    items are receive_message keyword arguments; the result is what calling
    receive_message for each in turn would give (the same conversations,
    statuses, rules and events, in the same order). All or nothing inside the
    caller's transaction: unlike receive_message it does not absorb a
    constraint violation (another worker storing the same message, or
    creating the same customer, at the same moment) but raises it, so the
    caller rolls back and stores the messages again one by one with
    receive_message. See inbox/bulk.py.
    """
    from .bulk import receive_many as bulk_receive_many

    return bulk_receive_many(items)


def _prepare(*, channel, sender, sender_kind=None, text="", html="", subject="", external_id=None, metadata=None,
             sender_name="", received_at=None, conversation=None, open_new=True, route=True,
             looked_up=False) -> Inbound:
    if channel not in Channel.values:
        raise ValidationError(f"Unknown channel {channel!r}; use one of {', '.join(Channel.values)}.")
    if sender_kind is None:
        sender_kind = identity.EMAIL if channel == Channel.EMAIL else identity.PHONE
    sender_value = identity.normalize(sender_kind, sender)
    if external_id is not None:
        external_id = str(external_id).strip()[:255] or None
    metadata = dict(metadata or {})
    if len(text) > MAX_INBOUND_CHARS:
        text, metadata["truncated_text_chars"] = text[:MAX_INBOUND_CHARS], len(text)
    if len(html) > MAX_INBOUND_CHARS:
        html, metadata["truncated_html_chars"] = html[:MAX_INBOUND_CHARS], len(html)
    metadata.setdefault("from", sender_value)
    return Inbound(channel=channel, sender_kind=sender_kind, sender_value=sender_value, sender_name=sender_name,
                   text=text, html=clean_html(html), subject=subject.strip()[:998], external_id=external_id,
                   metadata=metadata, received_at=received_at or timezone.now(), hint=conversation,
                   open_new=open_new, route=route, looked_up=looked_up)


@contextmanager
def receiving_in_bulk():
    """Wrap around a channel adapter's transaction that stores many messages (the IMAP poller).

    Inside it the routing rules are read once, and the events committed are
    published together when it ends (still only after their commit).
    """
    from .routing import rules_snapshot

    with events.batched(), rules_snapshot():
        yield


def _receive(item: Inbound) -> Received:
    # One writer per customer at a time: two messages racing from the same
    # new customer end up in one conversation, not two.
    customer = _locked_customer(hint=item.hint, kind=item.sender_kind, value=item.sender_value,
                                name=item.sender_name)
    conversation, how = _conversation_for(customer, item.received_at, hint=item.hint, open_new=item.open_new)
    created = how == "created"
    message = _inbound_message(item, conversation, customer)
    sql.insert([message], INBOUND_FIELDS)
    fields = _attach(conversation, message, item, created=created)
    if fields:
        sql.update(conversation, fields)
    if how != "existing":
        _status_counts_changed()
    events.record_many(_receive_events(conversation, message, created=created))
    if item.route and item.open_new:
        from .routing import apply_rules

        apply_rules(conversation=conversation, message=message, created=created)
    return Received(message, created=True, conversation_created=created)


def _inbound_message(item: Inbound, conversation, customer) -> Message:
    return Message(
        conversation=conversation, customer=customer, channel=item.channel, direction=Message.Direction.INBOUND,
        subject=item.subject, text=item.text, html=item.html, metadata=item.metadata, external_id=item.external_id,
        delivery_status=Message.DeliveryStatus.RECEIVED, created_at=item.received_at,
    )


def _attach(conversation, message, item: Inbound, *, created: bool) -> list:
    """Move the conversation along for a new inbound message (in memory); return the fields changed."""
    fields = []
    received_at = item.received_at
    if conversation.last_activity_at is None or received_at >= conversation.last_activity_at or created:
        conversation.last_activity_at = received_at
        conversation.last_message = message
        fields += ["last_activity_at", "last_message"]
    if item.open_new and not conversation.is_unread:
        conversation.is_unread = True
        fields.append("is_unread")
    if item.subject and not conversation.subject:
        conversation.subject = item.subject[:255]
        fields.append("subject")
    return fields


def _receive_events(conversation, message, *, created: bool, summary: dict | None = None) -> list:
    """The two events of an inbound message. summary: the conversation as it was right after this message."""
    return [
        (events.CONVERSATION_CREATED if created else events.CONVERSATION_UPDATED, conversation,
         summary if summary is not None else conversation_summary(conversation)),
        (events.MESSAGE_CREATED, conversation, message_summary(message)),
    ]


def _locked_customer(*, hint, kind, value, name) -> Customer:
    """The sender's customer (the hinted conversation's, if any), row-locked for this transaction."""
    if hint is not None:
        return sql.lock_one(Customer, "SELECT * FROM {table} WHERE id = %s", [hint.customer_id])
    # Find and lock in one query.
    customer = sql.lock_one(
        Customer,
        "SELECT c.* FROM {table} c JOIN %s i ON i.customer_id = c.id WHERE i.kind = %%s AND i.value = %%s"
        % CustomerIdentity._meta.db_table,
        [kind, value], of="c",
    )
    if customer is not None:
        return customer
    first, last = split_name(name)
    customer, created = customer_for_identity(kind=kind, value=value, first_name=first, last_name=last)
    if created:
        # Nobody else can see a customer this transaction just inserted: a racing
        # delivery waits on the identity's unique index, then finds and locks it.
        return customer
    return sql.lock_one(Customer, "SELECT * FROM {table} WHERE id = %s", [customer.pk])


def _conversation_for(customer, received_at, *, hint, open_new):
    if not open_new:
        return _conversation_for_notice(customer, received_at, hint=hint)
    # The rows choose_conversation may pick, locked in id order as inbox/bulk.py locks them.
    candidates = sql.lock_all(
        Conversation,
        "SELECT * FROM {table} WHERE customer_id = %s AND (status IN (%s, %s) OR id = %s "
        "OR (status = %s AND resolved_at >= %s)) ORDER BY id",
        [customer.pk, *ACTIVE, hint.pk if hint is not None else None, Status.RESOLVED, reopen_after(received_at)],
    )
    conversation, how = choose_conversation(candidates, hint_pk=hint.pk if hint is not None else None,
                                            received_at=received_at)
    if how == "reopened":
        _reopen(conversation)
    elif how == "created":
        conversation = Conversation.objects.create(customer=customer, status=Status.OPEN,
                                                   last_activity_at=received_at)
    return conversation, how


def reopen_after(received_at):
    """A conversation resolved at or after this moment reopens for a message received at received_at."""
    return received_at - timedelta(days=settings.INBOX_REOPEN_DAYS)


def choose_conversation(candidates, *, hint_pk, received_at):
    """The conversation a new inbound message joins, among its customer's
    active conversations, the hinted one (email threading) and those resolved
    recently. Returns (conversation, "existing" | "reopened"), or (None,
    "created") when it starts a new one. Decides in memory: receive_message
    calls it on the rows it locked, receive_many (inbox/bulk.py) on the rows it
    locked plus the conversations its plan has made (pk None: not inserted
    yet, newer than every stored one)."""
    since = reopen_after(received_at)

    def recently_resolved(c):
        return c.status == Status.RESOLVED and c.resolved_at is not None and c.resolved_at >= since

    def newest(key):
        return lambda c: (key(c), c.pk is None, c.pk or 0)

    if hint_pk is not None:
        hinted = next((c for c in candidates if c.pk == hint_pk), None)
        if hinted is not None and hinted.status in ACTIVE:
            return hinted, "existing"
        if hinted is not None and recently_resolved(hinted):
            return hinted, "reopened"
    active = [c for c in candidates if c.status in ACTIVE]
    if active:
        return max(active, key=newest(lambda c: c.last_activity_at)), "existing"
    recent = [c for c in candidates if recently_resolved(c)]
    if recent:
        return max(recent, key=newest(lambda c: c.resolved_at)), "reopened"
    return None, "created"


def _conversation_for_notice(customer, received_at, *, hint):
    """An auto-reply or bounce (open_new=False) never opens or reopens a
    conversation: the hinted one, else the newest active one, else the newest
    of any status, else a closed one made to keep it."""
    if hint is not None:
        hinted = sql.lock_one(Conversation, "SELECT * FROM {table} WHERE id = %s AND customer_id = %s",
                               [hint.pk, customer.pk])
        if hinted is not None:
            return hinted, "existing"
    latest = sql.lock_one(
        Conversation,
        "SELECT * FROM {table} WHERE customer_id = %s ORDER BY status IN (%s, %s) DESC, last_activity_at DESC, id DESC",
        [customer.pk, *ACTIVE],
    )
    if latest is not None:
        return latest, "existing"
    # Keep the message, but out of the inbox: nobody needs to answer it.
    return Conversation.objects.create(customer=customer, status=Status.CLOSED, last_activity_at=received_at,
                                       is_unread=False), "created"


def _status_counts_changed():
    # Drop now so this request sees its own change, and again on commit so a
    # reader that cached the old counts mid-transaction cannot keep them.
    forget_status_counts()
    transaction.on_commit(forget_status_counts)


def _reopen(conversation):
    conversation.status = Status.OPEN
    conversation.resolved_at = None
    conversation.save(update_fields=["status", "resolved_at"])
    return conversation


# --- staff actions ---------------------------------------------------------

def _locked(conversation) -> Conversation:
    return Conversation.objects.select_for_update().select_related("customer").get(pk=conversation.pk)


def reply(*, conversation: Conversation, author, text: str = "", channel: str | None = None,
          canned_response: CannedResponse | None = None) -> Message:
    """Queue a staff reply; a Celery task hands it to the channel's sender after commit."""
    if canned_response is not None and not text.strip():
        text = render_canned(canned_response, conversation=conversation, agent=author)
    if not text or not text.strip():
        raise ValidationError("A reply cannot be empty.")
    if len(text) > settings.INBOX_MAX_REPLY_CHARS:
        raise ReplyTooLarge(
            f"This reply is {len(text):,} characters; the limit is {settings.INBOX_MAX_REPLY_CHARS:,}."
        )
    with transaction.atomic():
        conversation = _locked(conversation)
        if conversation.status == Status.CLOSED:
            raise InvalidTransition("This conversation is closed. Reopen it before replying.")
        channel = channel or default_reply_channel(conversation.customer)
        recipient = _reply_address(conversation.customer, channel)
        now = timezone.now()
        message = Message.objects.create(
            conversation=conversation, customer=conversation.customer, channel=channel,
            direction=Message.Direction.OUTBOUND, text=text, author=author,
            subject=_reply_subject(conversation) if channel == Channel.EMAIL else "",
            metadata={"to": recipient} if recipient else {},
            delivery_status=Message.DeliveryStatus.QUEUED, created_at=now,
        )
        conversation.last_message = message
        conversation.last_activity_at = now
        conversation.is_unread = False
        fields = ["last_message", "last_activity_at", "is_unread"]
        if conversation.first_response_at is None:
            conversation.first_response_at = now
            fields.append("first_response_at")
        conversation.save(update_fields=fields)
        events.record(events.MESSAGE_CREATED, conversation=conversation, payload=message_summary(message))
        events.record(events.CONVERSATION_UPDATED, conversation=conversation,
                      payload=conversation_summary(conversation))
        from .tasks import deliver_message

        transaction.on_commit(lambda: deliver_message.delay(message.pk))
    return message


def default_reply_channel(customer) -> str:
    last = (
        Message.objects.filter(customer=customer, direction=Message.Direction.INBOUND)
        .exclude(channel=Channel.CALL)
        .order_by("-created_at", "-id")
        .values_list("channel", flat=True)
        .first()
    )
    if last:
        return last
    return Channel.SMS if customer.preferred_channel == Channel.CALL else customer.preferred_channel


def _reply_address(customer, channel) -> str | None:
    if channel == Channel.CALL:
        raise CannotReply("A call cannot be answered in writing; reply by email or SMS.")
    if channel not in Channel.values:
        raise ValidationError(f"Unknown channel {channel!r}.")
    if channel == Channel.CHAT:
        return None
    kind = identity.EMAIL if channel == Channel.EMAIL else identity.PHONE
    found = (
        CustomerIdentity.objects.filter(customer=customer, kind=kind)
        .order_by("-is_primary", "id")
        .values_list("value", flat=True)
        .first()
    )
    if not found:
        raise CannotReply(f"{customer.name} has no {'email address' if kind == 'email' else 'phone number'} "
                          f"on file, so this reply cannot go out by {channel}.")
    return found


def _reply_subject(conversation) -> str:
    subject = conversation.subject or "Your My Hibachi event"
    return subject if re.match(r"(?i)^re:", subject) else f"Re: {subject}"


def render_canned(response: CannedResponse, *, conversation, agent) -> str:
    booking = (
        Booking.objects.filter(
            customer_id=conversation.customer_id, event_at__gte=timezone.now(),
            status__in=[Booking.Status.INQUIRY, Booking.Status.QUOTED, Booking.Status.CONFIRMED],
        ).order_by("event_at").first()
    )
    return canned.render(response.body, canned.context_for(customer=conversation.customer, agent=agent, booking=booking))


def set_status(*, conversation: Conversation, status: str, by=None) -> Conversation:
    if status not in Status.values:
        raise ValidationError(f"Unknown status {status!r}; use one of {', '.join(Status.values)}.")
    with transaction.atomic():
        conversation = _locked(conversation)
        if conversation.status == status:
            return conversation
        if status not in TRANSITIONS[conversation.status]:
            raise InvalidTransition(
                f"A {conversation.status} conversation cannot be set to {status}"
                + (" (someone may have changed it a moment ago; reload to see its current state)." if by else ".")
            )
        now = timezone.now()
        if status == Status.RESOLVED or (status == Status.CLOSED and conversation.resolved_at is None):
            conversation.resolved_at = now
        elif status in (Status.OPEN, Status.PENDING):
            conversation.resolved_at = None
        conversation.status = status
        conversation.save(update_fields=["status", "resolved_at"])
        _status_counts_changed()
        events.record(events.CONVERSATION_UPDATED, conversation=conversation,
                      payload=conversation_summary(conversation, by=by))
    return conversation


def assign(*, conversation: Conversation, assignee=None, by=None) -> Conversation:
    if assignee is not None and not is_staff_member(assignee):
        raise ValidationError(f"{assignee.get_username()} is not an active staff member and cannot be assigned.")
    with transaction.atomic():
        conversation = _locked(conversation)
        if conversation.assignee_id == (assignee.pk if assignee else None):
            return conversation
        conversation.assignee = assignee
        conversation.save(update_fields=["assignee"])
        events.record(events.CONVERSATION_UPDATED, conversation=conversation,
                      payload=conversation_summary(conversation, by=by))
    return conversation


MENTION = re.compile(r"(?<![\w@])@([\w.+-]+)")


def add_note(*, conversation: Conversation, author, body: str) -> Note:
    body = (body or "").strip()
    if not body:
        raise ValidationError("A note cannot be empty.")
    if len(body) > MAX_NOTE_CHARS:
        raise ReplyTooLarge(f"This note is {len(body):,} characters; the limit is {MAX_NOTE_CHARS:,}.")
    with transaction.atomic():
        conversation = _locked(conversation)
        note = Note.objects.create(conversation=conversation, customer=conversation.customer, author=author, body=body)
        events.record(events.NOTE_CREATED, conversation=conversation, payload=note_summary(note))
        usernames = {name.rstrip(".") for name in MENTION.findall(body)}
        if usernames:
            for user in get_user_model().objects.filter(username__in=usernames, is_active=True):
                if is_staff_member(user) and user != author:
                    events.record(events.MENTION, conversation=conversation, recipient=user,
                                  payload={"note": note.pk, "by": _username(author),
                                           "customer": conversation.customer.name})
    return note


def mark_read(*, conversation: Conversation, by) -> Conversation:
    if not conversation.is_unread:
        return conversation
    with transaction.atomic():
        updated = Conversation.objects.filter(pk=conversation.pk, is_unread=True).update(is_unread=False)
        conversation.is_unread = False
        if updated:
            events.record(events.CONVERSATION_UPDATED, conversation=conversation,
                          payload=conversation_summary(conversation, by=by))
    return conversation


def update_delivery(*, message: Message, status: str, reason: str = "", external_id: str | None = None,
                    metadata: dict | None = None) -> bool:
    """Move an outbound message's delivery status forward; returns whether it changed.

    Duplicate or out-of-order reports are ignored: a status never moves back
    (a late 'delivered' does not replace 'opened'); 'failed' wins over all.
    """
    if status not in DELIVERY_RANK:
        raise ValidationError(f"Unknown delivery status {status!r}.")
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message.pk)
        current = DELIVERY_RANK.get(message.delivery_status, 0)
        fields = []
        if external_id and message.external_id != external_id:
            message.external_id = external_id
            fields.append("external_id")
        if metadata:
            message.metadata = {**message.metadata, **metadata}
            fields.append("metadata")
        changed = DELIVERY_RANK[status] > current
        if changed:
            message.delivery_status = status
            message.status_reason = reason[:500]
            fields += ["delivery_status", "status_reason"]
        if fields:
            message.save(update_fields=fields)
        if changed:
            events.record(events.MESSAGE_UPDATED, conversation=message.conversation,
                          payload=message_summary(message))
    return changed


# --- event payloads: small, and only what every staff member may see -------

def _username(user):
    return user.get_username() if user else None


def conversation_summary(conversation, by=None) -> dict:
    return {
        "id": conversation.pk,
        "status": conversation.status,
        "assignee": conversation.assignee_id,
        "assignee_name": _username(conversation.assignee) if conversation.assignee_id else None,
        "is_unread": conversation.is_unread,
        "last_activity_at": conversation.last_activity_at.isoformat() if conversation.last_activity_at else None,
        "by": _username(by),
    }


def message_summary(message) -> dict:
    return {
        "id": message.pk,
        "channel": message.channel,
        "direction": message.direction,
        "preview": (message.text or message.subject)[:140],
        "delivery_status": message.delivery_status,
        "status_reason": message.status_reason,
        "author": _username(message.author) if message.author_id else None,
        "created_at": message.created_at.isoformat(),
    }


def note_summary(note) -> dict:
    return {"id": note.pk, "author": _username(note.author), "preview": note.body[:140],
            "created_at": note.created_at.isoformat()}
