"""A failed reply says so and can be sent again: Retry, or by email instead, each once."""
import json
import re

import pytest

from inbox import services
from inbox.models import Message
from tests import senders
from tests.factories import make_customer

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def failed_sms(receive, agent, settings, django_capture_on_commit_callbacks):
    """An SMS reply the provider refused, to a customer with an email and a phone."""
    make_customer("john@example.com", phone="+14155550100")
    conversation = receive(sender="+14155550100", channel="sms", text="Can you do Saturday?").message.conversation
    settings.INBOX_SENDERS = {"email": "tests.senders.record", "sms": "tests.senders.refuse"}
    with django_capture_on_commit_callbacks(execute=True):
        message = services.reply(conversation=conversation, author=agent, text="Yes, 6 pm works")
    message.refresh_from_db()
    assert message.channel == "sms" and message.delivery_status == "failed"
    senders.sent.clear()
    return message


def test_the_row_and_the_thread_say_failed_with_the_reason(agent_client, failed_sms):
    page = agent_client.get("/inbox/").content.decode()
    preview = re.search(r'<span class="preview">(.*?)</span>\s*</a>', page, re.S).group(1)
    assert "Failed:" in preview and "550 mailbox does not exist" in preview and "Sent:" not in preview
    thread = agent_client.get(f"/inbox/{failed_sms.conversation_id}/").content.decode()
    item = re.search(rf'<li class="item msg outbound" id="m-{failed_sms.pk}".*?</li>', thread, re.S).group(0)
    assert "<strong>Failed:</strong> 550 mailbox does not exist" in item
    assert ">Retry</button>" in item and ">Send by email instead</button>" in item


def test_retry_sends_once_however_often_it_is_clicked(agent_client, failed_sms, settings,
                                                      django_capture_on_commit_callbacks):
    settings.INBOX_SENDERS = {"email": "tests.senders.record", "sms": "tests.senders.record"}
    url = f"/inbox/{failed_sms.conversation_id}/messages/{failed_sms.pk}/retry"
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):  # a double (triple) click: the same attempt each time
            assert agent_client.post(url, {"attempt": "0"}, **HX).status_code == 200
    failed_sms.refresh_from_db()
    assert senders.sent == [failed_sms.pk]
    assert failed_sms.delivery_status == "sent" and failed_sms.metadata["retries"] == 1
    assert failed_sms.metadata["last_failure"] == "550 mailbox does not exist"


def test_a_retry_that_fails_again_can_be_retried_but_not_by_the_old_click(
        failed_sms, agent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.retry_reply(message=failed_sms, by=agent, attempt=0)
    failed_sms.refresh_from_db()
    assert failed_sms.delivery_status == "failed" and failed_sms.metadata["retries"] == 1
    services.retry_reply(message=failed_sms, by=agent, attempt=0)  # the first click, arriving late
    failed_sms.refresh_from_db()
    assert failed_sms.delivery_status == "failed" and failed_sms.metadata["retries"] == 1


def test_send_by_email_instead_sends_one_email_however_often_it_is_clicked(
        agent_client, failed_sms, django_capture_on_commit_callbacks):
    url = f"/inbox/{failed_sms.conversation_id}/messages/{failed_sms.pk}/email-instead"
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            assert agent_client.post(url, **HX).status_code == 200
    [email] = Message.objects.filter(channel="email", direction="outbound")
    assert email.text == failed_sms.text and email.metadata["to"] == "john@example.com"
    assert senders.sent == [email.pk]
    failed_sms.refresh_from_db()
    assert failed_sms.metadata["resent_as"] == email.pk
    thread = agent_client.get(f"/inbox/{failed_sms.conversation_id}/").content.decode()
    item = re.search(rf'<li class="item msg outbound" id="m-{failed_sms.pk}".*?</li>', thread, re.S).group(0)
    assert "sent again by email" in item and "Retry" not in item


def test_email_instead_is_not_offered_without_an_email_address(agent_client, receive, agent, settings,
                                                                 django_capture_on_commit_callbacks):
    conversation = receive(sender="+14155550111", channel="sms", text="hi").message.conversation
    settings.INBOX_SENDERS = {"email": "tests.senders.record", "sms": "tests.senders.refuse"}
    with django_capture_on_commit_callbacks(execute=True):
        message = services.reply(conversation=conversation, author=agent, text="hello")
    thread = agent_client.get(f"/inbox/{conversation.pk}/").content.decode()
    assert ">Retry</button>" in thread and "Send by email instead" not in thread
    response = agent_client.post(f"/inbox/{conversation.pk}/messages/{message.pk}/email-instead", **HX)
    assert response.status_code == 422 and "no email address on file" in response.content.decode()


def test_a_reply_of_another_customer_cannot_be_retried_through_this_thread(agent_client, failed_sms, receive):
    other = receive(sender="someone@example.com", text="hello").message.conversation
    response = agent_client.post(f"/inbox/{other.pk}/messages/{failed_sms.pk}/retry", **HX)
    assert response.status_code == 404


# --- the same through the API ------------------------------------------------------

def _post_json(client, url, data=None, **headers):
    return client.post(url, json.dumps(data or {}), content_type="application/json", **headers)


def test_the_api_retries_a_failed_reply_once(agent_client, failed_sms, settings, django_capture_on_commit_callbacks):
    settings.INBOX_SENDERS = {"email": "tests.senders.record", "sms": "tests.senders.record"}
    url = f"/api/v1/inbox/{failed_sms.conversation_id}/messages/{failed_sms.pk}/retry"
    with django_capture_on_commit_callbacks(execute=True):
        answers = [_post_json(agent_client, url, {"attempt": 0}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["id"] == failed_sms.pk and answers[0].json()["delivery_status"] == "queued"
    assert senders.sent == [failed_sms.pk]
    assert _post_json(agent_client, url, {"attempt": "two"}).status_code == 400


def test_the_api_sends_a_failed_sms_by_email_once(agent_client, failed_sms, django_capture_on_commit_callbacks):
    url = f"/api/v1/inbox/{failed_sms.conversation_id}/messages/{failed_sms.pk}/email-instead"
    with django_capture_on_commit_callbacks(execute=True):
        first = _post_json(agent_client, url, HTTP_IDEMPOTENCY_KEY="again-1")
        second = _post_json(agent_client, url)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] and first.json()["channel"] == "email"
    assert senders.sent == [first.json()["id"]]
    # An email cannot be "sent by email instead": 409 with the reason.
    refused = _post_json(agent_client, f"/api/v1/inbox/{failed_sms.conversation_id}/messages/{first.json()['id']}"
                                       "/email-instead")
    assert refused.status_code == 409 and "not sent again" in refused.json()["message"]


def test_the_api_finds_only_replies_of_this_thread(agent_client, client, failed_sms, receive):
    inbound = receive(sender="someone@example.com", text="hello").message
    base = f"/api/v1/inbox/{failed_sms.conversation_id}/messages"
    assert _post_json(agent_client, f"{base}/{inbound.pk}/retry").status_code == 404  # another customer's
    assert _post_json(agent_client, f"/api/v1/inbox/{inbound.conversation_id}/messages/{inbound.pk}/retry"
                      ).status_code == 404  # the customer's own message, not a reply
    assert _post_json(agent_client, f"{base}/99999999/email-instead").status_code == 404
    client.logout()
    assert _post_json(client, f"{base}/{failed_sms.pk}/retry").status_code in (401, 403)


# --- email replies: copies, attachments, the agent's signature ---------------------

def test_an_email_reply_carries_copies_attachments_and_the_signature(agent_client, agent, receive, media,
                                                                     recording_sender):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from channels_ingest.email.sender import build
    from myhibachi.models import StaffProfile

    StaffProfile.objects.create(user=agent, signature="Alice — My Hibachi\n(415) 555-0000")
    conversation = receive(text="Could you send the invoice again?").message.conversation
    invoice = SimpleUploadedFile("invoice-1042.pdf", b"%PDF-1.4 the invoice", content_type="application/pdf")
    response = agent_client.post(f"/inbox/{conversation.pk}/send", {
        "mode": "reply", "channel": "email", "text": "Here it is.", "cc": "Partner@Example.com, office@example.com",
        "attachments": [invoice]}, **HX)
    assert response.status_code == 200, response.content
    sent = Message.objects.get(direction="outbound")
    assert sent.text == "Here it is.\n\n-- \nAlice — My Hibachi\n(415) 555-0000"
    assert sent.metadata["cc"] == ["partner@example.com", "office@example.com"]
    [stored] = sent.metadata["attachments"]
    assert stored["filename"] == "invoice-1042.pdf" and stored["size"] == len(b"%PDF-1.4 the invoice")

    email = build(sent, to="john@example.com", message_id="m1@myhibachi.test")
    assert email.cc == ["partner@example.com", "office@example.com"]
    assert email.attachments[0][:3] == ("invoice-1042.pdf", b"%PDF-1.4 the invoice", "application/pdf")

    thread = agent_client.get(f"/inbox/{conversation.pk}/").content.decode()
    item = re.search(rf'<li class="item msg outbound" id="m-{sent.pk}".*?</li>\s*</ul>', thread, re.S).group(0)
    assert "Cc: partner@example.com, office@example.com" in item
    link = re.search(r'href="(/inbox/\d+/messages/\d+/attachments/0)"[^>]*>invoice-1042.pdf<', item).group(1)
    download = agent_client.get(link)
    assert download.status_code == 200 and download.getvalue() == b"%PDF-1.4 the invoice"
    assert download["Content-Disposition"].startswith("attachment;")


def test_the_thread_lists_attachments_received(agent_client, receive, media):
    from inbox import attachments

    meta = attachments.store(filename="menu.jpg", content_type="image/jpeg", data=b"jpeg bytes")
    conversation = receive(text="Our menu", metadata={"attachments": [meta, {"filename": "video.mov", "size": 90_000_000,
                                                                            "too_large": True}]}).message.conversation
    thread = agent_client.get(f"/inbox/{conversation.pk}/").content.decode()
    assert re.search(r'<img src="/inbox/\d+/messages/\d+/attachments/0" alt="menu.jpg"', thread)
    assert "video.mov (90.0 MB, too large to keep)" in thread
    assert agent_client.get(f"/inbox/{conversation.pk}/messages/1/attachments/1").status_code == 404


def test_copies_and_attachments_are_refused_on_sms_and_bad_copies_say_which(agent_client, agent, recording_sender):
    make_customer("john@example.com", phone="+14155550100")
    conversation = services.receive_message(channel="sms", sender="+14155550100", text="hi",
                                            external_id="s1").message.conversation
    with pytest.raises(services.CannotReply):
        services.reply(conversation=conversation, author=agent, text="hi", channel="sms", cc=["a@example.com"])
    response = agent_client.post(f"/inbox/{conversation.pk}/send",
                                 {"mode": "reply", "channel": "email", "text": "hi", "cc": "not-an-address"}, **HX)
    assert response.status_code == 422 and "not-an-address&#x27; is not an email address" in response.content.decode()
    assert not Message.objects.filter(direction="outbound").exists()
    sms = services.reply(conversation=conversation, author=agent, text="by text", channel="sms")
    assert sms.text == "by text"  # the signature is for email only


def test_a_staff_member_sets_their_own_signature(agent_client, agent):
    from myhibachi.models import signature_of

    assert agent_client.get("/inbox/signature").status_code == 200
    response = agent_client.post("/inbox/signature", {"signature": "  Alice, My Hibachi  "})
    assert response.status_code == 200 and "Signature saved." in response.content.decode()
    assert signature_of(agent) == "Alice, My Hibachi"
    assert agent_client.post("/inbox/signature", {"signature": "x" * 1001}).status_code == 422
