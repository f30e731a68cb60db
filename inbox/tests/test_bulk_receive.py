"""services.receive_many must do exactly what receive_message does one message after the other."""
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from crm.models import Customer
from inbox import services
from inbox.models import Conversation, ConversationActivity, InboxEvent, Message, RoutingRule
from tests.factories import make_customer

NOW = timezone.now().replace(microsecond=0)


def _at(minutes):
    return NOW - timedelta(hours=3) + timedelta(minutes=minutes)


def _world():
    """Customers in every situation receive_message tells apart; returns the conversation used as a hint."""
    john = make_customer("john@example.com", phone="+1 415 555 0100")
    Conversation.objects.create(customer=john, status="open", last_activity_at=_at(30), is_unread=False)
    bea = make_customer("bea@example.com", first_name="Bea")
    Conversation.objects.create(customer=bea, status="resolved", resolved_at=NOW - timedelta(days=2),
                                last_activity_at=NOW - timedelta(days=2))
    cat = make_customer("cat@example.com", first_name="Cat")
    Conversation.objects.create(customer=cat, status="resolved", resolved_at=NOW - timedelta(days=30),
                                last_activity_at=NOW - timedelta(days=30))
    dan = make_customer("dan@example.com", first_name="Dan")
    Conversation.objects.create(customer=dan, status="closed", last_activity_at=_at(1))
    Conversation.objects.create(customer=dan, status="pending", last_activity_at=_at(2), subject="Menu")
    eve = make_customer("eve@example.com", first_name="Eve")
    Conversation.objects.create(customer=eve, status="open", last_activity_at=_at(3))
    hinted = Conversation.objects.create(customer=eve, status="resolved", resolved_at=NOW - timedelta(days=1),
                                         last_activity_at=NOW - timedelta(days=1))
    services.receive_message(channel="email", sender="stored@example.com", external_id="already",
                             received_at=_at(4))
    RoutingRule.objects.create(name="urgent", trigger="every_message", conditions={"keywords": {"words": ["urgent"]}},
                               actions={"set_status": "pending", "add_tags": ["urgent"]})
    return hinted


def _items(hinted):
    def email(n, sender, text="Hello", **extra):
        return {"channel": "email", "sender": sender, "text": text, "subject": f"Subject {n}",
                "external_id": f"e{n}", "received_at": _at(10 + n), **extra}

    return [
        email(1, "x@example.com", sender_name="Xavier Stranger"),  # a stranger: new customer and conversation
        email(2, "john@example.com", received_at=_at(5)),  # older than the conversation's last activity
        email(3, "bea@example.com"),  # reopens the recently resolved conversation
        email(4, "cat@example.com"),  # resolved too long ago: a new conversation
        email(5, "X@Example.com"),  # the stranger again: the conversation just started
        email(6, "other@example.com", conversation=hinted),  # a hint to her resolved one joins her open one
        email(7, "dan@example.com"),  # the pending conversation, not the closed one
        email(8, "john@example.com", text="This is urgent"),  # a rule acts: set pending, tag
        email(9, "john@example.com"),  # sees the rule's pending status
        email(10, "cat@example.com", open_new=False),  # auto-reply
        email(11, "nobody@example.com", open_new=False),  # auto-reply from a stranger: closed conversation
        dict(channel="sms", sender="(415) 555-0100", text="Running late", external_id="s1", received_at=_at(30)),
        email(1, "x@example.com"),  # the same delivery again in the same call
        dict(channel="email", sender="stored@example.com", external_id="already", received_at=_at(40)),
        email(12, "y@example.com", sender_name="Yan", route=False, text="urgent"),  # no rules asked for
    ]


def _snapshot(results):
    """Everything a message leaves behind, with database ids replaced by stable names."""
    def customer_key(customer_id):
        return sorted(Customer.objects.get(pk=customer_id).identities.values_list("value", flat=True))[0]

    names = {}
    for conversation in Conversation.objects.order_by("pk"):
        key = customer_key(conversation.customer_id)
        names[conversation.pk] = f"{key}#{sum(1 for n in names.values() if n.startswith(key + '#'))}"
    conversations = {
        names[c.pk]: (c.status, c.is_unread, c.subject, c.last_activity_at, c.resolved_at,
                      c.last_message.external_id if c.last_message else None, sorted(t.name for t in c.tags.all()),
                      c.assignee_id)
        for c in Conversation.objects.prefetch_related("tags")
    }
    customers = sorted((c.first_name, c.last_name, c.preferred_channel, customer_key(c.pk))
                       for c in Customer.objects.all())
    messages = {names[m.conversation_id] + "/" + (m.external_id or ""): (m.text, m.subject, m.created_at, m.metadata)
                for m in Message.objects.all()}
    answers = [(r.created, r.conversation_created, r.message.external_id, names[r.message.conversation_id])
               for r in results]

    def payload(event):
        data = dict(event.payload)
        if event.type.startswith("conversation"):
            data["id"] = names[data["id"]]
        else:
            data["id"] = Message.objects.get(pk=data["id"]).external_id
        return data

    history = [(e.type, names[e.conversation_id], payload(e)) for e in InboxEvent.objects.order_by("pk")]
    activity = [(a.kind, names[a.conversation_id], a.from_value, a.to_value, a.channel, a.actor_id,
                 a.message.external_id if a.message_id else None,
                 a.at if a.message_id else "when the rule ran")  # a message's rows carry its time
                for a in ConversationActivity.objects.order_by("pk")]
    return answers, conversations, customers, messages, history, activity


def _run(store, items):
    with transaction.atomic():
        results = store(items)
        snapshot = _snapshot(results)
        transaction.set_rollback(True)  # the other path starts from the same world
    return snapshot


def test_receive_many_does_what_receive_message_does_one_by_one(db):
    items = _items(_world())
    one_by_one = _run(lambda items: [services.receive_message(**item) for item in items], items)
    together = _run(services.receive_many, items)
    for part, expected in zip(together, one_by_one, strict=True):
        assert part == expected
    answers = together[0]
    assert [a[:2] for a in answers[:5]] == [(True, True), (True, False), (True, False), (True, True), (True, False)]
    assert answers[4][3] == answers[0][3], "the stranger's second email joins the conversation just started"
    assert answers[12][0] is False and answers[13][0] is False, "duplicates are answered, not stored"
    johns = together[1]["+14155550100#0"]  # John is named by his phone number, the first of his identities
    assert johns[0] == "pending" and johns[6] == ["urgent"]
    kinds = [row[0] for row in together[5]]
    # 13 new messages and the one stored by _world; one reopening (Bea): Eve's hint to her resolved
    # conversation joins her open one, as a customer has one active conversation at most
    assert kinds.count("received") == 14 and kinds.count("reopened") == 1
    assert ("status_changed", "+14155550100#0", "open", "pending", "", None, None) in [row[:7] for row in together[5]]


def test_receive_many_takes_a_few_queries_for_many_messages(db, django_assert_max_num_queries):
    for n in range(10):
        make_customer(f"known{n}@example.com")
    # Ten known customers and ten strangers, two emails each.
    items = [dict(channel="email", sender=f"{'known' if n < 20 else 'new'}{n % 10}@example.com", text="Hi",
                  external_id=f"q{n}", looked_up=n % 3 == 0) for n in range(40)]
    # Dedupe lookup, customers (found by identity and locked in one), conversations, new customers, their
    # identities, new conversations, messages, the conversations' update, events, history, routing rules.
    with django_assert_max_num_queries(11):
        results = services.receive_many(items)
    assert all(r.created for r in results) and Message.objects.count() == 40
    assert Conversation.objects.count() == 20 and InboxEvent.objects.count() == 80


def test_a_message_stored_meanwhile_makes_receive_many_raise_not_store_twice(db):
    services.receive_message(channel="email", sender="a@example.com", external_id="raced")
    items = [dict(channel="email", sender="b@example.com", external_id="fine"),
             dict(channel="email", sender="a@example.com", external_id="raced", looked_up=True)]
    with pytest.raises(IntegrityError), transaction.atomic():
        services.receive_many(items)
    # The caller's transaction rolls back; the careful path then finds the stored one.
    assert list(Message.objects.values_list("external_id", flat=True)) == ["raced"]
    assert [r.created for r in [services.receive_message(**item) for item in items]] == [True, False]
    assert Message.objects.filter(external_id="raced").count() == 1
