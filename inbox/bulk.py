"""services.receive_many: many inbound messages with a handful of queries for the lot.

Why this exists: receive_message costs about eight database round trips per
message (look up, lock the customer, lock the conversation, insert, update,
events, a savepoint), and on a busy two-core machine each round trip costs
about a millisecond of wall time. The IMAP poller stores mail in commit groups,
so a group is planned here in memory instead - customers, conversations,
reopenings, events - following receive_message's rules one message after the
other, and then written with one statement per table.

The plan follows services._receive step by step, with the same helpers
(which conversation: services.choose_conversation; what changes on it:
services._attach); test_bulk_receive compares the two paths on the same
messages. Whatever the plan cannot decide from the rows
it read goes through receive_message itself, after everything planned before
it has been written, so effects keep their order:
- a message without an external id, or whose id came earlier in the same call;
- an auto-reply or bounce (open_new=False: the rarer conversation rules);
- a message a routing rule would act on (rules may assign, tag or change the
  status, which the messages after it must see);
- a threading hint whose conversation or customer is not where the hint says.
After such a message the rest is planned afresh from the database.

Locks: the customers (ordered by id) and their candidate conversations are
locked FOR UPDATE before anything is decided, as receive_message does one at a
time. A unique constraint failing (another worker storing the same message or
creating the same customer meanwhile) is not absorbed here: it raises, and the
caller rolls back and stores the messages one by one with receive_message.
"""
from django.db import transaction
from django.db.models import Q

from crm import identity
from crm.models import Customer, CustomerIdentity
from crm.services import split_name

from . import events, services, sql
from .models import Conversation, Message
from .routing import rules_snapshot, would_act

Status = Conversation.Status
# Every conversation field an inbound message can change (services._attach, services._reopen).
CONVERSATION_FIELDS = ["last_activity_at", "last_message", "is_unread", "subject", "status", "resolved_at"]


def receive_many(items: list[dict]) -> list:
    prepared = [services._prepare(**item) for item in items]
    results = [None] * len(prepared)
    with transaction.atomic(savepoint=False), rules_snapshot():
        _known_duplicates(prepared, results)
        start = 0
        while start < len(prepared):
            start = _Run(prepared, results, start).store()
    return results


def _known_duplicates(prepared, results) -> None:
    """Messages already stored (one query per channel) are answered as receive_message would."""
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
            results[index] = services.Received(found[(item.channel, item.external_id)], created=False)


class _Run:
    """Plan messages from `start` until one needs receive_message; write the plan; store that one."""

    def __init__(self, prepared, results, start):
        self.prepared, self.results, self.start = prepared, results, start
        todo = [item for item, result in zip(prepared[start:], results[start:]) if result is None]
        self.customers, self.by_identity = self._lock_customers(todo)
        self.conversations = self._lock_conversations(todo)
        self.new_customers = {}  # (kind, value) -> unsaved Customer
        self.new_conversations = []
        self.touched = {}  # id(conversation) -> conversation, in first-touched order
        self.planned = []  # (index, item, message, conversation, created, summary)
        self.counts_changed = False

    # --- reading (and locking) what the plan needs ---------------------------

    def _lock_customers(self, todo):
        wanted = {}
        for item in todo:
            if item.hint is None:
                wanted.setdefault(item.sender_kind, set()).add(item.sender_value)
        by_identity = {}
        if wanted:
            query = Q()
            for kind, values in wanted.items():
                query |= Q(kind=kind, value__in=values)
            by_identity = {(kind, value): pk for kind, value, pk in
                           CustomerIdentity.objects.filter(query).values_list("kind", "value", "customer_id")}
        ids = set(by_identity.values()) | {item.hint.customer_id for item in todo if item.hint is not None}
        customers = {}
        if ids:
            # Ordered by id: two workers locking overlapping customers take them in the same order.
            customers = Customer.objects.select_for_update().filter(pk__in=ids).order_by("pk").in_bulk()
        return customers, by_identity

    def _lock_conversations(self, todo):
        """The customers' conversations receive_message could pick: active, hinted, or resolved recently."""
        if not self.customers:
            return {}
        earliest = services.reopen_after(min(item.received_at for item in todo))
        hinted = [item.hint.pk for item in todo if item.hint is not None]
        found = (
            Conversation.objects.select_for_update(of=("self",)).select_related("assignee")
            .filter(customer_id__in=list(self.customers))
            .filter(Q(status__in=services.ACTIVE) | Q(pk__in=hinted)
                    | Q(status=Status.RESOLVED, resolved_at__gte=earliest))
            .order_by("pk")
        )
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
                self.results[index] = services._receive_one(item)
                return index + 1
        self._write()
        return len(self.prepared)

    def _plan(self, index, item) -> bool:
        """Add one message to the plan; False when it must go through receive_message."""
        if item.external_id is None or not item.open_new or self._repeated(index, item):
            return False
        customer = self._customer(item)
        if customer is None:
            return False
        conversation, how = self._conversation(customer, item)
        created = how == "created"
        message = services._inbound_message(item, conversation, customer)
        if item.route and would_act(conversation=conversation, message=message, created=created):
            return False
        if created:
            self.new_conversations.append(conversation)
            self.conversations.setdefault(self._key(customer), []).append(conversation)
        elif how == "reopened":
            conversation.status, conversation.resolved_at = Status.OPEN, None
        if item.hint is None and customer.pk is None:
            self.new_customers.setdefault((item.sender_kind, item.sender_value), customer)
        self.counts_changed |= how != "existing"
        services._attach(conversation, message, item, created=created)
        self.touched.setdefault(id(conversation), conversation)
        self.planned.append((index, item, message, conversation, created, services.conversation_summary(conversation)))
        return True

    def _repeated(self, index, item) -> bool:
        return any(other.external_id == item.external_id and other.channel == item.channel
                   for other in self.prepared[:index])

    def _customer(self, item):
        if item.hint is not None:
            # As _locked_customer: the hinted conversation's customer, whoever sent it.
            return self.customers.get(item.hint.customer_id)
        key = (item.sender_kind, item.sender_value)
        pk = self.by_identity.get(key)
        if pk is not None:
            return self.customers.get(pk)
        if key in self.new_customers:
            return self.new_customers[key]
        first, last = split_name(item.sender_name)
        # As crm.services.customer_for_identity; _plan keeps it, _write inserts it.
        return Customer(first_name=first[:100], last_name=last[:100],
                        preferred_channel="email" if item.sender_kind == identity.EMAIL else "sms")

    @staticmethod
    def _key(customer):
        return customer.pk if customer.pk is not None else id(customer)

    def _conversation(self, customer, item):
        """As receive_message chooses (services.choose_conversation), over the locked rows and this run's own."""
        candidates = self.conversations.get(self._key(customer), [])
        conversation, how = services.choose_conversation(
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
        sql.insert(messages, services.INBOUND_FIELDS)
        for conversation, last_message in zip(touched, last_messages):
            conversation.last_message = last_message  # its id, now that the message is saved
        sql.update_many(touched, CONVERSATION_FIELDS)
        if self.counts_changed:
            services._status_counts_changed()
        recorded = []
        for _, _, message, conversation, created, summary in self.planned:
            recorded += services._receive_events(conversation, message, created=created, summary=summary)
        events.record_many(recorded)
        for index, _, message, _, created, _ in self.planned:
            self.results[index] = services.Received(message, created=True, conversation_created=created)
        self.planned = []
