"""The staff socket /ws/inbox through the whole ASGI stack (origin check,
session cookie, auth), with Channels' WebsocketCommunicator."""

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client

from inbox import events, services
from tests.factories import make_user
from tests.layers import use_own_channel_layer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ORIGIN = b"http://127.0.0.1"


@pytest.fixture(autouse=True)
def own_channel_layer(settings):
    """A channel layer no other test run shares (full mode uses a shared Redis)."""
    use_own_channel_layer(settings)
    yield


def session_cookie(client, user):
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def app():
    from myhibachi.asgi import application

    return application


async def connect(cookie=None, origin=ORIGIN):
    headers = [(b"host", b"127.0.0.1")]
    if origin:
        headers.append((b"origin", origin))
    if cookie:
        headers.append((b"cookie", cookie))
    communicator = WebsocketCommunicator(app(), "/ws/inbox", headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def test_anonymous_socket_is_refused(client):
    communicator, connected, _ = await connect()
    assert not connected
    await communicator.disconnect()


async def test_logged_in_non_staff_socket_is_refused(client):
    outsider = await database_sync_to_async(make_user)("outsider", role=None)
    cookie = await database_sync_to_async(session_cookie)(client, outsider)
    communicator, connected, code = await connect(cookie)
    assert not connected
    assert code == 4403
    await communicator.disconnect()


async def test_foreign_origin_is_refused_even_for_staff(client):
    agent = await database_sync_to_async(make_user)("alice")
    cookie = await database_sync_to_async(session_cookie)(client, agent)
    communicator, connected, _ = await connect(cookie, origin=b"https://evil.example")
    assert not connected
    await communicator.disconnect()
    communicator, connected, _ = await connect(cookie, origin=None)
    assert not connected  # no Origin header at all is refused too
    await communicator.disconnect()


async def test_staff_socket_gets_new_message_events_in_sequence(client):
    agent = await database_sync_to_async(make_user)("alice")
    cookie = await database_sync_to_async(session_cookie)(client, agent)
    communicator, connected, _ = await connect(cookie)
    assert connected
    await database_sync_to_async(services.receive_message)(
        channel="sms", sender="+14155550100", text="Can you do Saturday?", external_id="sms-1")
    first = await communicator.receive_json_from(timeout=5)
    second = await communicator.receive_json_from(timeout=5)
    assert first["type"] == "conversation.created"
    assert second["type"] == "message.created"
    assert second["id"] == first["id"] + 1
    assert second["data"]["preview"] == "Can you do Saturday?"
    assert second["conversation"] == first["conversation"]
    await communicator.disconnect()


async def test_a_mention_reaches_only_the_person_mentioned(client):
    alice = await database_sync_to_async(make_user)("alice")
    bob = await database_sync_to_async(make_user)("bob")
    a, ok_a, _ = await connect(await database_sync_to_async(session_cookie)(client, alice))
    # Bob logs in from another browser (logging alice out would close her socket).
    b, ok_b, _ = await connect(await database_sync_to_async(session_cookie)(Client(), bob))
    assert ok_a and ok_b
    received = await database_sync_to_async(services.receive_message)(
        channel="email", sender="jo@example.com", text="hello", external_id="m-1")
    for socket in (a, b):
        for _ in range(2):
            await socket.receive_json_from(timeout=5)
    await database_sync_to_async(services.add_note)(
        conversation=received.message.conversation, author=bob, body="@alice can you call them?")
    assert (await a.receive_json_from(timeout=5))["type"] == "note.created"
    mention = await a.receive_json_from(timeout=5)
    assert mention["type"] == "mention" and mention["data"]["by"] == "bob"
    assert (await b.receive_json_from(timeout=5))["type"] == "note.created"
    assert await b.receive_nothing(timeout=0.3)
    await a.disconnect()
    await b.disconnect()


def count_queries(monkeypatch) -> list:
    """From now on, every database cursor opened in this process (any thread) lands in the list."""
    queries = []
    original = BaseDatabaseWrapper._cursor

    def counting(self, *args, **kwargs):
        queries.append(self.alias)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BaseDatabaseWrapper, "_cursor", counting)
    return queries


async def test_forwarding_runs_no_database_queries(client, monkeypatch):
    agent = await database_sync_to_async(make_user)("alice")
    communicator, connected, _ = await connect(await database_sync_to_async(session_cookie)(client, agent))
    assert connected
    queries = count_queries(monkeypatch)
    layer = get_channel_layer()
    for n in range(1, 51):
        await layer.group_send(events.STAFF_GROUP, {"type": "inbox.event", "event": {
            "id": n, "type": "conversation.updated", "conversation": 1, "at": "2026-01-01T00:00:00Z", "data": {}}})
    got = [(await communicator.receive_json_from(timeout=5))["id"] for _ in range(50)]
    assert got == list(range(1, 51))
    assert queries == []
    await communicator.disconnect()


async def test_a_bulk_stores_events_reach_the_socket_in_order_in_a_few_layer_messages(client, monkeypatch):
    from inbox.models import InboxEvent

    agent = await database_sync_to_async(make_user)("alice")
    communicator, connected, _ = await connect(await database_sync_to_async(session_cookie)(client, agent))
    assert connected
    layer = get_channel_layer()
    sent, group_send = [], layer.group_send

    async def counting(group, message):
        sent.append(message["type"])
        return await group_send(group, message)

    monkeypatch.setattr(layer, "group_send", counting)

    def store():
        with services.receiving_in_bulk():
            services.receive_many([{"channel": "sms", "sender": f"+1415555{n:04d}", "text": f"hi {n}",
                                    "external_id": f"bulk-{n}"} for n in range(60)])
        return list(InboxEvent.objects.order_by("id").values_list("id", flat=True))

    ids = await database_sync_to_async(store)()
    assert len(ids) == 120  # conversation.created and message.created for each
    got = [(await communicator.receive_json_from(timeout=5))["id"] for _ in ids]
    assert got == ids
    assert sent == ["inbox.events"] * 3  # 120 events, EVENTS_PER_MESSAGE (50) a message
    await communicator.disconnect()


async def test_client_messages_other_than_ping_are_ignored(client):
    agent = await database_sync_to_async(make_user)("alice")
    communicator, connected, _ = await connect(await database_sync_to_async(session_cookie)(client, agent))
    assert connected
    await communicator.send_to(text_data="not json {")
    await communicator.send_json_to({"type": "group_add", "group": "inbox.user.999"})
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=2) == {"type": "pong"}
    await communicator.disconnect()


# --- a socket ends when its person's access ends ------------------------------------------

async def closed_with(communicator, timeout=3):
    """The close code the server sent, skipping any event frames still on the way."""
    while True:
        output = await communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            return output.get("code")


async def still_open(communicator):
    await communicator.send_json_to({"type": "ping"})
    return await communicator.receive_json_from(timeout=2) == {"type": "pong"}


async def test_logging_out_closes_the_socket_of_that_log_in_only(client):
    agent = await database_sync_to_async(make_user)("alice")
    here, ok_here, _ = await connect(await database_sync_to_async(session_cookie)(client, agent))
    other = Client()  # the same person, logged in on another computer
    there, ok_there, _ = await connect(await database_sync_to_async(session_cookie)(other, agent))
    assert ok_here and ok_there
    response = await database_sync_to_async(client.post)("/logout/")
    assert response.status_code == 302
    assert await closed_with(here) == 4401
    assert await still_open(there)
    await there.disconnect()


def _remove_from_agents(user):
    from django.contrib.auth.models import Group

    user.groups.remove(Group.objects.get(name="Agent"))


def _agents_drop(user):
    from django.contrib.auth.models import Group

    Group.objects.get(name="Agent").user_set.remove(user)


def _agents_cleared(user):
    from django.contrib.auth.models import Group

    Group.objects.get(name="Agent").user_set.clear()


def _deactivate(user):
    user.is_active = False
    user.save()


def _delete(user):
    user.delete()


@pytest.mark.parametrize("end_access", [_remove_from_agents, _agents_drop, _agents_cleared, _deactivate, _delete],
                         ids=["left-agents", "removed-by-group", "group-cleared", "deactivated", "deleted"])
async def test_a_socket_closes_when_its_person_stops_being_staff(client, end_access):
    agent = await database_sync_to_async(make_user)("alice")
    manager = await database_sync_to_async(make_user)("morgan", role="Manager")
    socket, connected, _ = await connect(await database_sync_to_async(session_cookie)(client, agent))
    managers_socket, ok, _ = await connect(await database_sync_to_async(session_cookie)(Client(), manager))
    assert connected and ok
    await database_sync_to_async(end_access)(agent)
    assert await closed_with(socket) == 4403
    assert await still_open(managers_socket)  # others are untouched
    await managers_socket.disconnect()


async def test_a_socket_stays_open_while_its_person_is_still_staff(client):
    agent = await database_sync_to_async(make_user)("alice")
    socket, connected, _ = await connect(await database_sync_to_async(session_cookie)(client, agent))
    assert connected

    def promote_then_leave_agents(user):
        from django.contrib.auth.models import Group

        user.groups.add(Group.objects.get(name="Manager"))
        _remove_from_agents(user)

    await database_sync_to_async(promote_then_leave_agents)(agent)
    assert await still_open(socket)
    await socket.disconnect()


async def test_the_periodic_check_closes_a_socket_whose_person_lost_access(client, monkeypatch):
    from inbox import consumers, socket_access

    monkeypatch.setattr(consumers, "REJOIN_SECONDS", 0.2)
    # As if the close message was lost (Redis down for a moment): only the periodic check is left.
    monkeypatch.setattr(socket_access, "close_sockets", lambda *args, **kwargs: None)
    agent = await database_sync_to_async(make_user)("alice")
    manager = await database_sync_to_async(make_user)("morgan", role="Manager")
    socket, connected, _ = await connect(await database_sync_to_async(session_cookie)(client, agent))
    managers_socket, ok, _ = await connect(await database_sync_to_async(session_cookie)(Client(), manager))
    assert connected and ok
    await database_sync_to_async(_remove_from_agents)(agent)
    assert await closed_with(socket, timeout=3) == 4403
    assert await still_open(managers_socket)
    # A closed socket gets no more staff events.
    await get_channel_layer().group_send(events.STAFF_GROUP, {"type": "inbox.event", "event": {
        "id": 1, "type": "conversation.updated", "conversation": 1, "at": "2026-01-01T00:00:00Z", "data": {}}})
    assert (await managers_socket.receive_json_from(timeout=2))["id"] == 1
    assert await socket.receive_nothing(timeout=0.3)
    await managers_socket.disconnect()
