"""Every change to a conversation leaves a history row, written with the change and never without it."""
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from inbox import services
from inbox.models import Conversation, ConversationActivity

pytestmark = pytest.mark.django_db


def _rows(conversation):
    return list(ConversationActivity.objects.filter(conversation=conversation).order_by("at", "id")
                .values_list("kind", "actor__username", "from_value", "to_value", "channel"))


def test_a_conversation_keeps_who_did_what(agent, manager):
    first = services.receive_message(channel="email", sender="pat@example.com", text="Hi", external_id="h1")
    conversation = first.message.conversation
    services.assign(conversation=conversation, assignee=agent, by=manager)
    services.reply(conversation=conversation, author=agent, text="Hello Pat", channel="email")
    services.add_note(conversation=conversation, author=agent, body="Wants a quote")
    services.set_status(conversation=conversation, status="resolved", by=agent)
    services.receive_message(channel="sms", sender="+14155550199", text="Thanks", external_id="h2",
                             conversation=conversation)

    assert _rows(conversation) == [
        ("received", None, "", "", "email"),
        ("assigned", "morgan", "", str(agent.pk), ""),
        ("replied", "alice", "", "", "email"),
        ("note", "alice", "", "", ""),
        ("status_changed", "alice", "open", "resolved", ""),
        ("reopened", None, "resolved", "open", "sms"),
        ("received", None, "", "", "sms"),
    ]
    conversation.refresh_from_db()
    assert conversation.resolved_at is None  # the conversation forgets its resolution; the history does not
    resolved = ConversationActivity.objects.get(conversation=conversation, kind="status_changed")
    assert resolved.at <= timezone.now()


def test_a_refused_or_rolled_back_change_leaves_no_history(agent):
    conversation = services.receive_message(channel="email", sender="kim@example.com", text="Hi",
                                            external_id="h3").message.conversation
    services.set_status(conversation=conversation, status="closed", by=agent)
    with pytest.raises(services.InvalidTransition):
        services.set_status(conversation=conversation, status="pending", by=agent)
    with transaction.atomic():
        services.assign(conversation=conversation, assignee=agent, by=agent)
        transaction.set_rollback(True)
    assert [row[0] for row in _rows(conversation)] == ["received", "status_changed"]


def test_unchanged_status_or_assignee_is_not_history(agent):
    conversation = services.receive_message(channel="email", sender="lee@example.com", text="Hi",
                                            external_id="h4").message.conversation
    services.assign(conversation=conversation, assignee=agent, by=agent)
    services.assign(conversation=conversation, assignee=agent, by=agent)
    services.set_status(conversation=conversation, status="open", by=agent)
    assert [row[0] for row in _rows(conversation)] == ["received", "assigned"]


def test_the_migration_backfills_messages_and_notes_already_stored(transactional_db):
    executor = MigrationExecutor(connection)
    executor.migrate([("inbox", "0006_idempotency_request_hash")])
    apps = executor.loader.project_state([("inbox", "0006_idempotency_request_hash")]).apps
    Customer = apps.get_model("crm", "Customer")
    Conversation_ = apps.get_model("inbox", "Conversation")
    Message = apps.get_model("inbox", "Message")
    Note = apps.get_model("inbox", "Note")
    User = apps.get_model("auth", "User")
    author = User.objects.create(username="old-agent")
    customer = Customer.objects.create(first_name="Old", last_name="Timer")
    then = timezone.now() - timedelta(days=400)
    conversation = Conversation_.objects.create(customer=customer, last_activity_at=then)
    Message.objects.create(conversation=conversation, customer=customer, channel="sms", direction="inbound",
                           text="Hello", created_at=then)
    Message.objects.create(conversation=conversation, customer=customer, channel="sms", direction="outbound",
                           text="Hi!", author=author, created_at=then + timedelta(minutes=5))
    Note.objects.create(conversation=conversation, customer=customer, author=author, body="Regular",
                        created_at=then + timedelta(minutes=6))

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    rows = list(ConversationActivity.objects.filter(conversation_id=conversation.pk).order_by("at")
                .values_list("kind", "actor__username", "channel", "at"))
    assert rows == [("received", None, "sms", then), ("replied", "old-agent", "sms", then + timedelta(minutes=5)),
                    ("note", "old-agent", "", then + timedelta(minutes=6))]
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_the_thread_header_shows_who_assigned_and_resolved_and_when(agent_client, agent, manager):
    from inbox.models import RoutingRule

    RoutingRule.objects.create(name="menus", trigger="conversation_created",
                               conditions={"keywords": {"words": ["menu"]}}, actions={"set_status": "pending"})
    conversation = services.receive_message(channel="email", sender="ann@example.com", text="The menu?",
                                            external_id="h5").message.conversation
    services.assign(conversation=conversation, assignee=agent, by=manager)
    agent_client.post(f"/inbox/{conversation.pk}/status", {"status": "resolved"}, HTTP_HX_REQUEST="true")
    page = agent_client.get(f"/inbox/{conversation.pk}/").content.decode()
    assert f'data-url="/inbox/{conversation.pk}/history"' in page  # loaded when the list is opened
    history = agent_client.get(f"/inbox/{conversation.pk}/history").content.decode()
    lines = [line.split(" · ")[0] for line in history.split("<li>")[1:]]
    assert lines == ["Alice set it to Resolved", "Morgan assigned it to Alice", "A routing rule set it to Pending"]
    assert "<time datetime=" in history


def test_the_history_is_for_staff_and_says_when_there_is_none(agent_client, receive):
    from django.test import Client

    conversation = receive().message.conversation
    assert "No status or assignment changes yet" in agent_client.get(f"/inbox/{conversation.pk}/history").content.decode()
    assert Client().get(f"/inbox/{conversation.pk}/history").status_code == 302  # to the log-in page
