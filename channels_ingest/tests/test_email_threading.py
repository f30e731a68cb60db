"""Replies land in the right conversation; bounces and auto-replies never open one."""
import pytest

from channels_ingest.email.ingest import store_email
from channels_ingest.email.threads import conversation_id_from, outbound_message_id
from channels_ingest.models import Suppression
from inbox import services
from inbox.models import Conversation, Message
from tests.factories import make_user

from . import mails


@pytest.fixture
def thread(db):
    """Jane wrote in, and an agent replied (the reply went out with our Message-ID)."""
    first = store_email(mails.plain(), source="imap").message
    agent = make_user("alice")
    reply = services.reply(conversation=first.conversation, author=agent, text="Yes, Saturday works!")
    our_id = outbound_message_id(conversation_id=first.conversation_id, message_id=reply.pk)
    services.update_delivery(message=reply, status="sent", external_id=our_id)
    return first.conversation, reply, our_id


def test_our_message_id_carries_a_verified_conversation_token(db):
    token = outbound_message_id(conversation_id=42, message_id=7)
    assert conversation_id_from(token) == 42
    tampered = token.replace("c42.", "c43.")
    assert conversation_id_from(tampered) is None


def test_reply_from_another_address_lands_in_the_thread(thread):
    conversation, _, our_id = thread
    result = store_email(mails.reply(mid="<r1@other.example.com>", in_reply_to=f"<{our_id}>",
                                     frm="Jane at work <jane@work.example.com>"), source="imap")
    assert result.message.conversation == conversation
    assert result.message.metadata["from"] == "jane@work.example.com"
    assert Conversation.objects.count() == 1


def test_reply_found_through_references_when_in_reply_to_is_someone_elses(thread):
    conversation, _, our_id = thread
    raw = mails.reply(mid="<r2@cc.example.com>", in_reply_to="<unknown@cc.example.com>",
                      references=[f"<{our_id}>", "<unknown@cc.example.com>"], frm="Bob <bob@cc.example.com>")
    assert store_email(raw, source="imap").message.conversation == conversation


def test_reply_to_an_earlier_inbound_email_threads_by_its_message_id(thread):
    conversation, _, _ = thread
    raw = mails.reply(mid="<r3@example.com>", in_reply_to="<m1@mail.example.com>", frm="Bob <bob@cc.example.com>")
    assert store_email(raw, source="imap").message.conversation == conversation


def test_same_subject_alone_does_not_thread(thread):
    conversation, _, _ = thread
    other = store_email(mails.plain(mid="<x@elsewhere.example.com>", frm="Sam <sam@elsewhere.example.com>",
                                    subject="Party for 12 guests"), source="imap").message
    assert other.conversation != conversation


def test_bounce_marks_our_reply_failed_and_suppresses_the_address(thread):
    conversation, reply, our_id = thread
    result = store_email(mails.bounce(original_mid=our_id, recipient="jane@example.com"), source="imap")
    reply.refresh_from_db()
    assert reply.delivery_status == "failed" and "5.1.1" in reply.status_reason
    assert Suppression.objects.get(email="jane@example.com").reason == "bounced"
    assert result.message.conversation == conversation and result.message.metadata["auto"] == "bounce"
    conversation.refresh_from_db()
    assert conversation.status == "open"


def test_auto_reply_joins_without_reopening_or_marking_unread(thread):
    conversation, _, our_id = thread
    services.set_status(conversation=conversation, status="resolved")
    Conversation.objects.filter(pk=conversation.pk).update(is_unread=False)
    message = store_email(mails.auto_reply(in_reply_to=f"<{our_id}>"), source="imap").message
    conversation.refresh_from_db()
    assert message.conversation == conversation
    assert conversation.status == "resolved" and not conversation.is_unread


def test_auto_reply_and_list_mail_from_strangers_never_show_in_the_inbox(db):
    for raw in (mails.auto_reply(frm="Stranger <stranger@example.org>"), mails.list_mail()):
        message = store_email(raw, source="imap").message
        assert message.conversation.status == "closed" and not message.conversation.is_unread
    assert not Conversation.objects.filter(status="open").exists()


def test_bounce_for_unknown_mail_is_kept_out_of_the_inbox(db):
    message = store_email(mails.bounce(original_mid="someone-else@example.net"), source="imap").message
    assert message.conversation.status == "closed"
    assert Message.objects.filter(direction="inbound").count() == 1
