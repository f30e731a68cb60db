"""PostgreSQL unreachable: every request gets a quick 503 "try again shortly", not a 500 (issue 16).

The database going away is simulated by making every new connection fail as
a refused one does (the real restart is tests/cluster/test_faults.py)."""
import logging
from unittest import mock

import pytest
from django.db import OperationalError, connection, connections
from django.test import RequestFactory

from myhibachi import unavailable


@pytest.fixture
def database_down():
    """From here on the database refuses connections, as a stopped PostgreSQL does."""
    def refuse(self):
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')

    connection.close()  # the test's own connection goes; each query must connect anew
    with mock.patch.object(type(connections["default"]), "ensure_connection", refuse):
        yield


def unavailable_count():
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("myhibachi_database_unavailable_total") or 0.0


@pytest.mark.django_db(transaction=True)
def test_an_api_request_gets_a_json_503_with_retry_after(agent_client, database_down):
    before = unavailable_count()
    response = agent_client.get("/api/v1/inbox")
    assert response.status_code == 503
    assert response.json() == {"message": unavailable.MESSAGE, "code": "unavailable"}
    assert response["Retry-After"] == str(unavailable.RETRY_AFTER_SECONDS)
    assert response["Cache-Control"] == "no-store"
    assert unavailable_count() == before + 1


@pytest.mark.django_db(transaction=True)
def test_a_staff_page_gets_a_short_503_page_not_a_traceback(agent_client, database_down):
    response = agent_client.get("/")
    assert response.status_code == 503
    assert b"Try again shortly" in response.content
    assert b"Traceback" not in response.content
    assert response["Retry-After"] == str(unavailable.RETRY_AFTER_SECONDS)


@pytest.mark.django_db(transaction=True)
def test_a_reply_is_refused_with_503_and_stored_once_when_retried_after(agent_client, agent, settings):
    settings.INBOX_SENDERS = {**settings.INBOX_SENDERS, "sms": "tests.senders.record"}
    from inbox import services
    from inbox.models import Message

    conversation = services.receive_message(channel="sms", sender="+14155550123", text="Hi").message.conversation
    headers = {"HTTP_IDEMPOTENCY_KEY": "k-1"}
    with mock.patch.object(type(connections["default"]), "ensure_connection",
                           side_effect=OperationalError("the database system is shutting down")):
        connection.close()
        refused = agent_client.post(f"/api/v1/inbox/{conversation.pk}/reply", {"text": "On its way"},
                                    content_type="application/json", **headers)
    assert refused.status_code == 503
    answered = agent_client.post(f"/api/v1/inbox/{conversation.pk}/reply", {"text": "On its way"},
                                 content_type="application/json", **headers)
    assert answered.status_code == 201
    assert Message.objects.filter(conversation=conversation, text="On its way").count() == 1


def test_handler500_answers_503_for_a_database_error_outside_a_view(caplog):
    request = RequestFactory().get("/inbox/", HTTP_ACCEPT="text/html")
    try:
        raise OperationalError("server closed the connection unexpectedly")
    except OperationalError:
        with caplog.at_level(logging.WARNING, logger="myhibachi.unavailable"):
            response = unavailable.server_error(request)
    assert response.status_code == 503
    assert "database unavailable" in caplog.text


def test_handler500_keeps_other_errors_a_500():
    request = RequestFactory().get("/inbox/")
    try:
        raise ValueError("a bug")
    except ValueError:
        response = unavailable.server_error(request)
    assert response.status_code == 500


def test_other_database_errors_are_not_mistaken_for_an_outage():
    from django.db import IntegrityError, ProgrammingError

    assert not unavailable.is_database_unavailable(IntegrityError("duplicate key"))
    assert not unavailable.is_database_unavailable(ProgrammingError("syntax error"))
    assert unavailable.is_database_unavailable(OperationalError("connection refused"))
