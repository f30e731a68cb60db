"""Who is staff is read with the user, once per request, and never goes stale."""
import pytest
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



# --- API tokens: the token's user is kept in the cache until users, tokens or groups change ---------
def _token_client(client, user):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=user)
    key = token.key  # a deleted token's key (its primary key) reads None
    return lambda path: client.get(path, HTTP_AUTHORIZATION=f"Token {key}"), token


def test_a_repeated_token_request_costs_no_query_to_authenticate(client, db, django_assert_num_queries):
    get, _ = _token_client(client, make_user("eve"))
    assert get("/api/v1/inbox").status_code == 200  # reads the user; page and counts now cached
    with django_assert_num_queries(0):
        assert get("/api/v1/inbox").status_code == 200


def _deactivate(user, token):
    user.is_active = False
    user.save()


@pytest.mark.parametrize("revoke, message", [
    (lambda user, token: token.delete(), "Invalid token."),
    (_deactivate, "User inactive or deleted."),
], ids=["token deleted", "user deactivated"])
def test_a_revoked_token_is_refused_at_the_next_request(client, db, revoke, message):
    user = make_user("fay")
    get, token = _token_client(client, user)
    assert get("/api/v1/inbox").status_code == 200  # now kept
    revoke(user, token)
    response = get("/api/v1/inbox")
    assert response.status_code == 401 and response.json()["message"] == message


def test_leaving_the_staff_groups_closes_the_api_to_a_kept_token_at_the_next_request(client, db):
    user = make_user("hal")
    get, _ = _token_client(client, user)
    assert get("/api/v1/inbox").status_code == 200
    user.groups.clear()
    assert get("/api/v1/inbox").status_code == 403
    Group.objects.get(name="Manager").user_set.add(user)  # from the group's side: the same signal
    assert get("/api/v1/routing-rules").status_code == 200


def test_a_kept_token_user_is_the_token_owner_and_never_overwrites_their_password(client, db):
    user = make_user("ida")
    get, token = _token_client(client, user)
    assert get("/api/v1/inbox").status_code == 200
    from myhibachi.auth import StaffTokenAuthentication

    kept, _ = StaffTokenAuthentication().authenticate_credentials(token.key)
    assert kept.pk == user.pk and kept.username == "ida" and kept.get_deferred_fields() == {"password"}
    kept.first_name = "Ida"
    kept.save()  # saves what was loaded: the stored password hash stays as it was
    user.refresh_from_db()
    assert user.first_name == "Ida" and user.check_password("pw-for-tests-1")


def test_a_token_user_read_before_a_change_committed_is_not_served_after_it(client, transactional_db):
    """A reader looked the token up while a deactivation was not yet committed, and stored the
    still-active user it read under the generation it saw: the commit replaced that generation."""
    from django.db import transaction

    from myhibachi import auth

    user = make_user("jo")
    get, token = _token_client(client, user)
    active = {"fields": {name: getattr(user, name) for name in auth._kept_fields()}, "agent": True, "manager": False}
    with transaction.atomic():
        user.is_active = False
        user.save()  # replaces the generation now, and again after the commit
        seen = auth.cache.get(auth.TOKEN_GENERATION.key)  # the reader's lookup, before the commit
        auth.cache.set(auth._token_cache_key(token.key), auth.Generation.entry(seen, active))
    assert get("/api/v1/inbox").status_code == 401


def test_a_kept_token_user_of_another_shape_is_read_afresh(client, db):
    """A node of a release whose user model has other fields never builds a user from this one's entry."""
    from myhibachi import auth

    user = make_user("kim")
    get, token = _token_client(client, user)
    generation = auth.TOKEN_GENERATION.current(auth.cache.get_many([auth.TOKEN_GENERATION.key]))
    auth.cache.set(auth._token_cache_key(token.key), auth.Generation.entry(generation, {
        "fields": {"id": user.pk, "username": "kim"}, "agent": True, "manager": False}))
    assert get("/api/v1/inbox").status_code == 200
    kept = auth.cache.get(auth._token_cache_key(token.key))["value"]
    assert kept["fields"]["email"] == user.email  # stored again, whole


def test_renaming_a_staff_group_closes_the_api_to_a_kept_token_at_the_next_request(client, db):
    get, _ = _token_client(client, make_user("lou"))
    assert get("/api/v1/inbox").status_code == 200  # now kept
    agents = Group.objects.get(name="Agent")
    agents.name = "Former agents"
    agents.save()  # no membership changed, yet no one is an Agent any more
    assert get("/api/v1/inbox").status_code == 403
