"""Ids, numbers and cursors from requests: anything but a plain id is refused
with a message (API: 400/404 JSON; screens: ignored with a message, or a 4xx),
never a 500.

Each value here once reached int() or the database: "²" passes str.isdigit()
but not int(); Arabic-Indic "١٢" passes int() and was silently read as 12;
2**70 does not fit a database integer (OverflowError on SQLite, an error on
PostgreSQL); a cursor whose date matches the pattern but does not exist made
parse_datetime raise ValueError.
"""
import base64
import json
from urllib.parse import quote

import pytest

from inbox.models import CannedResponse, RoutingRule
from inbox.selectors import encode_cursor
from myhibachi.ids import MAX_ID, BadId, parse_id

BAD_NUMBERS = ["²", "١٢", str(2**70), "-1", "0x10", "1 ", "1.0", "1e3", str(2**63)]

BAD_CURSORS = {
    "invalid-date": encode_cursor({"t": "2026-02-31T00:00:00", "id": 1}),
    "invalid-date-aware": encode_cursor({"t": "2026-02-31T00:00:00+00:00", "id": 1}),
    "naive-date": encode_cursor({"t": "2026-01-01T00:00:00", "id": 1}),
    "date-out-of-range-in-utc": encode_cursor({"t": "0001-01-01T00:00:00+05:00", "id": 1}),
    "huge-id": encode_cursor({"t": "2026-01-01T00:00:00+00:00", "id": 2**70}),
    "bool-id": encode_cursor({"t": "2026-01-01T00:00:00+00:00", "id": True}),
    "deeply-nested": base64.urlsafe_b64encode(b"[" * 50_000).decode(),
    "not-base64": "%%%",
}
BAD_THREAD_CURSORS = {
    "invalid-date": encode_cursor({"t": "2026-02-31T00:00:00", "k": 0, "id": 1}),
    "invalid-date-aware": encode_cursor({"t": "2026-02-31T00:00:00+00:00", "k": 0, "id": 1}),
    "date-out-of-range-in-utc": encode_cursor({"t": "0001-01-01T00:00:00+05:00", "k": 1, "id": 1}),
    "huge-id": encode_cursor({"t": "2026-01-01T00:00:00+00:00", "k": 0, "id": 2**70}),
}


@pytest.fixture
def client_500(client):
    """A test client that answers a crash with the 500 a user would see."""
    client.raise_request_exception = False
    return client


@pytest.fixture
def agent_500(client_500, agent):
    client_500.force_login(agent)
    return client_500


@pytest.fixture
def conversation(receive):
    return receive().message.conversation


def _json_post(client, url, data):
    return client.post(url, json.dumps(data), content_type="application/json")


def _api_refusal(response, status=400):
    assert response.status_code == status, response.content[:300]
    body = response.json()
    assert body["message"] and body["code"]
    return body


# --- the parser itself ---------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [("1", 1), ("007", 7), (str(MAX_ID), MAX_ID), (42, 42)])
def test_parse_id_accepts_plain_ascii_ids(raw, expected):
    assert parse_id(raw) == expected


@pytest.mark.parametrize("raw", [*BAD_NUMBERS, "0", "", " ", "+1", "1_000", None, True, 1.0, 2**63, -5, [1]])
def test_parse_id_refuses_everything_else(raw):
    with pytest.raises(BadId):
        parse_id(raw)


# --- API -----------------------------------------------------------------------------

@pytest.mark.parametrize("value", BAD_NUMBERS)
@pytest.mark.parametrize("param", ["assignee", "customer", "page_size"])
def test_inbox_list_refuses_bad_numbers(agent_500, conversation, param, value):
    body = _api_refusal(agent_500.get("/api/v1/inbox", {param: value}))
    assert param in json.dumps(body)


@pytest.mark.parametrize("value", ["2026-02-31T00:00:00", "0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"])
@pytest.mark.parametrize("param", ["created_after", "created_before", "last_activity_after", "last_activity_before"])
def test_inbox_list_refuses_dates_that_do_not_exist_in_utc(agent_500, conversation, param, value):
    body = _api_refusal(agent_500.get("/api/v1/inbox", {param: value}))
    assert param in json.dumps(body)


@pytest.mark.parametrize("name", BAD_CURSORS)
def test_inbox_list_refuses_bad_cursors(agent_500, conversation, name):
    body = _api_refusal(agent_500.get("/api/v1/inbox", {"cursor": BAD_CURSORS[name]}))
    assert "cursor" in json.dumps(body)


@pytest.mark.parametrize("name", ["invalid-date", "huge-id"])
def test_inbox_search_refuses_bad_cursors_too(agent_500, conversation, name):
    _api_refusal(agent_500.get("/api/v1/inbox", {"q": "book", "cursor": BAD_CURSORS[name]}))


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_conversation_detail_refuses_bad_page_size(agent_500, conversation, value):
    _api_refusal(agent_500.get(f"/api/v1/inbox/{conversation.pk}", {"page_size": value}))


@pytest.mark.parametrize("name", BAD_THREAD_CURSORS)
def test_conversation_detail_refuses_bad_before_cursors(agent_500, conversation, name):
    _api_refusal(agent_500.get(f"/api/v1/inbox/{conversation.pk}", {"before": BAD_THREAD_CURSORS[name]}))


@pytest.mark.parametrize("value", [v for v in BAD_NUMBERS if v != str(2**63)] + [str(2**63 + 1)])
def test_events_refuse_bad_after(agent_500, value):
    _api_refusal(agent_500.get("/api/v1/events", {"after": value}))


def test_events_after_zero_still_works(agent_500, conversation):
    assert agent_500.get("/api/v1/events", {"after": "0"}).status_code == 200


@pytest.mark.parametrize("value", [*BAD_NUMBERS, 2**70, -1, 0, True])
def test_assign_refuses_bad_user_ids(agent_500, conversation, value):
    _api_refusal(_json_post(agent_500, f"/api/v1/inbox/{conversation.pk}/assign", {"assignee": value}))
    conversation.refresh_from_db()
    assert conversation.assignee_id is None


@pytest.mark.parametrize("value", [*BAD_NUMBERS, 2**70, -1, True])
def test_reply_refuses_bad_canned_response_ids(agent_500, conversation, recording_sender, value):
    CannedResponse.objects.create(pk=12, title="t", shortcut="t", body="Hello")
    body = _api_refusal(_json_post(agent_500, f"/api/v1/inbox/{conversation.pk}/reply",
                                   {"canned_response": value}))
    assert "canned_response" in json.dumps(body)
    assert recording_sender == []


@pytest.mark.parametrize("value", [*BAD_NUMBERS, ""])
def test_canned_render_refuses_bad_conversation_ids(agent_500, conversation, value):
    canned = CannedResponse.objects.create(title="t", shortcut="t", body="Hi")
    body = _api_refusal(agent_500.get(f"/api/v1/canned-responses/{canned.pk}/render", {"conversation": value}))
    assert "conversation" in json.dumps(body)


def test_canned_render_without_a_conversation_is_400(agent_500, conversation):
    canned = CannedResponse.objects.create(title="t", shortcut="t", body="Hi")
    _api_refusal(agent_500.get(f"/api/v1/canned-responses/{canned.pk}/render"))


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_canned_and_routing_rule_addresses_with_bad_ids_are_404(client_500, manager, value):
    client_500.force_login(manager)
    CannedResponse.objects.create(pk=12, title="t", shortcut="t", body="Hi")
    RoutingRule.objects.create(pk=12, name="r", conditions={}, actions={})
    for base in ("/api/v1/canned-responses/", "/api/v1/routing-rules/"):
        _api_refusal(client_500.get(base + quote(value)), status=404)
    assert client_500.get("/api/v1/canned-responses/12").status_code == 200


@pytest.mark.parametrize("value", BAD_NUMBERS)
@pytest.mark.parametrize("param", ["limit", "offset"])
@pytest.mark.parametrize("url", ["/api/v1/customers", "/api/v1/canned-responses"])
def test_list_pagination_refuses_bad_numbers(agent_500, url, param, value):
    body = _api_refusal(agent_500.get(url, {param: value}))
    assert param in json.dumps(body)


def test_huge_conversation_ids_in_the_address_are_404(agent_500):
    _api_refusal(agent_500.get(f"/api/v1/inbox/{2**70}"), status=404)


# --- screens ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_inbox_screen_ignores_a_bad_assignee_filter_and_says_so(agent_500, conversation, value):
    response = agent_500.get("/inbox/", {"assignee": value, "status": "all"})
    assert response.status_code == 200
    text = response.content.decode()
    assert "That assignee filter was not understood and is ignored." in text
    assert f"/inbox/{conversation.pk}/" in text  # the list itself still shows


@pytest.mark.parametrize("name", BAD_CURSORS)
def test_inbox_screen_restarts_at_the_first_page_on_a_bad_cursor(agent_500, conversation, name):
    response = agent_500.get("/inbox/", {"cursor": BAD_CURSORS[name], "status": "all"})
    assert response.status_code == 200
    assert "That page link has expired; showing the first page." in response.content.decode()


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_live_rows_ignore_bad_ids_and_bad_assignee(agent_500, conversation, value):
    response = agent_500.get("/inbox/rows", {"ids": f"{value},{conversation.pk}", "status": "all"})
    assert response.status_code == 200
    assert f"/inbox/{conversation.pk}/" in response.content.decode()  # the good id still refreshes
    response = agent_500.get("/inbox/rows", {"ids": str(conversation.pk), "assignee": value, "status": "all"})
    assert response.status_code == 200


@pytest.mark.parametrize("name", BAD_THREAD_CURSORS)
def test_thread_screen_bad_before_cursor(agent_500, conversation, name):
    page = agent_500.get(f"/inbox/{conversation.pk}/", {"before": BAD_THREAD_CURSORS[name]})
    assert page.status_code == 200  # the newest page instead
    older = agent_500.get(f"/inbox/{conversation.pk}/older", {"before": BAD_THREAD_CURSORS[name]})
    assert older.status_code == 400
    assert "cursor" in older.content.decode()


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_assign_screen_refuses_bad_user_ids_with_a_message(agent_500, conversation, agent, value):
    response = agent_500.post(f"/inbox/{conversation.pk}/assign", {"assignee": value}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "Choose a staff member from the list." in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.assignee_id is None


def test_huge_conversation_ids_on_screens_are_404(agent_500):
    assert agent_500.get(f"/inbox/{2**70}/").status_code == 404
