"""Receiving: every inbound message of every channel joins its customer's thread here.

The public contract (channel adapters reach it through services.receive_message
and services.receive_many):

- ``Inbound``: one inbound message, checked and normalised by ``prepare()``;
- ``receive(inbound)``: store one, in a savepoint; a repeat of a stored
  (channel, external id) returns the stored message, also when two
  deliveries race;
- ``receive_batch([inbound, ...])``: store many with a handful of statements
  for the lot, with the outcome ``receive`` one after the other would give;
  a constraint violation raises (the caller rolls back and stores them one by
  one);
- ``in_bulk()``: around an adapter's transaction that stores many messages.

Both paths lock with the same two statements (inbox/sql.py): the customers
(``sql.lock_customers``), then the conversations a message may join
(``sql.lock_candidates``), each in id order; and both decide with the same
functions: ``choose_conversation`` (which conversation) and ``attach`` (what
changes on it).

Why a batch path: ``receive`` costs about eight round trips per message, and
on a busy two-core machine each costs about a millisecond of wall time. The
IMAP poller stores mail in commit groups, so a group is planned in memory
(customers, conversations, reopenings, events) following ``receive``'s rules
message after message, then written with one statement per table. Whatever
the plan cannot decide from the rows it read goes through ``receive`` itself,
after everything planned before it is written, so effects keep their order:
- a message without an external id, or whose id came earlier in the same call;
- an auto-reply or bounce (open_new=False: the rarer conversation rules);
- a message a routing rule would act on (rules may assign, tag or change the
  status, which the messages after it must see);
- a threading hint whose customer is not among the locked rows.
After such a message the rest is planned afresh from the database.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import prefetch_related_objects
from django.utils import timezone

from crm import identity
from crm.models import Customer, CustomerIdentity
from crm.services import customer_for_identity, split_name

from . import channels, events, history, routing, sql
from .models import Conversation, Message
from .payloads import conversation_summary, message_summary
from .sanitize import clean_html
from .selectors import status_counts_changed

Status = Conversation.Status
ACTIVE = (Status.OPEN, Status.PENDING)
MAX_INBOUND_CHARS = 1_000_000

# What an inbound message writes (the search vector is filled by a database trigger).
INBOUND_FIELDS = ("conversation", "customer", "channel", "direction", "subject", "text", "html", "metadata",
                  "external_id", "delivery_status", "status_reason", "author", "created_at")
# Every conversation field an inbound message can change (attach, and a reopening).
CONVERSATION_FIELDS = ["last_activity_at", "last_message", "is_unread", "subject", "status", "resolved_at"]


@dataclass(frozen=True)
class Received:
    message: Message
    created: bool
    conversation_created: bool = False


@dataclass
class Inbound:
    """One inbound message, checked and normalised (make it with prepare())."""
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


def prepare(*, channel, sender, sender_kind=None, text="", html="", subject="", external_id=None, metadata=None,
            sender_name="", received_at=None, conversation=None, open_new=True, route=True,
            looked_up=False) -> Inbound:
    """services.receive_message's arguments as an Inbound; ValidationError for what cannot be stored."""
    spec = channels.get(channel)  # ValidationError for an unknown one
    if sender_kind is None:
        sender_kind = spec.identity_kind
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
def in_bulk():
    """Around an adapter's transaction that stores many messages (the IMAP poller):
    the routing rules are read once, and the events committed are published
    together when it ends (still only after their commit)."""
    with events.batched(), routing.rules_snapshot():
        yield


# --- the shared decisions ------------------------------------------------------

def reopen_after(received_at):
    """A conversation resolved at or after this moment reopens for a message received at received_at."""
    return received_at - timedelta(days=settings.INBOX_REOPEN_DAYS)


def choose_conversation(candidates, *, hint_pk, received_at):
    """The conversation a new inbound message joins, among its customer's
    active conversations, the hinted one (email threading) and those resolved
    recently. Returns (conversation, "existing" | "reopened"), or (None,
    "created") when it starts a new one. Decides in memory, over the rows
    locked by sql.lock_candidates plus, in a batch, the conversations its plan
    has made (pk None: not inserted yet, newer than every stored one)."""
    since = reopen_after(received_at)

    def recently_resolved(c):
        return c.status == Status.RESOLVED and c.resolved_at is not None and c.resolved_at >= since

    def newest(key):
        return lambda c: (key(c), c.pk is None, c.pk or 0)

    active = [c for c in candidates if c.status in ACTIVE]
    if hint_pk is not None:
        hinted = next((c for c in candidates if c.pk == hint_pk), None)
        if hinted is not None and hinted.status in ACTIVE:
            return hinted, "existing"
        # A customer has one active conversation at most: an answer to an older thread
        # reopens it only when nothing else is open; otherwise it joins the open one.
        if hinted is not None and recently_resolved(hinted) and not active:
            return hinted, "reopened"
    if active:
        return max(active, key=newest(lambda c: c.last_activity_at)), "existing"
    recent = [c for c in candidates if recently_resolved(c)]
    if recent:
        return max(recent, key=newest(lambda c: c.resolved_at)), "reopened"
    return None, "created"


def reopen(conversation) -> None:
    """In memory: the caller writes status and resolved_at."""
    conversation.status, conversation.resolved_at = Status.OPEN, None


def inbound_message(item: Inbound, conversation, customer) -> Message:
    return Message(
        conversation=conversation, customer=customer, channel=item.channel, direction=Message.Direction.INBOUND,
        subject=item.subject, text=item.text, html=item.html, metadata=item.metadata, external_id=item.external_id,
        delivery_status=Message.DeliveryStatus.RECEIVED, created_at=item.received_at,
    )


def attach(conversation, message, item: Inbound, *, created: bool) -> list:
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


def receive_events(conversation, message, *, created: bool, summary: dict | None = None) -> list:
    """The two events of an inbound message. summary: the conversation as it was right after this message."""
    return [
        (events.CONVERSATION_CREATED if created else events.CONVERSATION_UPDATED, conversation,
         summary if summary is not None else conversation_summary(conversation)),
        (events.MESSAGE_CREATED, conversation, message_summary(message)),
    ]


def _new_customer(item: Inbound) -> Customer:
    """Unsaved, as crm.services.customer_for_identity would make it (the batch inserts it)."""
    first, last = split_name(item.sender_name)
    return Customer(first_name=first[:100], last_name=last[:100],
                    preferred_channel=identity.PREFERRED_CHANNEL[item.sender_kind])


# --- one message -----------------------------------------------------------------

def receive(item: Inbound) -> Received:
    """Store one message in a savepoint; a repeat returns the stored one."""
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


def _receive(item: Inbound) -> Received:
    # One writer per customer at a time: two messages racing from the same
    # new customer end up in one conversation, not two.
    customer = _locked_customer(item)
    conversation, how = _conversation_for(customer, item)
    created = how == "created"
    message = inbound_message(item, conversation, customer)
    sql.insert([message], INBOUND_FIELDS)
    fields = attach(conversation, message, item, created=created)
    if how == "reopened":
        fields += ["status", "resolved_at"]
    if fields:
        sql.update(conversation, fields)
    if how != "existing":
        status_counts_changed()
    events.record_many(receive_events(conversation, message, created=created))
    history.record_many(history.received(message, conversation, reopened=how == "reopened"))
    if item.route and item.open_new:
        routing.apply_rules(conversation=conversation, message=message, created=created)
    return Received(message, created=True, conversation_created=created)


def _locked_customer(item: Inbound) -> Customer:
    """The sender's customer (the hinted conversation's, if any), row-locked for this transaction."""
    if item.hint is not None:
        return sql.lock_customers(ids=[item.hint.customer_id])[0]
    found = sql.lock_customers(identities=[(item.sender_kind, item.sender_value)])
    if found:
        return found[0]
    first, last = split_name(item.sender_name)
    customer, created = customer_for_identity(kind=item.sender_kind, value=item.sender_value,
                                              first_name=first, last_name=last)
    if created:
        # Nobody else can see a customer this transaction just inserted: a racing
        # delivery waits on the identity's unique index, then finds and locks it.
        return customer
    return sql.lock_customers(ids=[customer.pk])[0]


def _conversation_for(customer, item: Inbound):
    hint = item.hint
    if not item.open_new:
        return _conversation_for_notice(customer, item)
    candidates = sql.lock_candidates([customer.pk], hinted=[hint.pk] if hint is not None else [],
                                     resolved_since=reopen_after(item.received_at))
    conversation, how = choose_conversation(candidates, hint_pk=hint.pk if hint is not None else None,
                                            received_at=item.received_at)
    if how == "reopened":
        reopen(conversation)
    elif how == "created":
        conversation = Conversation.objects.create(customer=customer, status=Status.OPEN,
                                                   last_activity_at=item.received_at)
    return conversation, how


def _conversation_for_notice(customer, item: Inbound):
    """An auto-reply or bounce (open_new=False) never opens or reopens a
    conversation: the hinted one, else the newest active one, else the newest
    of any status, else a closed one made to keep it."""
    if item.hint is not None:
        hinted = sql.lock_conversation_of(customer.pk, item.hint.pk)
        if hinted is not None:
            return hinted, "existing"
    latest = sql.lock_latest_conversation(customer.pk)
    if latest is not None:
        return latest, "existing"
    # Keep the message, but out of the inbox: nobody needs to answer it.
    return Conversation.objects.create(customer=customer, status=Status.CLOSED, last_activity_at=item.received_at,
                                       is_unread=False), "created"


# --- many messages ----------------------------------------------------------------

def receive_batch(prepared: list) -> list:
    """Store these Inbound messages in order; one Received each. See the module's docstring."""
    results = [None] * len(prepared)
    with transaction.atomic(savepoint=False), routing.rules_snapshot():
        _known_duplicates(prepared, results)
        first = {}  # (channel, external id) -> the index it first comes at
        for index, item in enumerate(prepared):
            first.setdefault((item.channel, item.external_id), index)
        start = 0
        while start < len(prepared):
            start = _Batch(prepared, results, start, first).store()
    return results


def _known_duplicates(prepared, results) -> None:
    """Messages already stored (one query per channel) are answered as receive() would."""
    wanted = {}
    for item in prepared:
        if item.external_id is not None and not item.looked_up:
            wanted.setdefault(item.channel, set()).add(item.external_id)
    found = {}
    for channel, ids in wanted.items():
        for message in Message.objects.filter(channel=channel, external_id__in=ids):
            found.setdefault((channel, message.external_id), message)
    for index, item in enumerate(prepared):
        if not item.looked_up and (item.channel, item.external_id) in found:
            results[index] = Received(found[(item.channel, item.external_id)], created=False)


class _Batch:
    """Plan messages from `start` until one needs receive(); write the plan; store that one."""

    def __init__(self, prepared, results, start, first):
        self.prepared, self.results, self.start, self.first = prepared, results, start, first
        todo = [item for item, result in zip(prepared[start:], results[start:]) if result is None]
        self.customers, self.by_identity = self._lock_customers(todo)
        self.conversations = self._lock_conversations(todo)
        self.new_customers = {}  # (kind, value) -> unsaved Customer
        self.new_conversations = []
        self.touched = {}  # id(conversation) -> conversation, in first-touched order
        self.planned = []  # (index, item, message, conversation, how, summary)
        self.counts_changed = False

    # --- reading (and locking) what the plan needs ---------------------------

    def _lock_customers(self, todo):
        identities = {(item.sender_kind, item.sender_value) for item in todo if item.hint is None}
        hinted = {item.hint.customer_id for item in todo if item.hint is not None}
        customers, by_identity = {}, {}
        for customer in sql.lock_customers(ids=sorted(hinted), identities=sorted(identities)):
            customers.setdefault(customer.pk, customer)
            if customer.matched_kind is not None:
                by_identity[(customer.matched_kind, customer.matched_value)] = customer.pk
        return customers, by_identity

    def _lock_conversations(self, todo):
        if not self.customers:
            return {}
        found = sql.lock_candidates(
            list(self.customers), hinted=[item.hint.pk for item in todo if item.hint is not None],
            resolved_since=reopen_after(min(item.received_at for item in todo)))
        prefetch_related_objects(found, "assignee")  # for the events' assignee names: one query, if any
        conversations = {}
        for conversation in found:
            conversation.customer = self.customers[conversation.customer_id]  # the locked row, no query
            conversations.setdefault(conversation.customer_id, []).append(conversation)
        return conversations

    # --- planning -------------------------------------------------------------

    def store(self) -> int:
        """Returns the index to continue from."""
        for index in range(self.start, len(self.prepared)):
            if self.results[index] is not None:
                continue
            item = self.prepared[index]
            if not self._plan(index, item):
                self._write()
                # Written: later messages with the same id now find it.
                self.results[index] = receive(item)
                return index + 1
        self._write()
        return len(self.prepared)

    def _plan(self, index, item) -> bool:
        """Add one message to the plan; False when it must go through receive()."""
        if item.external_id is None or not item.open_new or self._repeated(index, item):
            return False
        customer = self._customer(item)
        if customer is None:
            return False
        conversation, how = self._conversation(customer, item)
        created = how == "created"
        message = inbound_message(item, conversation, customer)
        if item.route and routing.would_act(conversation=conversation, message=message, created=created):
            return False
        if created:
            self.new_conversations.append(conversation)
            self.conversations.setdefault(self._key(customer), []).append(conversation)
        elif how == "reopened":
            reopen(conversation)
        if item.hint is None and customer.pk is None:
            self.new_customers.setdefault((item.sender_kind, item.sender_value), customer)
        self.counts_changed |= how != "existing"
        attach(conversation, message, item, created=created)
        self.touched.setdefault(id(conversation), conversation)
        self.planned.append((index, item, message, conversation, how, conversation_summary(conversation)))
        return True

    def _repeated(self, index, item) -> bool:
        return self.first[(item.channel, item.external_id)] < index

    def _customer(self, item):
        if item.hint is not None:
            # As _locked_customer: the hinted conversation's customer, whoever sent it.
            return self.customers.get(item.hint.customer_id)
        key = (item.sender_kind, item.sender_value)
        pk = self.by_identity.get(key)
        if pk is not None:
            return self.customers.get(pk)
        if key not in self.new_customers:
            return _new_customer(item)  # _plan keeps it, _write inserts it
        return self.new_customers[key]

    @staticmethod
    def _key(customer):
        return customer.pk if customer.pk is not None else id(customer)

    def _conversation(self, customer, item):
        """As receive() chooses, over the locked rows and this batch's own."""
        candidates = self.conversations.get(self._key(customer), [])
        conversation, how = choose_conversation(
            candidates, hint_pk=item.hint.pk if item.hint is not None else None, received_at=item.received_at)
        if how == "created":
            conversation = Conversation(customer=customer, status=Status.OPEN, last_activity_at=item.received_at)
        return conversation, how

    # --- writing --------------------------------------------------------------

    def _write(self):
        if not self.planned:
            return
        if self.new_customers:
            customers = list(self.new_customers.values())
            Customer.objects.bulk_create(customers)
            CustomerIdentity.objects.bulk_create([
                CustomerIdentity(customer=customer, kind=kind, value=value, is_primary=True)
                for (kind, value), customer in self.new_customers.items()
            ])
        touched = list(self.touched.values())
        last_messages = [conversation.last_message for conversation in touched]
        for conversation in self.new_conversations:
            conversation.customer = conversation.customer  # its id, now that the customer is saved
            conversation.last_message = None  # not inserted yet; set by the update below
        if self.new_conversations:
            Conversation.objects.bulk_create(self.new_conversations)
        messages = []
        for _, _, message, conversation, _, summary in self.planned:
            message.conversation, message.customer = conversation, message.customer  # their ids, now saved
            if summary["id"] is None:
                summary["id"] = conversation.pk
            messages.append(message)
        sql.insert(messages, INBOUND_FIELDS)
        for conversation, last_message in zip(touched, last_messages):
            conversation.last_message = last_message  # its id, now that the message is saved
        sql.update_many(touched, CONVERSATION_FIELDS)
        if self.counts_changed:
            status_counts_changed()
        recorded, activity = [], []
        for _, _, message, conversation, how, summary in self.planned:
            recorded += receive_events(conversation, message, created=how == "created", summary=summary)
            activity += history.received(message, conversation, reopened=how == "reopened")
        events.record_many(recorded)
        history.record_many(activity)
        for index, _, message, _, how, _ in self.planned:
            self.results[index] = Received(message, created=True, conversation_created=how == "created")
        self.planned = []
