"""The API's inbox list is served from the cache between changes (inbox/list_cache.py), and
never shows what a change has replaced."""
import html

from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from crm.models import Customer
from inbox import list_cache, services
from inbox.models import Conversation, Tag


def names(client, query=""):
    return [row["customer"]["name"] for row in client.get(f"/api/v1/inbox{query}").json()["results"]]


def test_a_repeated_request_is_answered_without_reading_the_inbox_again(agent_client, receive):
    receive(sender="ann@example.com", sender_name="Ann Lee")
    first = agent_client.get("/api/v1/inbox").json()
    with CaptureQueriesContext(connection) as queries:
        again = agent_client.get("/api/v1/inbox").json()
    assert again == first
    # Only the session's user with their staff groups is read: no page, no latest event.
    assert len(queries) == 1, [q["sql"] for q in queries]


def test_a_new_message_shows_at_once(agent_client, receive):
    receive(sender="ann@example.com", sender_name="Ann Lee")
    assert names(agent_client) == ["Ann Lee"]
    receive(sender="bob@example.com", sender_name="Bob Ray")
    listed = agent_client.get("/api/v1/inbox").json()
    assert [row["customer"]["name"] for row in listed["results"]] == ["Bob Ray", "Ann Lee"]
    assert listed["counts"]["open"] == 2


def test_status_assignment_and_tags_show_at_once(agent_client, receive, agent):
    conversation = receive(sender="ann@example.com").message.conversation
    assert agent_client.get("/api/v1/inbox?status=open").json()["results"]
    services.set_status(conversation=conversation, status="pending", by=agent)
    assert agent_client.get("/api/v1/inbox?status=open").json()["results"] == []
    services.assign(conversation=conversation, assignee=agent)
    assert agent_client.get("/api/v1/inbox").json()["results"][0]["assignee"]["username"] == "alice"
    services.add_tag(conversation=conversation, name="VIP", by=agent)
    assert agent_client.get("/api/v1/inbox").json()["results"][0]["tags"] == ["vip"]


def test_edits_made_outside_the_inbox_show_at_once(agent_client, receive, agent):
    conversation = receive(sender="ann@example.com", sender_name="Ann Lee").message.conversation
    services.assign(conversation=conversation, assignee=agent)
    names(agent_client)

    customer = Customer.objects.get(pk=conversation.customer_id)  # a manager renames her in the admin
    customer.first_name, customer.last_name = "Annabel", "Lee"
    customer.save()
    assert names(agent_client) == ["Annabel Lee"]

    agent.first_name = "Alicia"  # the assignee's own name changes
    agent.save()
    assert agent_client.get("/api/v1/inbox").json()["results"][0]["assignee"]["name"].startswith("Alicia")

    tag = Tag.objects.create(name="allergy")  # a tag added straight to the conversation's tags
    Conversation.objects.get(pk=conversation.pk).tags.add(tag)
    assert agent_client.get("/api/v1/inbox").json()["results"][0]["tags"] == ["allergy"]


def test_a_page_that_depends_on_who_asks_is_never_served_to_someone_else(client, receive, agent):
    from tests.factories import make_user

    bob = make_user("bob", role="Agent")
    conversation = receive(sender="ann@example.com").message.conversation
    services.assign(conversation=conversation, assignee=agent)
    client.force_login(agent)
    assert len(client.get("/api/v1/inbox?assignee=me").json()["results"]) == 1
    client.force_login(bob)
    assert client.get("/api/v1/inbox?assignee=me").json()["results"] == []


def test_bad_parameters_are_refused_every_time(agent_client, receive):
    receive(sender="ann@example.com")
    for _ in range(2):
        response = agent_client.get("/api/v1/inbox?status=everything")
        assert response.status_code == 400
        assert "status" in response.json()["errors"]


def test_parameter_order_does_not_matter_but_values_do():
    user = 7
    assert (list_cache.page_key(user, QueryDict("status=open&channel=sms"))
            == list_cache.page_key(user, QueryDict("channel=sms&status=open")))
    assert (list_cache.page_key(user, QueryDict("status=open"))
            != list_cache.page_key(user, QueryDict("status=pending")))
    assert list_cache.page_key(user, QueryDict("")) != list_cache.page_key(8, QueryDict(""))


def test_a_page_read_before_a_commit_is_not_served_after_it(db, django_capture_on_commit_callbacks):
    """The race the second, post-commit replacement closes: another request reads the old rows
    after the writer's first replacement but before its commit, and stores them."""
    key = list_cache.page_key(1, QueryDict(""))
    with django_capture_on_commit_callbacks(execute=True):
        list_cache.changed()  # the writer, inside its transaction
        page, generation, _ = list_cache.lookup(key)  # another request, before the commit
        assert page is None
        list_cache.store(key, generation, {"results": ["old rows"]})
        assert list_cache.lookup(key)[0] == {"results": ["old rows"]}
    assert list_cache.lookup(key)[0] is None  # committed: the old rows are never served


def test_someone_who_lost_access_gets_403_not_their_last_page(agent_client, receive, agent):
    from django.contrib.auth.models import Group

    receive(sender="ann@example.com")
    assert agent_client.get("/api/v1/inbox").status_code == 200  # their page is now cached
    agent.groups.remove(Group.objects.get(name="Agent"))
    assert agent_client.get("/api/v1/inbox").status_code == 403


def test_the_browsable_api_shows_a_kept_page_too(agent_client, receive):
    receive(sender="ann@example.com", sender_name="Ann Lee")
    as_json = agent_client.get("/api/v1/inbox").json()  # kept now
    page = agent_client.get("/api/v1/inbox", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    shown = html.unescape(page.content.decode())
    assert "Ann Lee" in shown and f'"latest_event": {as_json["latest_event"]}' in shown
