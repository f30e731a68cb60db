"""The channel registry and the rules everything reads off it."""
import re

import pytest

from inbox import channels, text
from inbox.models import InboxEvent

pytestmark = pytest.mark.django_db

QUOTED_EMAIL = "Thanks, see you Saturday!\n\nOn Mon, 3 Nov 2026, John Doe wrote:\n> Can you do 14 guests?\n> Thanks"


def test_the_list_the_api_and_the_live_event_preview_a_message_alike(agent_client, receive):
    received = receive(sender="john@example.com", text=QUOTED_EMAIL, subject="Party")
    expected = "Thanks, see you Saturday!"

    api_row = agent_client.get("/api/v1/inbox").json()["results"][0]
    assert api_row["last_message"]["preview"] == expected
    event = InboxEvent.objects.get(type="message.created", payload__id=received.message.pk)
    assert event.payload["preview"] == expected
    page = agent_client.get("/inbox/").content.decode()
    shown = re.search(r'<span class="preview">(.*?)</span>', page, re.S).group(1)
    assert expected in shown and "wrote" not in shown


def test_a_message_without_text_previews_its_subject():
    assert text.preview("", "Menu for Saturday") == "Menu for Saturday"
    assert text.preview("> all quoted\n> lines", "Re: menu") == "> all quoted > lines"


def test_splitting_quoted_history_of_a_very_long_message_keeps_its_answer():
    body = "\n".join(f"line {n}" for n in range(50_000))
    new, quoted = text.split_quoted_text(body + "\nOn Tue, Ann wrote:\n> earlier")
    assert new == body and quoted.startswith("On Tue, Ann wrote:")


def test_every_channel_has_an_icon_the_pages_can_show(agent_client):
    page = agent_client.get("/inbox/").content.decode()
    for spec in channels.all_channels():
        assert f'id="i-{spec.icon_id}"' in page, spec.name


def _offered(page):
    select = re.search(r'<select id="reply-channel".*?</select>', page, re.S)
    options = re.findall(r'<option value="(\w+)"( selected)?', select.group(0)) if select else []
    return [name for name, _ in options], next((name for name, chosen in options if chosen), None)


def test_the_reply_box_offers_only_channels_that_can_send_now_and_says_why_the_others_cannot(
        agent_client, receive, recording_sender):
    conversation = receive(sender="+14155550100", channel="call", text="Missed call").message.conversation
    page = agent_client.get(f"/inbox/{conversation.pk}/").content.decode()
    offered, chosen = _offered(page)
    assert offered == ["sms"] and chosen == "sms"  # a call is answered where the same phone number is reached
    missing = re.search(r'<ul id="channels-missing".*?</ul>', page, re.S).group(0)
    assert "<strong>Email:</strong>" in missing and "has no email address on file" in missing
    assert "<strong>Chat:</strong>" in missing and "has not started a chat" in missing


def test_a_channel_without_a_sender_is_not_offered_and_the_reason_says_so(agent_client, receive, settings):
    settings.INBOX_SENDERS = {"email": "tests.senders.record"}
    conversation = receive(sender="john@example.com", text="Hi").message.conversation
    conversation.customer.identities.create(kind="phone", value="+14155550199")
    receive(sender="+14155550199", channel="sms", text="Sent from my phone")  # the customer last wrote by SMS
    page = agent_client.get(f"/inbox/{conversation.pk}/").content.decode()
    offered, chosen = _offered(page)
    assert offered == ["email"] and chosen == "email"
    assert "SMS replies are not set up yet (no SMS sender is configured)." in page


def test_the_default_is_the_channel_the_customer_last_wrote_on_even_after_replies_on_another(
        agent_client, receive, recording_sender, agent):
    from inbox import services

    conversation = receive(sender="john@example.com", text="Hi").message.conversation
    conversation.customer.identities.create(kind="phone", value="+14155550199")
    for text in ("First answer", "Second answer"):
        services.reply(conversation=conversation, author=agent, text=text, channel="email")
    assert channels.reply_options(conversation.customer).default == "email"
    offered, chosen = _offered(agent_client.get(f"/inbox/{conversation.pk}/").content.decode())
    assert offered == ["email", "sms"] and chosen == "email"


def test_the_api_refuses_a_reply_on_a_channel_that_cannot_send_with_the_reason(agent_client, receive, settings):
    settings.INBOX_SENDERS = {"email": "tests.senders.record"}
    conversation = receive(sender="john@example.com", text="Hi").message.conversation
    conversation.customer.identities.create(kind="phone", value="+14155550199")
    response = agent_client.post(f"/api/v1/inbox/{conversation.pk}/reply",
                                 {"text": "Hello", "channel": "sms"}, content_type="application/json")
    assert response.status_code == 422, response.content
    assert "SMS replies are not set up yet" in response.content.decode()
    detail = agent_client.get(f"/api/v1/inbox/{conversation.pk}").json()
    assert detail["reply_options"]["available"] == ["email"] and detail["reply_options"]["default"] == "email"
    assert {m["channel"] for m in detail["reply_options"]["missing"]} == {"sms", "chat"}


def test_an_anonymous_website_visitor_is_received_by_their_token(agent, recording_sender):
    from inbox import services

    token = "visitor-7fQ2mZ8kL0pX3sW9dR1tY6"
    first = services.receive_message(channel="chat", sender=token, text="Do you cater weddings?", external_id="c1")
    again = services.receive_message(channel="chat", sender=token, text="For 80 guests", external_id="c2")
    customer = first.message.customer
    assert again.message.conversation == first.message.conversation
    identity = customer.identities.get()
    assert identity.kind == "visitor" and token not in identity.value
    assert customer.preferred_channel == "chat"
    reply = services.reply(conversation=first.message.conversation, author=agent, text="We do!")
    assert reply.channel == "chat" and "to" not in reply.metadata  # answered in the chat session itself


# --- one rule for SMS opt-out: the composer, the API's reply_options and the send path ------

def _opted_out_sms_customer(receive):
    from django.utils import timezone

    from tests.factories import make_customer

    make_customer("john@example.com", phone="+14155550100")
    conversation = receive(sender="+14155550100", channel="sms", text="STOP").message.conversation
    conversation.customer.identities.filter(kind="phone").update(opted_out_at=timezone.now(), opt_out_keyword="STOP")
    return conversation


def test_the_api_does_not_offer_sms_to_a_number_that_opted_out_and_says_why(agent_client, receive, recording_sender):
    """The API listed SMS as available while a reply on it was refused."""
    conversation = _opted_out_sms_customer(receive)
    options = agent_client.get(f"/api/v1/inbox/{conversation.pk}").json()["reply_options"]
    assert options["available"] == ["email"]
    [sms] = [m for m in options["missing"] if m["channel"] == "sms"]
    assert "+14155550100 opted out of SMS by texting STOP" in sms["reason"]
    response = agent_client.post(f"/api/v1/inbox/{conversation.pk}/reply", {"text": "Hello", "channel": "sms"},
                                 content_type="application/json")
    assert response.status_code == 422 and sms["reason"] in response.content.decode()
    # The composer still offers SMS (the customer's channel) with the same words, before anyone writes.
    page = agent_client.get(f"/inbox/{conversation.pk}/").content.decode()
    assert _offered(page) == (["email", "sms"], "sms")
    assert re.search(r'<p id="channel-refusal"[^>]*>\+14155550100 opted out of SMS by texting STOP', page)


def test_retry_of_a_failed_sms_to_a_number_that_since_opted_out_is_refused_saying_why(
        receive, agent, settings, django_capture_on_commit_callbacks):
    """Retry queued the SMS again (for the sender to refuse at send time) without a word to the agent."""
    from inbox import services
    from inbox.errors import CannotReply

    conversation = _opted_out_sms_customer(receive)
    conversation.customer.identities.filter(kind="phone").update(opted_out_at=None)
    settings.INBOX_SENDERS = {"email": "tests.senders.record", "sms": "tests.senders.refuse"}
    with django_capture_on_commit_callbacks(execute=True):
        failed = services.reply(conversation=conversation, author=agent, text="Saturday works", channel="sms")
    failed.refresh_from_db()
    assert failed.delivery_status == "failed"
    conversation.customer.identities.filter(kind="phone").update(opted_out_at="2026-11-01T10:00:00Z")
    with pytest.raises(CannotReply, match="opted out of SMS by texting STOP"):
        services.retry_reply(message=failed, by=agent)
    failed.refresh_from_db()
    assert failed.delivery_status == "failed"


def test_an_unreadable_number_is_no_sms_address_anywhere(agent_client, receive, recording_sender):
    """The composer and the API offered SMS to a customer whose only number could not be read;
    the send path then refused it."""
    conversation = receive(sender="unparsed:call me", channel="sms", text="hi").message.conversation
    assert conversation.customer.identities.get().value == "unparsed:call me"
    options = agent_client.get(f"/api/v1/inbox/{conversation.pk}").json()["reply_options"]
    assert "sms" not in options["available"]
    assert {m["channel"]: m["reason"] for m in options["missing"]}["sms"].endswith("has no phone number on file.")
    assert "sms" not in _offered(agent_client.get(f"/inbox/{conversation.pk}/").content.decode())[0]
