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


def test_the_reply_box_offers_only_channels_staff_can_answer_on(agent_client, receive):
    conversation = receive(sender="+14155550100", channel="call", text="Missed call").message.conversation
    page = agent_client.get(f"/inbox/{conversation.pk}/").content.decode()
    offered = set(re.findall(r'name="channel" value="(\w+)"', page)) or \
        set(re.findall(r'<option value="(\w+)"[^>]*>(?:Email|SMS|Chat|Call)<', page))
    assert offered == {name for name, _ in channels.reply_choices()}
    assert "call" not in offered


def test_an_anonymous_website_visitor_is_received_by_their_token(agent):
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
