from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from crm.models import Customer
from inbox import receiving, services
from inbox.models import Conversation, InboxEvent, Message
from tests import senders
from tests.factories import make_user


def test_first_message_from_a_stranger_creates_customer_and_open_conversation(receive):
    received = receive(sender="New.Person@Example.com", sender_name="New Person", subject="Party for 20")
    message = received.message
    assert received.created and received.conversation_created
    assert message.customer.name == "New Person"
    assert message.customer.identities.get().value == "new.person@example.com"
    conversation = message.conversation
    assert conversation.status == "open" and conversation.is_unread
    assert conversation.subject == "Party for 20"
    assert conversation.last_message == message
    assert set(InboxEvent.objects.values_list("type", flat=True)) == {"conversation.created", "message.created"}


def test_one_customer_across_channels_lands_in_one_conversation(receive, customer):
    first = receive(sender="john@example.com", channel="email").message
    second = receive(sender="(415) 555-0100", channel="sms", text="Can we do 6 PM?").message
    assert second.customer == customer
    assert second.conversation == first.conversation
    assert Conversation.objects.count() == 1


def test_the_same_delivery_twice_is_stored_once_and_changes_nothing(receive):
    first = receive(external_id="<abc@mail>")
    conversation = first.message.conversation
    services.set_status(conversation=conversation, status="pending")
    events_before = InboxEvent.objects.count()
    again = receive(external_id="<abc@mail>", text="different text")
    assert not again.created
    assert again.message.pk == first.message.pk
    assert Message.objects.count() == 1
    assert InboxEvent.objects.count() == events_before
    conversation.refresh_from_db()
    assert conversation.status == "pending"


def test_a_message_reopens_a_recently_resolved_conversation(receive):
    conversation = receive().message.conversation
    services.set_status(conversation=conversation, status="resolved")
    again = receive(text="One more question")
    conversation.refresh_from_db()
    assert again.message.conversation == conversation
    assert conversation.status == "open" and conversation.resolved_at is None


def test_a_message_after_the_reopen_window_starts_a_new_conversation(receive, settings):
    conversation = receive().message.conversation
    services.set_status(conversation=conversation, status="resolved")
    Conversation.objects.filter(pk=conversation.pk).update(
        resolved_at=timezone.now() - timedelta(days=settings.INBOX_REOPEN_DAYS, minutes=1))
    again = receive(text="Booking again next year")
    assert again.conversation_created
    assert again.message.conversation != conversation


def test_a_closed_conversation_is_never_reopened_by_a_message(receive):
    conversation = receive().message.conversation
    services.set_status(conversation=conversation, status="closed")
    again = receive()
    assert again.message.conversation != conversation


def test_auto_replies_never_open_a_conversation(receive):
    received = receive(text="I am out of office", open_new=False)
    conversation = received.message.conversation
    assert conversation.status == "closed" and not conversation.is_unread


def test_auto_replies_join_the_active_conversation_else_the_newest_one(receive):
    first = receive(text="Party for 20?").message.conversation
    services.set_status(conversation=first, status="closed")
    second = receive(text="And a quote please").message.conversation
    Conversation.objects.filter(pk=first.pk).update(last_activity_at=timezone.now() + timedelta(minutes=5))
    assert receive(text="Out of office", open_new=False).message.conversation == second  # active wins
    services.set_status(conversation=second, status="closed")
    assert receive(text="Out of office", open_new=False).message.conversation == first  # then the newest


def _conv(pk, status, *, activity=0, resolved=None):
    now = timezone.now()
    return Conversation(pk=pk, status=status, last_activity_at=now + timedelta(minutes=activity),
                        resolved_at=None if resolved is None else now - timedelta(days=resolved))


@pytest.mark.parametrize("candidates, hint, expected", [
    ([], None, (None, "created")),
    ([_conv(1, "open"), _conv(2, "pending", activity=5)], None, (2, "existing")),  # newest activity
    ([_conv(1, "open"), _conv(2, "open")], None, (2, "existing")),  # same moment: higher id
    ([_conv(1, "open"), _conv(None, "open")], None, (None, "existing")),  # unsaved: newest of all
    ([_conv(1, "open", activity=5), _conv(2, "pending")], 2, (2, "existing")),  # the hint wins
    # A resolved hint joins the active conversation: one active conversation per customer at most.
    ([_conv(1, "open"), _conv(2, "resolved", resolved=1)], 2, (1, "existing")),
    ([_conv(1, "closed"), _conv(2, "resolved", resolved=1)], 2, (2, "reopened")),  # nothing active: reopened
    ([_conv(1, "open"), _conv(2, "closed")], 2, (1, "existing")),  # a closed hint is passed over
    ([_conv(1, "resolved", resolved=3), _conv(2, "resolved", resolved=1)], None, (2, "reopened")),
    ([_conv(1, "resolved", resolved=30)], None, (None, "created")),  # beyond INBOX_REOPEN_DAYS
])
def test_choose_conversation(candidates, hint, expected):
    """The one decision receive_message and receive_many (inbox/receiving.py) share."""
    chosen, how = receiving.choose_conversation(candidates, hint_pk=hint, received_at=timezone.now())
    assert (None if chosen is None else chosen.pk, how) == expected
    if expected == (None, "existing"):
        assert chosen is candidates[-1]


def test_html_from_outside_is_sanitised(receive):
    message = receive(html='<p onclick="x()">Hi<script>alert(1)</script><img src=x onerror="alert(2)"></p>').message
    assert "<script" not in message.html and "onerror" not in message.html and "onclick" not in message.html
    assert "Hi" in message.html


def test_unreadable_sender_is_refused(db):
    with pytest.raises(ValidationError):
        services.receive_message(channel="sms", sender="not a phone", text="hi")
    assert Customer.objects.count() == 0


# --- replies --------------------------------------------------------------------

def test_reply_is_queued_then_sent_by_the_channel_sender(receive, recording_sender, django_capture_on_commit_callbacks):
    agent = make_user("sarah")
    conversation = receive(channel="sms", sender="+14155550100").message.conversation
    with django_capture_on_commit_callbacks(execute=True):
        message = services.reply(conversation=conversation, author=agent, text="We have availability!")
    message.refresh_from_db()
    assert recording_sender == [message.pk]
    assert message.channel == "sms"  # the channel the customer last wrote on
    assert message.metadata["to"] == "+14155550100"
    assert message.delivery_status == "sent" and message.external_id == f"provider-{message.pk}"
    conversation.refresh_from_db()
    assert conversation.first_response_at == message.created_at
    assert conversation.last_message == message and not conversation.is_unread


def test_first_response_time_is_kept_from_the_first_reply(receive, recording_sender):
    agent = make_user("sarah")
    conversation = receive().message.conversation
    first = services.reply(conversation=conversation, author=agent, text="one")
    services.reply(conversation=conversation, author=agent, text="two")
    conversation.refresh_from_db()
    assert conversation.first_response_at == first.created_at


def test_reply_without_a_sender_is_refused_before_anything_is_stored(receive, settings):
    settings.INBOX_SENDERS = {}
    conversation = receive().message.conversation
    with pytest.raises(services.CannotReply) as info:
        services.reply(conversation=conversation, author=make_user("sarah"), text="hello")
    assert "Email replies are not set up yet" in info.value.message
    assert not Message.objects.filter(direction="outbound").exists()


def test_a_reply_whose_sender_was_removed_after_queueing_fails_with_a_reason(
        receive, settings, django_capture_on_commit_callbacks):
    settings.INBOX_SENDERS = {"email": "tests.senders.record"}
    conversation = receive().message.conversation
    message = services.reply(conversation=conversation, author=make_user("sarah"), text="hello")
    settings.INBOX_SENDERS = {}
    from inbox.tasks import deliver_message

    deliver_message.delay(message.pk)
    message.refresh_from_db()
    assert message.delivery_status == "failed"
    assert "No sender is configured" in message.status_reason


def test_transient_send_failures_are_retried(receive, settings, django_capture_on_commit_callbacks):
    settings.INBOX_SENDERS = {"email": "tests.senders.flaky"}
    senders.sent.clear()
    senders.failures_before_success["n"] = 2
    conversation = receive().message.conversation
    with django_capture_on_commit_callbacks(execute=True):
        message = services.reply(conversation=conversation, author=make_user("sarah"), text="hello")
    message.refresh_from_db()
    assert message.delivery_status == "sent"
    assert senders.sent == [message.pk]


def test_permanent_send_failures_mark_the_message_failed(receive, settings, django_capture_on_commit_callbacks):
    settings.INBOX_SENDERS = {"email": "tests.senders.refuse"}
    conversation = receive().message.conversation
    with django_capture_on_commit_callbacks(execute=True):
        message = services.reply(conversation=conversation, author=make_user("sarah"), text="hello")
    message.refresh_from_db()
    assert message.delivery_status == "failed" and "550" in message.status_reason


@pytest.mark.parametrize("text", ["", "   \n  "])
def test_empty_reply_is_refused(receive, text):
    conversation = receive().message.conversation
    with pytest.raises(ValidationError):
        services.reply(conversation=conversation, author=make_user("sarah"), text=text)
    assert not Message.objects.filter(direction="outbound").exists()


def test_oversized_reply_is_refused(receive, settings):
    conversation = receive().message.conversation
    with pytest.raises(services.ReplyTooLarge):
        services.reply(conversation=conversation, author=make_user("sarah"),
                       text="x" * (settings.INBOX_MAX_REPLY_CHARS + 1))


def test_reply_to_a_closed_conversation_is_refused(receive):
    conversation = receive().message.conversation
    services.set_status(conversation=conversation, status="closed")
    with pytest.raises(services.InvalidTransition):
        services.reply(conversation=conversation, author=make_user("sarah"), text="hi")


def test_calls_cannot_be_answered_in_writing(receive):
    conversation = receive(channel="call", sender="+14155550100").message.conversation
    with pytest.raises(services.CannotReply):
        services.reply(conversation=conversation, author=make_user("sarah"), text="hi", channel="call")


def test_sms_reply_needs_a_phone_number(receive, recording_sender):
    conversation = receive(sender="nophone@example.com").message.conversation
    with pytest.raises(services.CannotReply) as info:
        services.reply(conversation=conversation, author=make_user("sarah"), text="hi", channel="sms")
    assert "no phone number" in info.value.message


# --- status, assignment, notes ------------------------------------------------

@pytest.mark.parametrize("path, ok", [
    (["pending", "open", "resolved", "closed"], True),
    (["resolved", "open"], True),
    (["closed", "open"], True),
    (["resolved", "pending"], False),
    (["closed", "resolved"], False),
])
def test_status_transitions(receive, path, ok):
    conversation = receive().message.conversation
    if ok:
        for status in path:
            conversation = services.set_status(conversation=conversation, status=status)
        assert conversation.status == path[-1]
    else:
        services.set_status(conversation=conversation, status=path[0])
        with pytest.raises(services.InvalidTransition):
            services.set_status(conversation=conversation, status=path[1])


def test_resolved_at_is_exact_and_cleared_on_reopen(receive):
    conversation = receive().message.conversation
    before = timezone.now()
    conversation = services.set_status(conversation=conversation, status="resolved")
    assert before <= conversation.resolved_at <= timezone.now()
    resolved_at = conversation.resolved_at
    conversation = services.set_status(conversation=conversation, status="closed")
    assert conversation.resolved_at == resolved_at
    conversation = services.set_status(conversation=conversation, status="open")
    assert conversation.resolved_at is None


def test_only_active_staff_can_be_assigned(receive):
    conversation = receive().message.conversation
    outsider = make_user("outsider", role=None)
    with pytest.raises(ValidationError):
        services.assign(conversation=conversation, assignee=outsider)
    agent = make_user("sarah")
    assert services.assign(conversation=conversation, assignee=agent).assignee == agent
    assert services.assign(conversation=conversation, assignee=None).assignee is None


def test_note_mentions_notify_only_the_mentioned_user(receive):
    conversation = receive().message.conversation
    author, mentioned, other = make_user("alex"), make_user("sarah"), make_user("mike")
    note = services.add_note(conversation=conversation, author=author, body="@sarah can you call them? @nobody")
    mention = InboxEvent.objects.get(type="mention")
    assert mention.recipient == mentioned
    assert mention.payload["note"] == note.pk
    assert not InboxEvent.objects.filter(type="mention", recipient=other).exists()
    assert not Message.objects.filter(direction="outbound").exists()  # notes never leave


def test_empty_note_is_refused(receive):
    with pytest.raises(ValidationError):
        services.add_note(conversation=receive().message.conversation, author=make_user("a1"), body="  ")


def test_delivery_status_only_moves_forward(receive):
    conversation = receive().message.conversation
    message = services.reply(conversation=conversation, author=make_user("sarah"), text="hi")
    assert services.update_delivery(message=message, status="opened")
    assert not services.update_delivery(message=message, status="delivered")
    message.refresh_from_db()
    assert message.delivery_status == "opened"
    assert services.update_delivery(message=message, status="failed", reason="bounced")
    message.refresh_from_db()
    assert message.delivery_status == "failed" and message.status_reason == "bounced"


def test_mark_read_clears_unread(receive):
    conversation = receive().message.conversation
    assert conversation.is_unread
    services.mark_read(conversation=conversation, by=make_user("sarah"))
    conversation.refresh_from_db()
    assert not conversation.is_unread


def test_old_live_events_are_pruned(receive, settings):
    from inbox.tasks import prune_events

    receive()
    InboxEvent.objects.update(created_at=timezone.now() - timedelta(days=settings.INBOX_EVENT_RETENTION_DAYS + 1))
    receive(sender="fresh@example.com")
    fresh = InboxEvent.objects.filter(created_at__gte=timezone.now() - timedelta(minutes=1)).count()
    assert prune_events.delay().get() == 2
    assert InboxEvent.objects.count() == fresh


def test_receiving_from_a_known_customer_takes_few_queries(receive, customer, django_assert_num_queries):
    receive(sender="john@example.com")
    # Savepoint, the dedupe lookup, the customer and the conversation (both locked), the message,
    # the conversation's update, both events in one insert, the history row, the routing rules, release.
    with django_assert_num_queries(10):
        received = receive(sender="john@example.com", text="Second message")
    assert received.created and not received.conversation_created
    conversation = received.message.conversation
    conversation.refresh_from_db()
    assert conversation.last_message == received.message
    assert list(InboxEvent.objects.values_list("type", flat=True)) == [
        "conversation.created", "message.created", "conversation.updated", "message.created"]


def test_bulk_receiving_publishes_committed_events_together_after_the_block(
        receive, monkeypatch, django_capture_on_commit_callbacks):
    from django.db import transaction

    from inbox import events

    published = []
    monkeypatch.setattr(events, "_publish", lambda items: published.append([m["type"] for _, m in items]))
    with services.receiving_in_bulk():
        with django_capture_on_commit_callbacks(execute=True):
            receive(sender="a@example.com")
            with pytest.raises(RuntimeError), transaction.atomic():
                receive(sender="b@example.com")
                raise RuntimeError("undone: its events must never go out")
            receive(sender="a@example.com")
        assert published == []  # committed, but the block has not ended yet
    assert published == [["conversation.created", "message.created", "conversation.updated", "message.created"]]
    ids = list(InboxEvent.objects.values_list("id", flat=True))
    assert len(ids) == 4 and ids == sorted(ids)


def test_outside_a_bulk_block_each_event_is_published_at_its_commit(
        receive, monkeypatch, django_capture_on_commit_callbacks):
    from inbox import events

    published = []
    monkeypatch.setattr(events, "_publish", lambda items: published.append([m["id"] for _, m in items]))
    with django_capture_on_commit_callbacks(execute=True):
        receive()
    assert published == [[e] for e in InboxEvent.objects.values_list("id", flat=True)]


def test_a_failing_channel_layer_is_counted_and_never_fails_the_write(receive, monkeypatch,
                                                                       django_capture_on_commit_callbacks):
    from inbox import events

    class BrokenLayer:
        async def group_send(self, group, message):
            raise ConnectionError("layer down")

    monkeypatch.setattr(events, "get_channel_layer", lambda: BrokenLayer())
    before = events.publish_failures
    with services.receiving_in_bulk(), django_capture_on_commit_callbacks(execute=True):
        received = receive()
    assert received.created and events.publish_failures == before + 2
