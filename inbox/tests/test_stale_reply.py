"""A reply written before newer messages arrived is held ("traffic cop"): the service,
the API's 409 and the reply box of the thread screen."""
import json

import pytest
from django.test import Client

from inbox import services
from inbox.models import Message
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _post(client, url, data, **headers):
    return client.post(url, json.dumps(data), content_type="application/json", **headers)


@pytest.fixture
def bob(db):
    return make_user("bob", first_name="Bob", last_name="Lee")


@pytest.fixture
def thread(receive):
    """A conversation, and the id of the newest message an agent saw when they opened it."""
    first = receive(text="Can you do Saturday for 12?")
    return first.message.conversation, first.message.pk


def _outbound():
    return list(Message.objects.filter(direction="outbound").values_list("text", flat=True))


# --- the service ----------------------------------------------------------------------------

def test_a_reply_is_held_when_the_customer_wrote_again_meanwhile(agent, receive, thread):
    conversation, seen = thread
    newer = receive(text="Actually make it 14 people").message
    with pytest.raises(services.StaleReply) as held:
        services.reply(conversation=conversation, author=agent, text="Saturday works!", seen_through=seen)
    assert [m.pk for m in held.value.new_messages] == [newer.pk]
    assert held.value.status == 409
    assert _outbound() == []
    # Having seen it, the agent sends.
    services.reply(conversation=conversation, author=agent, text="Saturday for 14 works!", seen_through=newer.pk)
    assert _outbound() == ["Saturday for 14 works!"]


def test_another_agents_reply_holds_it_but_the_agents_own_do_not(agent, bob, thread):
    conversation, seen = thread
    mine = services.reply(conversation=conversation, author=agent, text="Checking the calendar", seen_through=seen)
    free = services.reply(conversation=conversation, author=agent, text="Yes, free", seen_through=seen)  # own: not new
    bobs = services.reply(conversation=conversation, author=bob, text="Booked you in!", seen_through=free.pk)
    with pytest.raises(services.StaleReply) as held:
        services.reply(conversation=conversation, author=agent, text="Shall I book?", seen_through=mine.pk)
    assert [m.pk for m in held.value.new_messages] == [bobs.pk]
    services.reply(conversation=conversation, author=agent, text="Shall I book?")  # no seen_through: no check
    assert _outbound()[-1] == "Shall I book?"


# --- the API ----------------------------------------------------------------------------------

def test_api_answers_409_with_the_new_items_and_sends_nothing(agent_client, receive, bob, thread,
                                                              django_assert_max_num_queries):
    conversation, seen = thread
    newer = receive(text="Also, one guest is vegan").message
    services.reply(conversation=conversation, author=bob, text="Noted the vegan guest")
    url = f"/api/v1/inbox/{conversation.pk}/reply"
    with django_assert_max_num_queries(12):
        response = _post(agent_client, url, {"text": "See you Saturday", "seen_through": seen})
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "stale_reply"
    assert body["message"] == "New activity since you started — review before sending."
    assert [(i["direction"], i["text"]) for i in body["new_items"]] == [
        ("inbound", "Also, one guest is vegan"), ("outbound", "Noted the vegan guest")]
    assert body["new_items"][1]["author"]["username"] == "bob"
    assert body["seen_through"] == body["new_items"][-1]["id"] > newer.pk
    assert "See you Saturday" not in _outbound()

    again = _post(agent_client, url, {"text": "See you Saturday", "seen_through": body["seen_through"]})
    assert again.status_code == 201
    assert _outbound().count("See you Saturday") == 1


def test_send_anyway_sends_once_also_with_the_same_idempotency_key(agent_client, receive, thread,
                                                                   django_capture_on_commit_callbacks):
    conversation, seen = thread
    receive(text="Hello?")
    url = f"/api/v1/inbox/{conversation.pk}/reply"
    held = _post(agent_client, url, {"text": "Yes!", "seen_through": seen}, HTTP_IDEMPOTENCY_KEY="k-7")
    assert held.status_code == 409
    # The refusal did not use up the key: a retry of the same body is checked again (still stale) ...
    retried = _post(agent_client, url, {"text": "Yes!", "seen_through": seen}, HTTP_IDEMPOTENCY_KEY="k-7")
    assert retried.status_code == 409 and "Idempotent-Replayed" not in retried
    # ... and the same key can carry "send anyway", which a network retry then replays.
    forced = {"text": "Yes!", "seen_through": seen, "send_anyway": True}
    with django_capture_on_commit_callbacks(execute=True):
        sent = _post(agent_client, url, forced, HTTP_IDEMPOTENCY_KEY="k-7")
        replayed = _post(agent_client, url, forced, HTTP_IDEMPOTENCY_KEY="k-7")
    assert sent.status_code == replayed.status_code == 201
    assert replayed["Idempotent-Replayed"] == "true" and replayed.json() == sent.json()
    assert _outbound() == ["Yes!"]


def test_a_reply_without_seen_through_is_sent_as_before(agent_client, receive, thread):
    conversation, _ = thread
    receive(text="Hello?")
    assert _post(agent_client, f"/api/v1/inbox/{conversation.pk}/reply", {"text": "Hi"}).status_code == 201


@pytest.mark.parametrize("value", ["abc", -1, 1.5, 2**70, [1], True])
def test_a_seen_through_that_is_no_id_is_a_400(agent_client, thread, value):
    conversation, _ = thread
    response = _post(agent_client, f"/api/v1/inbox/{conversation.pk}/reply", {"text": "Hi", "seen_through": value})
    assert response.status_code == 400
    assert "seen_through" in response.json()["errors"]
    assert _outbound() == []


# --- the thread screen's reply box ----------------------------------------------------------

def test_the_reply_box_holds_the_send_shows_what_is_new_and_sends_anyway_once(agent_client, receive, bob, thread):
    conversation, seen = thread
    page = agent_client.get(f"/inbox/{conversation.pk}/")
    assert f'name="seen_through" id="seen-through" value="{seen}"' in page.content.decode()
    receive(text="Is the deposit refundable?")
    url = f"/inbox/{conversation.pk}/send"
    form = {"mode": "reply", "text": "All set for Saturday", "channel": "email", "seen_through": str(seen)}
    held = agent_client.post(url, form, HTTP_HX_REQUEST="true")
    assert held.status_code == 409
    html = held.content.decode()
    assert "New activity since you started — review before sending." in html
    assert "Is the deposit refundable?" in html
    assert "All set for Saturday" in html  # what was typed is kept
    assert "Send anyway" in html
    assert _outbound() == []

    sent = agent_client.post(url, {**form, "send_anyway": "1"}, HTTP_HX_REQUEST="true")
    assert sent.status_code == 200 and "Reply queued for sending." in sent.content.decode()
    assert _outbound() == ["All set for Saturday"]


def test_without_javascript_the_held_send_renders_the_thread_with_the_new_item(receive, agent, thread):
    conversation, seen = thread
    client = Client()
    client.force_login(agent)
    newer = receive(text="Do you bring the grill?").message
    held = client.post(f"/inbox/{conversation.pk}/send",
                       {"mode": "reply", "text": "Yes", "channel": "email", "seen_through": str(seen)})
    assert held.status_code == 409
    html = held.content.decode()
    assert "New activity since you started" in html
    # Having been shown, it is what the next send says it saw: an edit and a plain send go out.
    assert f'name="seen_through" id="seen-through" value="{newer.pk}"' in html
    sent = client.post(f"/inbox/{conversation.pk}/send",
                       {"mode": "reply", "text": "Yes, we bring it", "channel": "email", "seen_through": str(newer.pk)})
    assert sent.status_code == 302
    assert _outbound() == ["Yes, we bring it"]
