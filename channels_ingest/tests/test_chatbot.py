"""POST /api/v1/chatbot/sessions: the website chatbot's transcripts and hand-offs."""
import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token

from channels_ingest.chat.models import ChatbotSession
from inbox.models import Conversation, ConversationActivity, Message, RoutingRule
from tests.factories import make_customer, make_user

URL = "/api/v1/chatbot/sessions"


@pytest.fixture
def bot(db, client):
    user = make_user("website-bot", role=None)
    user.user_permissions.add(Permission.objects.get(codename="add_chatbotsession"))
    token = Token.objects.create(user=user)
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token.key}"
    return client


def session(**extra):
    body = {
        "session_id": "sess-001",
        "transcript": [{"role": "visitor", "text": "How much for 20 people?", "at": "2026-05-01T18:00:00Z"},
                       {"role": "bot", "text": "About $60 per person. Want a quote?"},
                       {"role": "visitor", "text": "Yes, talk to a person please"}],
        "model": "gpt-4o-mini", "prompt_tokens": 812, "completion_tokens": 95, "cost": "0.001234", "rating": 4,
        "handed_off": True, "contact": {"name": "Kim Park", "email": "kim@example.com"},
    }
    body.update(extra)
    return body


def post(client, body):
    return client.post(URL, body, content_type="application/json")


def test_a_hand_off_is_stored_joins_the_thread_and_opens_a_conversation(bot):
    response = post(bot, session())
    assert response.status_code == 201, response.content
    stored = ChatbotSession.objects.get()
    assert (stored.model, stored.prompt_tokens, stored.completion_tokens, str(stored.cost), stored.rating) == \
        ("gpt-4o-mini", 812, 95, "0.001234", 4)
    assert stored.customer.first_name == "Kim" and stored.customer.identities.get().value == "kim@example.com"
    message = stored.message
    assert message.metadata["kind"] == "chatbot_transcript" and message.channel == "chat"
    assert message.text.splitlines() == ["Visitor: How much for 20 people?", "Bot: About $60 per person. Want a quote?",
                                         "Visitor: Yes, talk to a person please"]
    assert stored.conversation.status == "open" and stored.conversation.is_unread
    handoff = ConversationActivity.objects.get(kind="bot_handoff")
    assert handoff.conversation_id == stored.conversation_id and handoff.message_id == message.pk
    assert response.json()["conversation"] == stored.conversation_id


def test_the_same_session_posted_again_is_stored_once(bot):
    first = post(bot, session())
    again = post(bot, session(rating=1, transcript=[{"role": "bot", "text": "changed"}]))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert ChatbotSession.objects.get().rating == 4
    assert Message.objects.count() == 1 and ConversationActivity.objects.filter(kind="bot_handoff").count() == 1


def test_routing_rules_see_a_hand_off(bot):
    make_user("alice")
    RoutingRule.objects.create(name="Bot hand-offs to Alice", conditions={"handed_off": True},
                               actions={"assign_user": "alice"})
    post(bot, session())
    post(bot, session(session_id="sess-002", handed_off=False, contact={"email": "other@example.com"}))
    handed = ChatbotSession.objects.get(session_id="sess-001").conversation
    assert handed.assignee.username == "alice"
    assert ChatbotSession.objects.get(session_id="sess-002").conversation.assignee is None


def test_a_session_without_hand_off_stays_out_of_the_inbox(bot):
    post(bot, session(handed_off=False))
    conversation = ChatbotSession.objects.get().conversation
    assert conversation.status == "closed" and not conversation.is_unread
    assert not ConversationActivity.objects.filter(kind="bot_handoff").exists()


def test_a_known_customer_gets_the_transcript_in_their_thread(bot):
    known = make_customer("kim@example.com", first_name="Kim")
    post(bot, session(contact={"email": "KIM@example.com", "phone": "+1 415 555 0123"}))
    stored = ChatbotSession.objects.get()
    assert stored.customer_id == known.pk
    assert set(known.identities.values_list("kind", flat=True)) == {"email", "phone"}


def test_a_session_without_contact_is_kept_for_analytics_only(bot):
    response = post(bot, session(contact={}, handed_off=False))
    assert response.status_code == 201
    stored = ChatbotSession.objects.get()
    assert stored.customer is None and stored.message is None
    assert not Message.objects.exists()


def test_the_widgets_visitor_token_files_it_under_that_visitor(bot):
    from channels_ingest.chat import services

    token = "Tok_" + "a1B2" * 8
    services.visitor_says(token=token, text="hi")
    post(bot, session(contact={"visitor_token": token}))
    stored = ChatbotSession.objects.get()
    assert stored.customer.identities.get().value == services.digest_of(token)
    # The transcript is not a line of the visitor's own chat history.
    assert [line["text"] for line in services.history(services.digest_of(token))] == ["hi"]


@pytest.mark.parametrize("change", [
    {"rating": 6}, {"rating": 0}, {"cost": "-1"}, {"prompt_tokens": -5}, {"session_id": ""},
    {"session_id": "has spaces"}, {"transcript": []}, {"transcript": [{"role": "hacker", "text": "x"}]},
    {"transcript": "not a list"}, {"contact": {"email": "not an email"}}, {"contact": {"phone": "call me"}},
    {"handed_off": "maybe"}, {"contact": {"visitor_token": "short"}},
])
def test_bad_input_is_a_400_and_stores_nothing(bot, change):
    response = post(bot, session(**change))
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert not ChatbotSession.objects.exists() and not Message.objects.exists()


def test_malformed_json_is_a_400(bot):
    response = bot.post(URL, "{not json", content_type="application/json")
    assert response.status_code == 400


def test_who_may_post(client, db, agent):
    assert post(client, session()).status_code == 401  # no token
    client.defaults["HTTP_AUTHORIZATION"] = "Token " + "0" * 40
    assert post(client, session()).status_code == 401  # unknown token
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {Token.objects.create(user=agent).key}"
    assert post(client, session()).status_code == 403  # staff, but not an integration
    client.defaults.pop("HTTP_AUTHORIZATION")
    client.force_login(agent)
    assert post(client, session()).status_code == 401  # a log-in session is not a token
    assert not ChatbotSession.objects.exists()
    assert Conversation.objects.count() == 0


def test_the_staff_thread_shows_the_transcript_folded(bot, agent_client):
    post(bot, session())
    conversation = ChatbotSession.objects.get().conversation
    page = agent_client.get(f"/inbox/{conversation.pk}/").content.decode()
    assert '<details class="body transcript"><summary>Chatbot conversation (3 lines)</summary>' in page
    assert "Bot: About $60 per person." in page


def test_queries_of_a_post_do_not_grow_with_the_transcript(bot, django_assert_max_num_queries):
    long = [{"role": "visitor" if n % 2 else "bot", "text": f"line {n}"} for n in range(400)]
    with django_assert_max_num_queries(40) as short_run:
        post(bot, session(session_id="short"))
    with django_assert_max_num_queries(len(short_run.captured_queries)):
        post(bot, session(session_id="long", transcript=long, contact={"email": "other@example.com"}))


def test_managers_see_sessions_in_the_admin_and_agents_do_not(bot, manager_client, agent):
    post(bot, session())
    page = manager_client.get("/admin/channels_ingest/chatbotsession/")
    assert page.status_code == 200 and "sess-001" in page.content.decode()
    manager_client.force_login(agent)
    assert manager_client.get("/admin/channels_ingest/chatbotsession/").status_code in (302, 403)
