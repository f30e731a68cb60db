"""Behaviour that only PostgreSQL can show: real concurrency and full-text search."""
import pytest
from django.db import connection

from crm.models import Customer, CustomerIdentity
from inbox import list_cache, selectors, services
from inbox.models import Conversation, Message
from tests.concurrency import race
from tests.factories import make_user

pytestmark = pytest.mark.postgres


@pytest.mark.django_db(transaction=True)
def test_racing_deliveries_of_the_same_message_store_it_once():
    results = race(6, lambda i: services.receive_message(
        channel="sms", sender="+14155550100", text="Hi!", external_id="rc-msg-1"))
    assert Message.objects.count() == 1
    assert sum(1 for r in results if r.created) == 1
    assert {r.message.pk for r in results} == {Message.objects.get().pk}
    assert Conversation.objects.count() == 1
    assert Customer.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_racing_first_messages_from_a_new_customer_share_one_conversation():
    race(5, lambda i: services.receive_message(
        channel="email", sender="Racer@Example.com", text=f"message {i}", external_id=f"race-{i}"))
    assert Message.objects.count() == 5
    assert CustomerIdentity.objects.filter(value="racer@example.com").count() == 1
    assert Conversation.objects.count() == 1
    assert Conversation.objects.get().last_message.created_at == Message.objects.latest("created_at").created_at


@pytest.mark.django_db(transaction=True)
def test_racing_round_robin_never_hands_out_the_same_turn_twice():
    from inbox.models import RoutingRule

    agents = [make_user(f"rr{i}") for i in range(3)]
    RoutingRule.objects.create(name="rr", conditions={}, actions={"assign_round_robin": "Agent"})
    race(6, lambda i: services.receive_message(channel="email", sender=f"p{i}@example.com", text="hi",
                                                external_id=f"rr-{i}"))
    per_agent = [Conversation.objects.filter(assignee=a).count() for a in agents]
    assert per_agent == [2, 2, 2]


def test_search_vectors_are_kept_by_the_database(receive):
    message = receive(text="We need a hibachi chef for a graduation", subject="Graduation party").message
    Message.objects.filter(pk=message.pk).update(text="Changed to a birthday")
    with connection.cursor() as cursor:
        cursor.execute("SELECT search_vector::text FROM inbox_message WHERE id = %s", [message.pk])
        vector = cursor.fetchone()[0]
    assert "'birthday'" in vector and "'graduat'" in vector  # subject stays, text updated, stemmed


def test_search_ranks_phrases_prefixes_and_stems(receive, agent):
    exact = receive(sender="a@example.com", text="Is the teppanyaki grill included?").message.conversation
    loose = receive(sender="b@example.com", text="The grill was great. Teppanyaki next time.").message.conversation
    stem = receive(sender="c@example.com", text="We are celebrating birthdays").message.conversation
    noted = receive(sender="d@example.com", text="hello").message.conversation
    services.add_note(conversation=noted, author=agent, body="Prefers vegetarian")
    assert selectors.search_conversation_ids('"teppanyaki grill"') == [exact.pk]
    assert set(selectors.search_conversation_ids("teppanyaki grill")) == {exact.pk, loose.pk}
    assert selectors.search_conversation_ids("birthday") == [stem.pk]
    assert selectors.search_conversation_ids("vegetar*") == [noted.pk]
    assert selectors.search_conversation_ids("teppan*") and stem.pk not in selectors.search_conversation_ids("grill")


def test_search_reaches_past_the_newest_rows_and_keeps_the_newest_matches(receive, monkeypatch):
    """Matches older than the directly scanned newest rows come from the GIN index,
    and the candidates are always the newest matching rows."""
    monkeypatch.setattr(selectors, "SEARCH_RECENT_ROWS", 3)
    monkeypatch.setattr(selectors, "SEARCH_CANDIDATES", 2)
    old = receive(sender="old@example.com", text="Do you cater in Sacramento?").message.conversation
    middle = receive(sender="mid@example.com", text="Sacramento again").message.conversation
    for i in range(5):
        receive(sender=f"n{i}@example.com", text="Something else entirely")
    assert set(selectors.search_conversation_ids("sacramento")) == {old.pk, middle.pk}
    newest = receive(sender="new@example.com", text="Sacramento, next May").message.conversation
    assert set(selectors.search_conversation_ids("sacramento")) == {newest.pk, middle.pk}  # two candidates


def test_search_costs_the_same_queries_for_few_or_many_matches(agent_client, receive, django_assert_max_num_queries):
    receive(sender="first@example.com", text="Sacramento party")
    agent_client.get("/api/v1/inbox", {"q": "sacramento"})  # session and counts cached
    list_cache.changed()  # both searches below read afresh, not from the list cache
    with django_assert_max_num_queries(11) as few:
        assert len(agent_client.get("/api/v1/inbox", {"q": "sacramento"}).json()["results"]) == 1
    few = len(few.captured_queries)  # read now: the query log is a bounded deque
    for i in range(30):
        receive(sender=f"guest{i}@example.com", text=f"Sacramento party {i}")
    agent_client.get("/api/v1/inbox")  # the status counts changed: count them again
    list_cache.changed()
    with django_assert_max_num_queries(few):
        assert len(agent_client.get("/api/v1/inbox", {"q": "sacramento"}).json()["results"]) == 25


def test_search_finds_customers_by_name_email_and_phone(receive):
    from tests.factories import make_customer

    make_customer("kenji@example.com", first_name="Kenji", last_name="Tanaka", phone="+14155550142")
    conversation = receive(sender="kenji@example.com", text="hello").message.conversation
    for query in ["Tanaka", "kenji@", "(415) 555-0142", "555-0142"]:
        assert selectors.search_conversation_ids(query) == [conversation.pk], query


@pytest.mark.parametrize("nasty", ["!!!", "a & | b", "foo:*bar", "'; DROP TABLE inbox_message; --", "(((", "\\"])
def test_search_survives_any_input(agent_client, receive, nasty):
    receive(text="hello there")
    response = agent_client.get("/api/v1/inbox", {"q": nasty})
    assert response.status_code == 200
