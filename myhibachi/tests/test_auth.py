"""Who is staff is read with the user, once per request, and never goes stale."""
from django.contrib.auth.models import Group

from tests.factories import make_user


def test_a_staff_request_reads_user_and_groups_in_one_query(client, db, django_assert_num_queries):
    client.force_login(make_user("ana"))
    client.get("/api/v1/inbox")  # the session is now in the cache
    # Only the user with its groups: the page and the status counts are served from the cache
    # since the first request (inbox/list_cache.py).
    with django_assert_num_queries(1) as captured:
        assert client.get("/api/v1/inbox").status_code == 200
    user_query = captured.captured_queries[0]["sql"]
    assert "auth_user_groups" in user_query and "django_session" not in " ".join(
        q["sql"] for q in captured.captured_queries)


def test_leaving_the_agent_group_closes_the_inbox_at_the_next_request(client, db):
    agent = make_user("ben")
    client.force_login(agent)
    assert client.get("/inbox/").status_code == 200
    agent.groups.remove(Group.objects.get(name="Agent"))
    assert client.get("/inbox/").status_code == 403
    assert client.get("/api/v1/inbox").status_code == 403


def test_joining_managers_opens_manager_endpoints_at_the_next_request(client, db):
    agent = make_user("cy")
    client.force_login(agent)
    assert client.get("/api/v1/routing-rules").status_code == 403
    agent.groups.add(Group.objects.get(name="Manager"))
    assert client.get("/api/v1/routing-rules").status_code == 200


def test_a_deactivated_user_is_logged_out(client, db):
    agent = make_user("dee")
    client.force_login(agent)
    agent.is_active = False
    agent.save()
    assert client.get("/inbox/").status_code == 302  # to the login page
    assert client.get("/api/v1/inbox").status_code == 401  # no longer authenticated

