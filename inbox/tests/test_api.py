import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from crm.models import Booking
from inbox import services
from inbox.models import CannedResponse, Conversation, Message, Note, RoutingRule
from tests.factories import make_user


def _json(client, method, url, data=None, **headers):
    body = json.dumps(data) if data is not None else None
    return getattr(client, method)(url, body, content_type="application/json", **headers)


# --- list -------------------------------------------------------------------------

def test_inbox_lists_newest_activity_first_with_counts(agent_client, receive):
    old = receive(sender="old@example.com", received_at=timezone.now() - timedelta(hours=2)).message
    new = receive(sender="new@example.com", text="What's the price for 50 people?").message
    services.set_status(conversation=old.conversation, status="pending")
    response = agent_client.get("/api/v1/inbox")
    assert response.status_code == 200
    body = response.json()
    assert [row["id"] for row in body["results"]] == [new.conversation_id, old.conversation_id]
    first = body["results"][0]
    assert first["customer"]["identity"] == "new@example.com"
    assert first["last_message"]["channel"] == "email"
    assert first["last_message"]["preview"] == "What's the price for 50 people?"
    assert first["is_unread"] is True
    assert body["counts"] == {"open": 1, "pending": 1, "resolved": 0, "closed": 0, "all": 2}


def test_counts_follow_status_changes(agent_client, receive):
    conversation = receive().message.conversation
    assert agent_client.get("/api/v1/inbox").json()["counts"]["open"] == 1
    _json(agent_client, "put", f"/api/v1/inbox/{conversation.pk}/status", {"status": "resolved"})
    assert agent_client.get("/api/v1/inbox").json()["counts"]["open"] == 0


def test_cursor_pagination_walks_every_row_once(agent_client, receive):
    base = timezone.now() - timedelta(days=1)
    ids = [receive(sender=f"c{i}@example.com", received_at=base + timedelta(minutes=i)).message.conversation_id
           for i in range(7)]
    seen, url = [], "/api/v1/inbox?page_size=3"
    while url:
        body = agent_client.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url = f"/api/v1/inbox?page_size=3&cursor={body['next']}" if body["next"] else None
    assert seen == list(reversed(ids))


def test_cursor_pages_split_rows_that_share_one_activity_time(agent_client, receive):
    ids = [receive(sender=f"t{i}@example.com").message.conversation_id for i in range(7)]
    Conversation.objects.update(last_activity_at=timezone.now() - timedelta(hours=1))
    seen, url = [], "/api/v1/inbox?page_size=3"
    while url:
        body = agent_client.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url = f"/api/v1/inbox?page_size=3&cursor={body['next']}" if body["next"] else None
    assert seen == sorted(ids, reverse=True)


@pytest.mark.parametrize("query, expected", [
    ("status=pending", {"b"}),
    ("channel=sms", {"c"}),
    ("assignee=me", {"a"}),
    ("assignee=unassigned", {"b", "c"}),
    ("tag=vip", {"a"}),
])
def test_inbox_filters(agent_client, agent, receive, query, expected):
    a = receive(sender="a@example.com").message.conversation
    b = receive(sender="b@example.com").message.conversation
    c = receive(sender="+14155550111", channel="sms").message.conversation
    services.assign(conversation=a, assignee=agent)
    services.set_status(conversation=b, status="pending")
    a.tags.create(name="vip")
    names = {a.pk: "a", b.pk: "b", c.pk: "c"}
    body = agent_client.get(f"/api/v1/inbox?{query}").json()
    assert {names[row["id"]] for row in body["results"]} == expected


def test_the_filterset_used_as_django_filter_documents_it_filters_like_the_list(agent, receive, rf):
    """The list validates and filters through class methods; an instance used the
    standard way (filterset.is_valid(), .qs) must filter the same, not fall
    through to the no-op per-field methods."""
    from inbox.api.filters import ConversationFilter

    mine = receive(sender="a@example.com").message.conversation
    receive(sender="b@example.com")
    services.assign(conversation=mine, assignee=agent)
    request = rf.get("/api/v1/inbox")
    request.user = agent
    filterset = ConversationFilter(data={"assignee": "me"}, queryset=Conversation.objects.all(), request=request)
    assert filterset.is_valid()
    assert list(filterset.qs) == [mine]
    refused = ConversationFilter(data={"assignee": "someone"}, queryset=Conversation.objects.all(), request=request)
    assert not refused.is_valid()
    assert "assignee" in refused.errors


def test_filter_by_assignee_id_and_customer(agent_client, agent, receive):
    a = receive(sender="a@example.com").message.conversation
    receive(sender="b@example.com")
    services.assign(conversation=a, assignee=agent)
    assert [r["id"] for r in agent_client.get(f"/api/v1/inbox?assignee={agent.pk}").json()["results"]] == [a.pk]
    assert [r["id"] for r in agent_client.get(f"/api/v1/inbox?customer={a.customer_id}").json()["results"]] == [a.pk]


@pytest.mark.parametrize("query", ["status=bogus", "assignee=someone", "channel=fax", "cursor=%%%",
                                   "cursor=eyJ0IjoxfQ", "page_size=0", "page_size=9999", "customer=abc",
                                   "created_after=yesterday"])
def test_bad_list_parameters_get_400_with_a_message(agent_client, query):
    response = agent_client.get(f"/api/v1/inbox?{query}")
    assert response.status_code == 400
    assert response.json()["message"]


def test_list_queries_do_not_grow_with_page_size(agent_client, receive, django_assert_max_num_queries, agent):
    for i in range(30):
        conversation = receive(sender=f"p{i}@example.com").message.conversation
        services.assign(conversation=conversation, assignee=agent)
        services.add_note(conversation=conversation, author=agent, body="note")
    with django_assert_max_num_queries(9):
        assert len(agent_client.get("/api/v1/inbox?page_size=5").json()["results"]) == 5
    with django_assert_max_num_queries(9):
        assert len(agent_client.get("/api/v1/inbox?page_size=25").json()["results"]) == 25


def test_list_rows_carry_tags_and_the_primary_identity(agent_client, receive):
    from inbox.models import Tag
    from tests.factories import make_customer

    make_customer("kim@example.com", first_name="Kim", phone="+14155550100")
    tagged = receive(sender="kim@example.com").message.conversation
    tagged.tags.add(Tag.objects.create(name="wedding"), Tag.objects.create(name="pricing"))
    receive(sender="+14155550199", channel="sms")
    rows = {row["id"]: row for row in agent_client.get("/api/v1/inbox").json()["results"]}
    assert rows[tagged.pk]["tags"] == ["pricing", "wedding"]
    assert rows[tagged.pk]["customer"]["identity"] == "kim@example.com"
    [untagged] = [row for pk, row in rows.items() if pk != tagged.pk]
    assert untagged["tags"] == [] and untagged["customer"]["identity"] == "+14155550199"
    # A single row (the answer to an action) is loaded the same way.
    assigned = agent_client.post(f"/api/v1/inbox/{tagged.pk}/assign", {"assignee": None},
                                 content_type="application/json").json()
    assert assigned["tags"] == ["pricing", "wedding"]


def test_search_finds_messages_notes_and_customers(agent_client, agent, receive):
    grill = receive(sender="grill@example.com", text="Do you bring the teppanyaki grill?").message.conversation
    noted = receive(sender="noted@example.com", text="hello").message.conversation
    services.add_note(conversation=noted, author=agent, body="Wants vegetarian menu")
    by_email = receive(sender="zelda@example.com", text="hi").message.conversation
    ids = lambda q: [r["id"] for r in agent_client.get("/api/v1/inbox", {"q": q}).json()["results"]]  # noqa: E731
    assert ids("teppanyaki") == [grill.pk]
    assert ids("vegetarian") == [noted.pk]
    assert ids("zelda@example.com") == [by_email.pk]
    assert ids("nothing-matches-this") == []


# --- detail -------------------------------------------------------------------------

def test_detail_has_profile_and_the_whole_thread_across_conversations(agent_client, agent, receive, customer):
    first = receive(sender="john@example.com", text="first", received_at=timezone.now() - timedelta(days=30))
    services.set_status(conversation=first.message.conversation, status="closed")
    second = receive(sender="+14155550100", channel="sms", text="second").message
    services.add_note(conversation=second.conversation, author=agent, body="Customer wants vegetarian options")
    for _ in range(5):
        Booking.objects.create(customer=customer, event_at=timezone.now() - timedelta(days=40), guest_count=10,
                               status="completed", total=Decimal("600"))
    upcoming = Booking.objects.create(customer=customer, event_at=timezone.now() + timedelta(days=3),
                                      guest_count=25, status="confirmed", total=Decimal("1500"))
    body = agent_client.get(f"/api/v1/inbox/{second.conversation_id}").json()
    assert body["profile"]["previous_bookings"] == 5
    assert body["profile"]["loyalty_tier"] == "gold"
    assert body["profile"]["next_booking"]["id"] == upcoming.pk
    assert {i["value"] for i in body["customer"]["identities"]} == {"john@example.com", "+14155550100"}
    kinds = [(item["kind"], item["internal"], item["item"].get("text") or item["item"].get("body"))
             for item in body["thread"]]
    assert kinds == [("message", False, "first"), ("message", False, "second"),
                     ("note", True, "Customer wants vegetarian options")]


def test_thread_pages_backwards_from_the_newest(agent_client, agent, receive):
    base = timezone.now() - timedelta(hours=3)
    conversation = None
    for i in range(7):
        conversation = receive(text=f"m{i}", received_at=base + timedelta(minutes=i)).message.conversation
    services.add_note(conversation=conversation, author=agent, body="latest note")
    body = agent_client.get(f"/api/v1/inbox/{conversation.pk}?page_size=3").json()
    texts = [i["item"].get("text") or i["item"]["body"] for i in body["thread"]]
    assert texts == ["m5", "m6", "latest note"]
    older = agent_client.get(f"/api/v1/inbox/{conversation.pk}?page_size=3&before={body['older']}").json()
    assert [i["item"]["text"] for i in older["thread"]] == ["m2", "m3", "m4"]


def test_thread_pages_split_messages_and_notes_written_at_one_moment(agent_client, agent, receive):
    conversation = None
    for i in range(4):
        conversation = receive(text=f"m{i}").message.conversation
    for i in range(3):
        services.add_note(conversation=conversation, author=agent, body=f"n{i}")
    moment = timezone.now() - timedelta(hours=1)
    Message.objects.update(created_at=moment)
    Note.objects.update(created_at=moment)
    seen, url = [], f"/api/v1/inbox/{conversation.pk}?page_size=2"
    while url:
        body = agent_client.get(url).json()
        seen = [i["item"].get("text") or i["item"]["body"] for i in body["thread"]] + seen
        url = f"/api/v1/inbox/{conversation.pk}?page_size=2&before={body['older']}" if body["older"] else None
    assert seen == ["m0", "m1", "m2", "m3", "n0", "n1", "n2"]  # one moment: messages, then notes, by id


def test_thread_items_have_the_documented_serializer_shape(agent_client, agent, receive, recording_sender):
    """The thread and its customer are written without DRF's field machinery;
    they must still be exactly what the documented MessageSerializer / NoteSerializer
    (inside ThreadItemSerializer's kind and internal) and CustomerSerializer give."""
    from django.db.models import Prefetch

    from crm.models import Customer, CustomerIdentity
    from inbox.models import Tag
    from inbox.api.serializers import CustomerSerializer, MessageSerializer, NoteSerializer

    nameless = make_user("nameless", first_name="")
    first = receive(text="hi", subject="Party <10>", html="<p>Hi</p><blockquote>old</blockquote>",
                    metadata={"to": ["a@b.test"], "nested": {"n": [1, 2]}}).message
    conversation = first.conversation
    services.reply(conversation=conversation, author=agent, text="See you", channel="email")
    services.reply(conversation=conversation, author=nameless, text="Bye", channel="email")
    Message.objects.filter(author=nameless).update(delivery_status="failed", status_reason="No such number")
    services.add_note(conversation=conversation, author=agent, body="VIP & <b>family</b>")
    Note.objects.create(conversation=conversation, customer=conversation.customer, author=None, body="orphan")
    Message.objects.create(conversation=conversation, customer=conversation.customer, channel="call",
                           direction="inbound", text="missed call", author=None)
    body = agent_client.get(f"/api/v1/inbox/{conversation.pk}?page_size=50").json()
    documented = []
    for item in body["thread"]:
        model, serializer = (Note, NoteSerializer) if item["kind"] == "note" else (Message, MessageSerializer)
        obj = model.objects.select_related("author").get(pk=item["item"]["id"])
        documented.append({"kind": item["kind"], "internal": item["kind"] == "note",
                           "item": json.loads(json.dumps(serializer(obj).data))})
    assert len(body["thread"]) == 6
    assert body["thread"] == documented
    conversation.customer.identities.create(kind="phone", value="+14155550111")
    conversation.customer.identities.create(kind="email", value="another@example.com")
    primary_first = CustomerIdentity.objects.order_by("-is_primary", "kind", "id")
    customer = Customer.objects.prefetch_related(Prefetch("identities", queryset=primary_first)).get()
    conversation.tags.add(Tag.objects.create(name="vip"), Tag.objects.create(name="allergy"))
    body = agent_client.get(f"/api/v1/inbox/{conversation.pk}?page_size=50").json()
    assert body["customer"] == json.loads(json.dumps(CustomerSerializer(customer).data))
    assert body["conversation"]["tags"] == ["allergy", "vip"]
    assert [i["is_primary"] for i in body["customer"]["identities"]] == [True, False, False]


def test_detail_queries_are_constant(agent_client, receive, django_assert_max_num_queries):
    conversation = None
    for i in range(40):
        conversation = receive(text=f"m{i}").message.conversation
    with django_assert_max_num_queries(12):
        assert agent_client.get(f"/api/v1/inbox/{conversation.pk}?page_size=5").status_code == 200
    with django_assert_max_num_queries(12):
        assert agent_client.get(f"/api/v1/inbox/{conversation.pk}?page_size=40").status_code == 200


@pytest.mark.parametrize("url", ["/api/v1/inbox/999999", "/api/v1/inbox/99999999999999999999999",
                                 "/api/v1/nothing-here"])
def test_unknown_ids_and_endpoints_get_a_json_404(agent_client, url):
    response = agent_client.get(url)
    assert response.status_code == 404
    assert response.json()["message"]


# --- actions ------------------------------------------------------------------------

def test_reply_status_assign_note_over_http(agent_client, agent, receive, recording_sender):
    conversation = receive().message.conversation
    reply = _json(agent_client, "post", f"/api/v1/inbox/{conversation.pk}/reply", {"text": "We can do 6 PM"})
    assert reply.status_code == 201
    assert reply.json()["delivery_status"] == "queued"
    assert Message.objects.get(pk=reply.json()["id"]).author == agent
    status = _json(agent_client, "put", f"/api/v1/inbox/{conversation.pk}/status", {"status": "pending"})
    assert status.status_code == 200 and status.json()["status"] == "pending"
    assign = _json(agent_client, "post", f"/api/v1/inbox/{conversation.pk}/assign", {"assignee": "me"})
    assert assign.json()["assignee"]["username"] == agent.username
    unassign = _json(agent_client, "post", f"/api/v1/inbox/{conversation.pk}/assign", {"assignee": None})
    assert unassign.json()["assignee"] is None
    note = _json(agent_client, "post", f"/api/v1/inbox/{conversation.pk}/note", {"body": "Call after 5pm"})
    assert note.status_code == 201
    assert Note.objects.get().body == "Call after 5pm"


def test_reply_with_a_canned_response_fills_variables(agent_client, agent, receive, recording_sender):
    canned = CannedResponse.objects.create(title="Price", shortcut="price",
                                           body="Hi {{ customer.first_name }}, it's $60. — {{ agent.first_name }}")
    conversation = receive(sender_name="John Doe").message.conversation
    response = _json(agent_client, "post", f"/api/v1/inbox/{conversation.pk}/reply",
                     {"canned_response": canned.pk})
    assert response.status_code == 201
    assert response.json()["text"] == "Hi John, it's $60. — Alice"


def test_idempotency_key_makes_a_retried_reply_send_once(agent_client, receive, recording_sender,
                                                         django_capture_on_commit_callbacks):
    conversation = receive().message.conversation
    url = f"/api/v1/inbox/{conversation.pk}/reply"
    with django_capture_on_commit_callbacks(execute=True):
        first = _json(agent_client, "post", url, {"text": "once"}, HTTP_IDEMPOTENCY_KEY="k-1")
    with django_capture_on_commit_callbacks(execute=True):
        again = _json(agent_client, "post", url, {"text": "once"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Message.objects.filter(direction="outbound").count() == 1
    assert len(recording_sender) == 1


def test_idempotency_key_reused_for_another_request_is_refused(agent_client, receive):
    conversation = receive().message.conversation
    _json(agent_client, "post", f"/api/v1/inbox/{conversation.pk}/note", {"body": "a"}, HTTP_IDEMPOTENCY_KEY="k")
    other = _json(agent_client, "post", f"/api/v1/inbox/{conversation.pk}/assign", {"assignee": None},
                  HTTP_IDEMPOTENCY_KEY="k")
    assert other.status_code == 422


def test_invalid_transition_is_409(agent_client, receive):
    conversation = receive().message.conversation
    services.set_status(conversation=conversation, status="closed")
    response = _json(agent_client, "put", f"/api/v1/inbox/{conversation.pk}/status", {"status": "resolved"})
    assert response.status_code == 409
    assert "cannot be set to resolved" in response.json()["message"]
    reply = _json(agent_client, "post", f"/api/v1/inbox/{conversation.pk}/reply", {"text": "hi"})
    assert reply.status_code == 409


@pytest.mark.parametrize("payload, code", [
    ({"text": ""}, 400),
    ({"text": "   "}, 400),
    ({"text": "x" * (10 * 1024 * 1024)}, 413),
    ({"text": "hi", "channel": "fax"}, 400),
    ({"text": "hi", "canned_response": 424242}, 400),
    (["not", "an", "object"], 400),
])
def test_bad_replies_are_refused_with_a_message(agent_client, receive, payload, code):
    conversation = receive().message.conversation
    response = _json(agent_client, "post", f"/api/v1/inbox/{conversation.pk}/reply", payload)
    assert response.status_code == code
    assert response.json()["message"]
    assert not Message.objects.filter(direction="outbound").exists()


def test_malformed_json_is_400(agent_client, receive):
    conversation = receive().message.conversation
    response = agent_client.post(f"/api/v1/inbox/{conversation.pk}/note", "{not json",
                                 content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["message"]


@pytest.mark.parametrize("payload", [{}, {"status": "done"}, {"status": None}])
def test_bad_status_payloads_are_400(agent_client, receive, payload):
    conversation = receive().message.conversation
    assert _json(agent_client, "put", f"/api/v1/inbox/{conversation.pk}/status", payload).status_code == 400


def test_assigning_a_non_staff_user_is_400(agent_client, receive):
    outsider = make_user("outsider", role=None)
    conversation = receive().message.conversation
    response = _json(agent_client, "post", f"/api/v1/inbox/{conversation.pk}/assign", {"assignee": outsider.pk})
    assert response.status_code == 400
    assert "not an active staff member" in json.dumps(response.json())


def test_mark_read(agent_client, receive):
    conversation = receive().message.conversation
    assert _json(agent_client, "post", f"/api/v1/inbox/{conversation.pk}/read").json()["is_unread"] is False


# --- permissions & auth ---------------------------------------------------------------

def test_anonymous_and_non_staff_are_refused(client, receive):
    conversation = receive().message.conversation
    assert client.get("/api/v1/inbox").status_code == 401  # with WWW-Authenticate: Token
    client.force_login(make_user("outsider", role=None))
    response = client.get(f"/api/v1/inbox/{conversation.pk}")
    assert response.status_code == 403
    assert "staff" in response.json()["message"]


def test_token_auth_for_integrations(client, agent, receive):
    receive()
    token = Token.objects.create(user=agent)
    response = client.get("/api/v1/inbox", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert response.status_code == 200 and len(response.json()["results"]) == 1
    assert client.get("/api/v1/inbox", HTTP_AUTHORIZATION="Token wrong").status_code == 401


def test_only_managers_write_canned_responses(agent_client, manager, client):
    payload = {"title": "Thanks", "shortcut": "thanks", "body": "Thank you {{ customer.first_name }}!"}
    assert _json(agent_client, "post", "/api/v1/canned-responses", payload).status_code == 403
    assert agent_client.get("/api/v1/canned-responses").status_code == 200
    client.force_login(manager)
    created = _json(client, "post", "/api/v1/canned-responses", payload)
    assert created.status_code == 201
    url = f"/api/v1/canned-responses/{created.json()['id']}"
    assert _json(client, "patch", url, {"active": False}).json()["active"] is False
    assert client.delete(url).status_code == 204


@pytest.mark.parametrize("body, message", [
    ("Hi {{ customer.password }}", "Unknown variable"),
    ("{% load static %}hi", "Template tags"),
    ("Hi {{ customer.first_name", "not closed"),
])
def test_canned_response_with_bad_variables_is_refused_when_saved(manager_client, body, message):
    response = _json(manager_client, "post", "/api/v1/canned-responses",
                     {"title": "x", "shortcut": "x", "body": body})
    assert response.status_code == 400
    assert message in json.dumps(response.json())
    assert not CannedResponse.objects.exists()


def test_canned_render_endpoint_fills_the_next_booking(agent_client, receive, customer):
    Booking.objects.create(customer=customer, event_at=timezone.now() + timedelta(days=10), guest_count=30,
                           status="confirmed", total=Decimal("1800"))
    canned = CannedResponse.objects.create(title="c", shortcut="confirm",
                                           body="{{ booking.guest_count }} guests, {{ agent.first_name }}")
    conversation = receive().message.conversation
    response = agent_client.get(f"/api/v1/canned-responses/{canned.pk}/render", {"conversation": conversation.pk})
    assert response.json() == {"text": "30 guests, Alice"}


def test_routing_rules_are_managers_only(agent_client, manager, client):
    rule = {"name": "VIP", "conditions": {"loyalty_tier": ["gold"]}, "actions": {"add_tags": ["vip"]}}
    assert agent_client.get("/api/v1/routing-rules").status_code == 403
    assert _json(agent_client, "post", "/api/v1/routing-rules", rule).status_code == 403
    client.force_login(manager)
    created = _json(client, "post", "/api/v1/routing-rules", rule)
    assert created.status_code == 201
    patched = _json(client, "patch", f"/api/v1/routing-rules/{created.json()['id']}", {"order": 5})
    assert patched.json()["order"] == 5
    assert client.delete(f"/api/v1/routing-rules/{created.json()['id']}").status_code == 405


def test_invalid_routing_rule_is_refused_with_reasons(manager_client):
    response = _json(manager_client, "post", "/api/v1/routing-rules",
                     {"name": "bad", "conditions": {"colour": "red"}, "actions": {"assign_user": "ghost"}})
    assert response.status_code == 400
    text = json.dumps(response.json())
    assert "Unknown condition 'colour'" in text and "no active user named 'ghost'" in text
    assert not RoutingRule.objects.exists()


@pytest.mark.parametrize("q", ["Zed", "zed@example.com", "(415) 555-0199", "5550199"])
def test_customer_search_by_name_email_phone(agent_client, q):
    from tests.factories import make_customer

    make_customer("zed@example.com", first_name="Zed", last_name="Ng", phone="+14155550199")
    make_customer("other@example.com", first_name="Other")
    body = agent_client.get("/api/v1/customers", {"q": q}).json()
    assert [c["name"] for c in body["results"]] == ["Zed Ng"]


def test_events_catch_up_returns_what_was_missed(agent_client, agent, receive):
    latest = agent_client.get("/api/v1/inbox").json()["latest_event"]
    conversation = receive().message.conversation
    services.add_note(conversation=conversation, author=make_user("mike"), body=f"@{agent.username} look")
    services.add_note(conversation=conversation, author=agent, body="@mike private to mike")
    body = agent_client.get(f"/api/v1/events?after={latest}").json()
    types = [e["type"] for e in body["events"]]
    assert types == ["conversation.created", "message.created", "note.created", "mention", "note.created"]
    assert body["latest"] == body["events"][-1]["id"]
    assert agent_client.get("/api/v1/events?after=x").status_code == 400


def test_caught_up_events_have_the_shape_of_socket_frames(agent_client, receive):
    """The page applies caught-up events with the same code as live ones."""
    from datetime import datetime

    from inbox.events import as_message
    from inbox.models import InboxEvent

    receive()
    body = agent_client.get("/api/v1/events?after=0").json()
    for item in body["events"]:
        frame = as_message(InboxEvent.objects.get(pk=item["id"]))
        assert item.keys() == frame.keys()
        assert item["data"] == frame["data"] and item["conversation"] == frame["conversation"]
        assert datetime.fromisoformat(item["at"]) == datetime.fromisoformat(frame["at"])


def test_openapi_schema_documents_every_endpoint(agent_client):
    response = agent_client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ["/api/v1/inbox", "/api/v1/inbox/{id}", "/api/v1/inbox/{id}/reply", "/api/v1/inbox/{id}/status",
                 "/api/v1/inbox/{id}/assign", "/api/v1/inbox/{id}/note", "/api/v1/events", "/api/v1/customers",
                 "/api/v1/canned-responses", "/api/v1/routing-rules"]:
        assert any(p.rstrip("/") == path or p.startswith(path) for p in paths), path
    assert agent_client.get("/api/v1/docs/").status_code == 200


def test_conversation_counts_are_not_cached_stale_after_new_conversation(agent_client, receive):
    agent_client.get("/api/v1/inbox")
    receive(sender="fresh@example.com")
    assert agent_client.get("/api/v1/inbox").json()["counts"]["open"] == 1
    assert Conversation.objects.count() == 1


def test_openapi_schema_validates_without_warnings(db):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out, stderr=StringIO())
    assert "/api/v1/inbox/{id}/reply" in out.getvalue()


def test_a_token_request_reads_its_user_and_staff_groups_in_one_query(client, agent, receive):
    """An integration's call reads the token, its user and whether they are staff in one statement;
    an inactive user's or a removed agent's token is refused as before."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    receive()
    token = Token.objects.create(user=agent)
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/inbox", HTTP_AUTHORIZATION=f"Token {token.key}").status_code == 200
    reads = [q["sql"] for q in queries if "authtoken_token" in q["sql"] or "auth_user_groups" in q["sql"]]
    assert len(reads) == 1 and "authtoken_token" in reads[0] and "auth_user_groups" in reads[0]
    agent.groups.clear()
    refused = client.get("/api/v1/inbox", HTTP_AUTHORIZATION=f"Token {token.key}")
    assert refused.status_code == 403 and "staff" in refused.json()["message"]
    agent.is_active = False
    agent.save()
    assert client.get("/api/v1/inbox", HTTP_AUTHORIZATION=f"Token {token.key}").status_code == 401
