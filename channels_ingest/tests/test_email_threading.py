"""Replies land in the right conversation; bounces and auto-replies never open one."""
import pytest
from django.db import transaction

from channels_ingest.base import counted
from channels_ingest.email.ingest import store_email, store_emails
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
    raw = mails.reply(mid="<r3@example.com>", in_reply_to="<m1@mail.example.com>", frm="Jane <JANE@example.com>")
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


# --- Who may join a thread by quoting a Message-ID -------------------------------------------------

def test_a_stranger_quoting_a_customers_message_id_gets_a_conversation_of_their_own(thread):
    """Anyone on CC has seen Jane's Message-ID: quoting it does not put mail in her thread, under her name."""
    conversation, _, _ = thread
    before = list(conversation.messages.values_list("pk", flat=True))
    raw = mails.reply(mid="<hijack@evil.example.com>", in_reply_to="<m1@mail.example.com>",
                      references=["<m1@mail.example.com>"], frm="Jane Customer <mallory@evil.example.com>",
                      body="New bank details for the deposit: ...")
    message = store_email(raw, source="imap").message
    assert message.conversation != conversation
    assert message.customer != conversation.customer
    assert message.customer.identities.get().value == "mallory@evil.example.com"
    assert message.metadata["from"] == "mallory@evil.example.com"
    assert message.conversation.status == "open"  # in the inbox, as a new sender's mail
    conversation.refresh_from_db()
    assert list(conversation.messages.values_list("pk", flat=True)) == before


def test_the_customer_answering_from_another_registered_address_is_threaded(thread):
    conversation, _, _ = thread
    conversation.customer.identities.create(kind="email", value="jane@work.example.com")
    raw = mails.reply(mid="<r4@work.example.com>", in_reply_to="<m1@mail.example.com>",
                      frm="Jane at work <Jane@Work.example.com>")
    message = store_email(raw, source="imap").message
    assert message.conversation == conversation and message.customer == conversation.customer
    assert message.metadata["from"] == "jane@work.example.com"


def test_our_signed_message_id_threads_mail_from_an_unknown_address(thread):
    conversation, _, our_id = thread
    raw = mails.reply(mid="<r5@new.example.com>", in_reply_to=f"<{our_id}>", frm="J <j.customer@new.example.com>")
    message = store_email(raw, source="imap").message
    assert message.conversation == conversation
    assert message.metadata["from"] == "j.customer@new.example.com"


def test_a_made_up_token_threads_nothing(thread):
    conversation, reply, our_id = thread
    made_up = f"c{conversation.pk}.m{reply.pk}.{'0' * 10}@myhibachi.test"
    assert made_up != our_id
    raw = mails.reply(mid="<r6@evil.example.com>", in_reply_to=f"<{made_up}>", frm="Mallory <mallory@evil.example.com>")
    assert store_email(raw, source="imap").message.conversation != conversation


def _outcomes(results, victim):
    """Where each stored email went, in names that do not depend on database ids."""
    def name(message):
        if message.conversation_id == victim.pk:
            return "victim's thread"
        return "own conversation of " + ",".join(sorted(message.conversation.customer.identities.values_list(
            "value", flat=True)))
    return [(r.status, name(r.message), r.message.customer_id == victim.customer_id, r.message.metadata["from"])
            for r in results]


def test_the_imap_group_path_applies_the_same_rule_as_one_by_one(thread):
    conversation, _, our_id = thread
    conversation.customer.identities.create(kind="email", value="jane@work.example.com")
    group = [
        mails.reply(mid="<b1@evil.example.com>", in_reply_to="<m1@mail.example.com>",
                    frm="Jane <mallory@evil.example.com>"),
        mails.reply(mid="<b2@work.example.com>", in_reply_to="<m1@mail.example.com>",
                    frm="Jane <jane@work.example.com>"),
        mails.reply(mid="<b3@new.example.com>", in_reply_to=f"<{our_id}>", frm="Jane <j@new.example.com>"),
        mails.reply(mid="<b4@evil.example.com>", in_reply_to="<nothing@example.com>",
                    references=["<m1@mail.example.com>"], frm="Eve <eve@evil.example.com>"),
    ]
    runs = []
    for store in (lambda: [store_email(raw, source="imap") for raw in group],
                  lambda: store_emails([(raw, None, None) for raw in group], source="imap")):
        with transaction.atomic():
            runs.append(_outcomes(store(), conversation))
            transaction.set_rollback(True)
    assert runs[0] == runs[1]
    assert runs[1] == [
        ("stored", "own conversation of mallory@evil.example.com", False, "mallory@evil.example.com"),
        ("stored", "victim's thread", True, "jane@work.example.com"),
        ("stored", "victim's thread", True, "j@new.example.com"),
        ("stored", "own conversation of eve@evil.example.com", False, "eve@evil.example.com"),
    ]


# --- Delivery-status reports act only on our own mail ----------------------------------------------

def test_a_forged_report_naming_customers_suppresses_nobody_and_is_kept_for_staff(thread):
    conversation, reply, _ = thread
    for n, address in enumerate(["ann@example.com", "bo@example.com"]):
        store_email(mails.plain(mid=f"<c{n}@mail.example.com>", frm=f"C <{address}>"), source="imap")
    raw = mails.bounce(original_mid="m1@mail.example.com", recipient="jane@example.com",
                       others=[("ann@example.com", "5.1.1"), ("bo@example.com", "5.7.1")], mid="<forged@evil.example>")
    result = store_email(raw, source="imap")
    assert not Suppression.objects.exists()
    reply.refresh_from_db()
    assert reply.delivery_status == "sent"
    assert result.status == "stored" and result.message.direction == "inbound"
    assert "could not be delivered" in result.message.text
    assert result.message.conversation != conversation
    assert counted("email-bounces", "not_ours") == 1


def test_a_report_with_a_made_up_token_changes_nothing(thread):
    conversation, reply, our_id = thread
    forged = f"c{conversation.pk}.m{reply.pk}.{'0' * 10}@myhibachi.test"
    assert forged != our_id
    store_email(mails.bounce(original_mid=forged, recipient="jane@example.com"), source="imap")
    reply.refresh_from_db()
    assert reply.delivery_status == "sent" and not Suppression.objects.exists()


def test_a_genuine_bounce_suppresses_exactly_the_address_our_reply_went_to(thread):
    conversation, reply, our_id = thread
    assert reply.metadata["to"] == "jane@example.com"
    raw = mails.bounce(original_mid=our_id, recipient="jane@example.com",
                       others=[("ann@example.com", "5.1.1"), ("bo@example.com", "5.1.1")])
    result = store_email(raw, source="imap")
    assert list(Suppression.objects.values_list("email", flat=True)) == ["jane@example.com"]
    reply.refresh_from_db()
    assert reply.delivery_status == "failed" and "5.1.1" in reply.status_reason
    assert result.message.conversation == conversation


def test_a_report_on_our_reply_about_other_addresses_suppresses_nobody(thread):
    conversation, reply, our_id = thread
    store_email(mails.bounce(original_mid=our_id, recipient="ann@example.com", others=[("bo@example.com", "5.1.1")]),
                source="imap")
    assert not Suppression.objects.exists()
    reply.refresh_from_db()
    assert reply.delivery_status == "sent"
