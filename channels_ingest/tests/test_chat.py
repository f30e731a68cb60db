"""The website chat's services, sender and staff typing signal (channels_ingest/chat/)."""

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core import mail
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection

from channels_ingest.chat import services
from crm.models import Customer, CustomerIdentity
from inbox import services as inbox_services
from inbox.models import ConversationActivity, Message
from inbox.tasks import deliver_message
from tests.factories import make_customer, make_user
from tests.layers import use_own_channel_layer

TOKEN = "Tok_" + "a1B2" * 8
OTHER = "Oth_" + "z9Y8" * 8


@pytest.fixture(autouse=True)
def fresh(settings):
    use_own_channel_layer(settings)
    settings.INBOX_SENDERS = {**settings.INBOX_SENDERS, "chat": "channels_ingest.chat.sender.send"}
    cache.clear()


def listen(digest):
    """A channel in the visitor's group, as an open socket of theirs would be; returns a reader."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(services.visitor_group(digest), channel)

    def read():
        return async_to_sync(layer.receive)(channel)["frame"]
    return read


def test_a_visitor_line_joins_their_thread_and_the_token_is_never_stored(db):
    received = services.visitor_says(token=TOKEN, text="Do you cater in Fremont?", client_id="c1abcdef")
    message = received.message
    assert (message.channel, message.direction, message.text) == ("chat", "inbound", "Do you cater in Fremont?")
    stored = CustomerIdentity.objects.get(customer=message.customer)
    assert stored.kind == "visitor" and stored.value == services.digest_of(TOKEN)
    assert TOKEN not in stored.value and TOKEN not in str(message.metadata) and TOKEN not in (message.external_id or "")
    assert message.conversation.status == "open" and message.conversation.is_unread


def test_a_line_sent_again_after_a_reconnect_is_stored_once(db):
    first = services.visitor_says(token=TOKEN, text="hello", client_id="c1abcdef")
    again = services.visitor_says(token=TOKEN, text="hello", client_id="c1abcdef")
    assert not again.created and again.message.pk == first.message.pk
    assert Message.objects.count() == 1


def test_four_kilobytes_is_the_limit(db):
    services.visitor_says(token=TOKEN, text="é" * 2048)  # 4096 bytes
    with pytest.raises(ValidationError) as refused:
        services.visitor_says(token=TOKEN, text="é" * 2048 + "x")
    assert "4 KB" in refused.value.messages[0]
    assert Message.objects.count() == 1


@pytest.mark.parametrize("token", ["short", "x" * 21, "has space in it and long enough", "ü" * 30])
def test_tokens_the_widget_cannot_make_are_refused(db, token):
    with pytest.raises(ValidationError):
        services.visitor_says(token=token, text="hi")
    assert not Message.objects.exists()


def test_contact_details_of_a_new_person_are_recorded_on_their_customer(db):
    services.visitor_says(token=TOKEN, text="hi")
    customer = services.leave_contact(token=TOKEN, name="<script>alert(1)</script> Kim", email="Kim@Example.com ",
                                      phone="(415) 555-0123")
    assert customer.first_name == "<script>alert(1)</script>"  # kept as text; shown escaped everywhere
    kinds = dict(CustomerIdentity.objects.filter(customer=customer).values_list("kind", "value"))
    assert kinds == {"visitor": services.digest_of(TOKEN), "email": "kim@example.com", "phone": "+14155550123"}
    note = Message.objects.filter(metadata__kind="contact").get()
    assert "kim@example.com" in note.text


def test_a_known_email_merges_the_visitor_into_that_customer(db):
    known = make_customer("john@example.com", first_name="John")
    inbox_services.receive_message(channel="email", sender="john@example.com", text="Private booking details",
                                   external_id="e1")
    services.visitor_says(token=TOKEN, text="It's John from the website")
    visitor_customer = Customer.objects.get(identities__kind="visitor")

    customer = services.leave_contact(token=TOKEN, name="Mallory", email="JOHN@example.com")

    assert customer.pk == known.pk and customer.first_name == "John"  # a visitor never renames a known customer
    assert not Customer.objects.filter(pk=visitor_customer.pk).exists()
    assert Message.objects.filter(customer=known, channel="chat").count() == 2  # the line and the contact note
    assert ConversationActivity.objects.filter(kind="merged", from_value=str(visitor_customer.pk),
                                               to_value=str(known.pk)).exists()
    # The visitor's page still shows only their own lines, not the customer's email.
    texts = [line["text"] for line in services.history(services.digest_of(TOKEN))]
    assert texts == ["It's John from the website"]


def test_a_bad_email_is_refused_with_the_field_and_nothing_changes(db):
    services.visitor_says(token=TOKEN, text="hi")
    with pytest.raises(ValidationError) as refused:
        services.leave_contact(token=TOKEN, email="not an email")
    assert "email" in refused.value.message_dict
    assert CustomerIdentity.objects.count() == 1


def test_history_is_the_visitors_own_and_another_token_reads_nothing(db):
    agent = make_user("alice", first_name="Alice", last_name="Secret-Lastname")
    conversation = services.visitor_says(token=TOKEN, text="first").message.conversation
    reply = inbox_services.reply(conversation=conversation, author=agent, text="Hi! How many guests?", channel="chat")
    deliver_message.apply(args=[reply.pk])
    lines = services.history(services.digest_of(TOKEN))
    assert [(line["from"], line["text"]) for line in lines] == [("visitor", "first"),
                                                                 ("staff", "Hi! How many guests?")]
    assert lines[1]["agent"] == "Alice"
    assert set(lines[1]) == {"type", "id", "from", "text", "at", "agent"}
    assert "Secret" not in str(lines)
    assert services.history(services.digest_of(OTHER)) == []


def test_a_staff_reply_reaches_the_visitors_sockets_with_the_agents_first_name_only(db):
    agent = make_user("alice", first_name="Alice", last_name="Lastname", email="alice@staff.example")
    conversation = services.visitor_says(token=TOKEN, text="hi").message.conversation
    services.mark_present(services.digest_of(TOKEN))
    read = listen(services.digest_of(TOKEN))
    reply = inbox_services.reply(conversation=conversation, author=agent, text="<b>Hello</b>", channel="chat")
    assert deliver_message.apply(args=[reply.pk]).get() == "sent"
    frame = read()
    assert frame == {"type": "message", "id": reply.pk, "from": "staff", "text": "<b>Hello</b>",
                     "at": reply.created_at.isoformat(), "agent": "Alice"}
    reply.refresh_from_db()
    assert reply.delivery_status == "sent" and reply.metadata["visitor"] == services.digest_of(TOKEN)
    assert mail.outbox == []  # present: no email


def test_a_reply_goes_to_the_visitor_after_two_queries_before_anything_else(db, monkeypatch):
    agent = make_user("alice", first_name="Alice")
    conversation = services.visitor_says(token=TOKEN, text="hi").message.conversation
    reply = inbox_services.reply(conversation=conversation, author=agent, text="Hello", channel="chat")
    layer, steps = get_channel_layer(), []
    real_send, real_get = layer.group_send, cache.get

    async def group_send(group, message):
        steps.append("frame")
        return await real_send(group, message)

    def query(execute, sql, params, many, context):
        steps.append("query")
        return execute(sql, params, many, context)

    monkeypatch.setattr(layer, "group_send", group_send)
    monkeypatch.setattr(cache, "get", lambda *a, **k: steps.append("cache") or real_get(*a, **k))
    with connection.execute_wrapper(query):
        assert deliver_message.apply(args=[reply.pk]).get() == "sent"
    # The reply with its author, the visitor it goes to, the frame; presence and the rest after.
    assert steps[:4] == ["query", "query", "frame", "cache"]


def test_a_visitor_who_left_and_gave_an_email_gets_the_reply_by_email(db):
    agent = make_user("alice", first_name="Alice")
    conversation = services.visitor_says(token=TOKEN, text="Call me back?").message.conversation
    services.leave_contact(token=TOKEN, email="kim@example.com")
    services.mark_absent(services.digest_of(TOKEN))
    reply = inbox_services.reply(conversation=conversation, author=agent, text="Sure, what time?", channel="chat")
    assert deliver_message.apply(args=[reply.pk]).get() == "sent"
    assert [m.to for m in mail.outbox] == [["kim@example.com"]]
    assert "Sure, what time?" in mail.outbox[0].body
    reply.refresh_from_db()
    assert reply.metadata["emailed_to"] == "kim@example.com"
    # Still in their history for when they come back.
    assert services.history(services.digest_of(TOKEN))[-1]["text"] == "Sure, what time?"


def test_a_chat_reply_to_a_customer_who_never_chatted_fails_with_a_reason(db):
    agent = make_user("alice")
    conversation = inbox_services.receive_message(channel="email", sender="x@example.com", text="hi",
                                                  external_id="e1").message.conversation
    # Refused before anything is stored (inbox.channels.reply_options: no chat to answer in).
    with pytest.raises(inbox_services.CannotReply, match="has not started a chat with us"):
        inbox_services.reply(conversation=conversation, author=agent, text="hello", channel="chat")
    assert not conversation.messages.filter(direction="outbound").exists()


def test_staff_typing_reaches_the_visitor(agent_client, agent):
    conversation = services.visitor_says(token=TOKEN, text="hi").message.conversation
    read = listen(services.digest_of(TOKEN))
    response = agent_client.post(f"/chat/typing/{conversation.pk}")
    assert response.status_code == 204
    assert read() == {"type": "typing", "agent": "Alice"}


def test_typing_is_for_staff_only(client, db):
    conversation = services.visitor_says(token=TOKEN, text="hi").message.conversation
    assert client.post(f"/chat/typing/{conversation.pk}").status_code == 302  # to the log-in page
    outsider = make_user("outsider", role=None)
    client.force_login(outsider)
    assert client.post(f"/chat/typing/{conversation.pk}").status_code == 403
    assert client.get(f"/chat/typing/{conversation.pk}").status_code == 405


def test_the_staff_thread_shows_a_script_tag_name_and_line_as_text(agent_client):
    services.visitor_says(token=TOKEN, text="<img src=x onerror=alert(1)>")
    services.leave_contact(token=TOKEN, name="<script>alert(1)</script>")
    conversation = Message.objects.first().conversation
    page = agent_client.get(f"/inbox/{conversation.pk}/").content.decode()
    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_history_reads_a_constant_number_of_queries(db, django_assert_num_queries):
    agent = make_user("alice", first_name="Alice")
    conversation = services.visitor_says(token=TOKEN, text="first").message.conversation
    for n in range(5):
        services.visitor_says(token=TOKEN, text=f"line {n}")
        reply = inbox_services.reply(conversation=conversation, author=agent, text=f"answer {n}", channel="chat")
        deliver_message.apply(args=[reply.pk])
    with django_assert_num_queries(2):  # the visitor's customer, then their lines with the agents' names
        lines = services.history(services.digest_of(TOKEN))
    assert len(lines) == 11
