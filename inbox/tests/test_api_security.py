"""API hardening: the schema is for staff, and an Idempotency-Key is bound to one request."""
import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.authtoken.models import Token

from inbox.models import IdempotencyKey, Message, Note
from tests.factories import make_user

SCHEMA = "/api/v1/schema/"
DOCS = "/api/v1/docs/"
OPENAPI_JSON = {"HTTP_ACCEPT": "application/vnd.oai.openapi+json"}


# --- the OpenAPI schema and its docs page -----------------------------------------------

def test_anonymous_get_no_schema(client, db):
    response = client.get(SCHEMA, **OPENAPI_JSON)
    assert response.status_code == 401
    assert "paths" not in response.content.decode()
    assert response.json()["message"]


def test_anonymous_browser_is_sent_to_log_in_from_the_docs(client, db):
    response = client.get(DOCS)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={DOCS}"


def test_non_staff_get_no_schema_nor_docs(client, db):
    client.force_login(make_user("visitor", role=None))
    response = client.get(SCHEMA, **OPENAPI_JSON)
    assert response.status_code == 403
    assert "paths" not in response.content.decode()
    assert client.get(DOCS).status_code == 403


def test_staff_get_the_schema_and_docs_by_session_or_token(client, agent):
    token = Token.objects.create(user=agent)
    by_token = client.get(SCHEMA, HTTP_AUTHORIZATION=f"Token {token.key}", **OPENAPI_JSON)
    assert by_token.status_code == 200
    assert "/api/v1/inbox" in by_token.json()["paths"]
    client.force_login(agent)
    assert client.get(SCHEMA, **OPENAPI_JSON).status_code == 200
    docs = client.get(DOCS)
    assert docs.status_code == 200
    assert SCHEMA in docs.content.decode()  # the page loads the schema with the same session


def test_the_served_schema_setting_is_staff_only():
    assert settings.SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"] == ["myhibachi.roles.IsStaffMember"]


# --- Idempotency-Key ------------------------------------------------------------------------

def _post(client, url, data, key):
    return client.post(url, json.dumps(data), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.fixture
def conversation(receive):
    return receive().message.conversation


def test_same_key_with_another_body_is_refused_and_nothing_is_sent_twice(
        agent_client, conversation, recording_sender, django_capture_on_commit_callbacks):
    url = f"/api/v1/inbox/{conversation.pk}/reply"
    with django_capture_on_commit_callbacks(execute=True):
        first = _post(agent_client, url, {"text": "The price is $60."}, "k-1")
    with django_capture_on_commit_callbacks(execute=True):
        other = _post(agent_client, url, {"text": "The price is $6."}, "k-1")
    assert first.status_code == 201
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert "different request body" in other.json()["message"]
    assert "Idempotent-Replayed" not in other
    assert list(Message.objects.filter(direction="outbound").values_list("text", flat=True)) == ["The price is $60."]
    assert len(recording_sender) == 1


def test_same_key_with_the_same_body_replays(agent_client, conversation):
    url = f"/api/v1/inbox/{conversation.pk}/note"
    first = _post(agent_client, url, {"body": "call back at 5"}, "n-1")
    again = _post(agent_client, url, {"body": "call back at 5"}, "n-1")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Note.objects.count() == 1


def test_the_key_remembers_a_hash_not_the_body(agent_client, conversation):
    import hashlib

    body = json.dumps({"body": "secret door code 4242"})
    agent_client.post(f"/api/v1/inbox/{conversation.pk}/note", body, content_type="application/json",
                      HTTP_IDEMPOTENCY_KEY="h-1")
    assert IdempotencyKey.objects.get().request_hash == hashlib.sha256(body.encode()).hexdigest()


def test_an_expired_key_counts_as_new(agent_client, conversation):
    url = f"/api/v1/inbox/{conversation.pk}/note"
    _post(agent_client, url, {"body": "yesterday"}, "daily")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    today = _post(agent_client, url, {"body": "today"}, "daily")
    assert today.status_code == 201
    assert "Idempotent-Replayed" not in today
    assert sorted(Note.objects.values_list("body", flat=True)) == ["today", "yesterday"]
    # ...and is bound to its new request from then on.
    assert _post(agent_client, url, {"body": "today"}, "daily")["Idempotent-Replayed"] == "true"
    assert _post(agent_client, url, {"body": "yesterday"}, "daily").status_code == 422


def test_prune_task_deletes_keys_older_than_the_ttl_and_keeps_newer(agent, manager):
    from inbox.tasks import prune_idempotency_keys

    now = timezone.now()
    for user, key, age in [(agent, "old", 25), (manager, "old", 48), (agent, "new", 23)]:
        IdempotencyKey.objects.create(user=user, key=key, method="POST", path="/x",
                                      created_at=now - timedelta(hours=age))
    assert prune_idempotency_keys.delay().get() == 2
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]


def test_the_prune_task_runs_hourly_on_beat():
    entry = settings.CELERY_BEAT_SCHEDULE["inbox-prune-idempotency-keys"]
    assert entry["task"] == "inbox.tasks.prune_idempotency_keys"
    assert entry["schedule"] <= 3600


def test_the_ttl_is_a_setting(agent_client, conversation, settings):
    settings.IDEMPOTENCY_KEY_TTL_HOURS = 1
    url = f"/api/v1/inbox/{conversation.pk}/note"
    _post(agent_client, url, {"body": "a"}, "short")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(minutes=61))
    again = _post(agent_client, url, {"body": "b"}, "short")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert sorted(Note.objects.values_list("body", flat=True)) == ["a", "b"]


def test_a_form_post_from_a_logged_in_browser_is_bound_to_its_fields_too(agent, conversation):
    """The session's CSRF check parses a multipart body before the view runs, so its raw
    bytes are gone: the key is then bound to the form's fields instead (never a 500)."""
    from django.test import Client

    browser = Client(enforce_csrf_checks=True, raise_request_exception=False)
    browser.force_login(agent)
    browser.get("/inbox/")  # its forms set the CSRF cookie
    token = browser.cookies["csrftoken"].value
    url = f"/api/v1/inbox/{conversation.pk}/note"

    def post(body):
        return browser.post(url, {"body": body, "csrfmiddlewaretoken": token}, HTTP_IDEMPOTENCY_KEY="form-1",
                            HTTP_X_CSRFTOKEN=token)

    assert post("from a form").status_code == 201
    assert post("from a form")["Idempotent-Replayed"] == "true"
    assert post("something else").status_code == 422
    assert list(Note.objects.values_list("body", flat=True)) == ["from a form"]
