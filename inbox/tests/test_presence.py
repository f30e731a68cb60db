"""Presence on the staff socket (inbox/presence.py): who views a conversation and who types,
through the whole ASGI stack with WebsocketCommunicator. In full mode the store is Redis,
in newcomer mode the in-process one; the tests are the same."""
import asyncio

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from django.test import Client

from inbox import presence, services
from tests.factories import make_user

from .test_consumers import connect, count_queries, own_channel_layer, session_cookie  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def _conversation(sender="jo@example.com", text="Hello"):
    return services.receive_message(channel="email", sender=sender, text=text,
                                    external_id=f"{sender}-{text}").message.conversation_id


async def socket_of(user, client=None):
    cookie = await database_sync_to_async(session_cookie)(client or Client(), user)
    communicator, connected, _ = await connect(cookie)
    assert connected
    return communicator


async def presence_frame(communicator, timeout=3):
    """The next presence frame, skipping staff events (numbered) on the way."""
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if "id" not in frame:
            return frame


def who(frame):
    return [(v["name"], v["typing"]) for v in frame["viewers"]]


@pytest_asyncio.fixture
async def two_agents():
    alice = await database_sync_to_async(make_user)("alice", first_name="Alice", last_name="Kim")
    bob = await database_sync_to_async(make_user)("bob", first_name="Bob")
    conversation = await database_sync_to_async(_conversation)()
    a, b = await socket_of(alice), await socket_of(bob)
    for socket in (a, b):  # the new conversation's events, sent before they connected or just after
        await socket.receive_nothing(timeout=0.2)
    yield conversation, a, b
    for socket in (a, b):
        await socket.disconnect()


async def test_agents_see_who_views_and_types_and_who_left(two_agents):
    conversation, a, b = two_agents
    await a.send_json_to({"type": "presence.watch", "conversation": conversation})
    assert who(await presence_frame(a)) == [("Alice Kim", False)]
    await b.send_json_to({"type": "presence.watch", "conversation": conversation})
    for socket in (a, b):
        frame = await presence_frame(socket)
        assert frame["conversation"] == conversation
        assert who(frame) == [("Alice Kim", False), ("Bob", False)]

    await a.send_json_to({"type": "presence.typing", "typing": True})
    assert who(await presence_frame(b)) == [("Alice Kim", True), ("Bob", False)]
    # Repeats while she types renew her entry but tell nobody anything new.
    await a.send_json_to({"type": "presence.typing", "typing": True})
    await a.send_json_to({"type": "presence.watch", "conversation": conversation})
    assert await b.receive_nothing(timeout=0.3)
    await a.send_json_to({"type": "presence.typing", "typing": False})
    assert who(await presence_frame(b)) == [("Alice Kim", False), ("Bob", False)]

    await a.disconnect()  # the tab closed
    assert who(await presence_frame(b)) == [("Bob", False)]


async def test_presence_never_leaks_to_another_conversation(two_agents):
    first, a, b = two_agents
    second = await database_sync_to_async(_conversation)("sam@example.com", "Other")
    await b.receive_nothing(timeout=0.2)
    await b.send_json_to({"type": "presence.watch", "conversation": second})
    assert who(await presence_frame(b)) == [("Bob", False)]
    await a.send_json_to({"type": "presence.watch", "conversation": first})
    await a.send_json_to({"type": "presence.typing", "typing": True})
    assert who(await presence_frame(a)) == [("Alice Kim", False)]
    assert who(await presence_frame(a)) == [("Alice Kim", True)]
    assert await b.receive_nothing(timeout=0.3)
    # Switching conversations leaves the first: its watchers see her go, the new one sees her come.
    await b.send_json_to({"type": "presence.watch", "conversation": first})
    for socket in (a, b):
        assert who(await presence_frame(socket)) == [("Alice Kim", True), ("Bob", False)]
    await a.send_json_to({"type": "presence.watch", "conversation": second})
    assert who(await presence_frame(b)) == [("Bob", False)]
    frame = await presence_frame(a)
    assert frame["conversation"] == second and who(frame) == [("Alice Kim", False)]


@pytest.mark.parametrize("raw", [999_999, "abc", True, None, {"id": 1}, "1 OR 1=1", 2**70])
async def test_a_watch_of_a_conversation_nobody_may_see_is_refused(two_agents, raw):
    conversation, a, b = two_agents
    await b.send_json_to({"type": "presence.watch", "conversation": conversation})
    await presence_frame(b)
    await a.send_json_to({"type": "presence.watch", "conversation": raw})
    refused = await presence_frame(a)
    assert refused["type"] == "presence.refused"
    # Typing without a watched conversation goes nowhere either.
    await a.send_json_to({"type": "presence.typing", "typing": True})
    assert await b.receive_nothing(timeout=0.3)


async def test_typing_and_heartbeats_touch_no_database(two_agents, monkeypatch):
    conversation, a, b = two_agents
    await a.send_json_to({"type": "presence.watch", "conversation": conversation})  # the one permission check
    await presence_frame(a)
    queries = count_queries(monkeypatch)
    for typing in (True, False, True, False):
        await a.send_json_to({"type": "presence.typing", "typing": typing})
        assert (await presence_frame(a))["viewers"][0]["typing"] is typing
    await a.send_json_to({"type": "presence.watch", "conversation": conversation})  # heartbeat
    assert await a.receive_nothing(timeout=0.2)
    assert queries == []


async def test_typing_stops_by_itself_when_the_repeats_stop(two_agents, monkeypatch):
    monkeypatch.setattr(presence, "TYPING_TTL", 0.3)
    conversation, a, b = two_agents
    await a.send_json_to({"type": "presence.watch", "conversation": conversation})
    await presence_frame(a)
    await b.send_json_to({"type": "presence.watch", "conversation": conversation})
    await presence_frame(b)
    await a.send_json_to({"type": "presence.typing", "typing": True})
    assert who(await presence_frame(b)) == [("Alice Kim", True), ("Bob", False)]
    assert who(await presence_frame(b, timeout=3)) == [("Alice Kim", False), ("Bob", False)]


async def test_a_socket_lost_without_a_goodbye_expires_at_the_next_heartbeat(two_agents, monkeypatch):
    """A node that dies takes its sockets with it, and their disconnect never runs: the
    entry stays until its TTL, and the next heartbeat of anyone watching drops it."""
    monkeypatch.setattr(presence, "VIEW_TTL", 0.5)
    conversation, a, b = two_agents
    await b.send_json_to({"type": "presence.watch", "conversation": conversation})
    await presence_frame(b)
    await presence.store().put(conversation, "a-socket-on-a-dead-node", {"user": 77, "name": "Ghost", "typing": True})
    await b.send_json_to({"type": "presence.watch", "conversation": conversation})  # heartbeat: nothing new
    assert await b.receive_nothing(timeout=0.1)
    await asyncio.sleep(0.6)
    await b.send_json_to({"type": "presence.watch", "conversation": conversation})
    assert who(await presence_frame(b)) == [("Bob", False)]


async def test_a_flood_of_presence_messages_is_cut_off(two_agents):
    conversation, a, b = two_agents
    dropped = presence.Counts.dropped
    await a.send_json_to({"type": "presence.watch", "conversation": conversation})
    await presence_frame(a)
    for n in range(40):
        await a.send_json_to({"type": "presence.typing", "typing": n % 2 == 0})
    frames = 0
    while not await a.receive_nothing(timeout=0.3):
        await a.receive_json_from()
        frames += 1
    assert frames <= presence.MAX_MESSAGES_PER_SECOND * 2  # at most two windows' worth got through
    assert presence.Counts.dropped > dropped


async def test_a_person_whose_access_ends_leaves_presence_at_once(two_agents):
    from django.contrib.auth.models import Group

    conversation, a, b = two_agents
    await a.send_json_to({"type": "presence.watch", "conversation": conversation})
    await presence_frame(a)
    await b.send_json_to({"type": "presence.watch", "conversation": conversation})
    assert who(await presence_frame(b)) == [("Alice Kim", False), ("Bob", False)]

    def alice_leaves_the_agents():
        Group.objects.get(name="Agent").user_set.remove(*Group.objects.get(name="Agent").user_set.filter(
            username="alice"))

    await database_sync_to_async(alice_leaves_the_agents)()
    assert who(await presence_frame(b)) == [("Bob", False)]
