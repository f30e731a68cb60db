"""Who is viewing a conversation and who is typing a reply ("traffic cop").

Presence rides on the staff socket (/ws/inbox, consumers.py) and the channel
layer; it never touches the database after the one permission check a socket
makes when it starts watching a conversation. A keystroke costs at most one
small socket message every TYPING_THROTTLE seconds (the page throttles), one
Redis script call and, only when typing starts or stops, one group message.

The protocol (client -> server, JSON on the socket):

- ``{"type": "presence.watch", "conversation": <id>}``: "I have this
  conversation open". The first one for a conversation checks that the person
  may see it (inbox.access); repeating it every HEARTBEAT seconds is the
  heartbeat. A socket watches one conversation at a time: watching another
  leaves the first.
- ``{"type": "presence.typing", "typing": true|false}``: about the watched
  conversation. true is repeated (throttled) while keys are pressed; without a
  repeat the server counts the person as stopped after TYPING_TTL seconds.
- ``{"type": "presence.leave"}``: stop watching.

Server -> client, to the sockets watching that conversation only, whenever
the set of viewers or who types changes (the conversation's channel-layer
group, events.presence_group, holds one member per node that has watchers:
the node's StaffFanout, which hands the frame to its local watchers, so a
frame costs one Redis message per node, not one per socket):
``{"type": "presence", "conversation": <id>, "viewers": [{"user": <id>,
"name": "...", "typing": bool}, ...]}`` — one entry per person (several tabs
of one person are one entry, typing if any of them types). A refused watch
gets ``{"type": "presence.refused", "conversation": <raw>, "message": "..."}``.

Entries live VIEW_TTL seconds unless renewed: a closed tab leaves at once
(the socket's disconnect), a socket lost with its node (no disconnect) is
dropped by the next write anyone makes on that conversation after its TTL —
every heartbeat purges expired entries and broadcasts when it removed some.

Storage: with Redis (settings.REDIS_URL) a sorted set (member -> expiry) and a
hash (member -> JSON) per conversation, changed by one Lua script per call
(atomic, one round trip, Redis' clock), both keys expiring when nobody renews
them; without Redis (newcomer mode: one process, in-memory channel layer) a
dict in the process does the same.
"""
import asyncio
import json
import logging
import time
import weakref

from django.conf import settings

from myhibachi.ids import BadId, parse_id

from . import events

logger = logging.getLogger(__name__)

HEARTBEAT = 5  # seconds between a page's presence.watch repeats
VIEW_TTL = 15  # a viewer not renewed for this long is gone (three missed heartbeats)
TYPING_THROTTLE = 2  # a page sends presence.typing at most this often while keys are pressed
TYPING_TTL = 6  # typing without a repeat for this long counts as stopped
MAX_MESSAGES_PER_SECOND = 5  # presence messages a socket may send; more are dropped (and counted)


class Counts:
    """This process's totals, for /metrics and the bench."""

    store_calls = 0  # Redis script calls (or in-memory equivalents)
    broadcasts = 0  # presence frames sent to a conversation's group
    refused = 0  # watches refused (no such conversation, not allowed, not an id)
    dropped = 0  # presence messages over a socket's rate limit


def key_prefix() -> str:
    """Keys share the channel layer's prefix, so test runs and live servers with their own
    prefix (tests/browser/live_settings.py) never see each other's presence."""
    config = settings.CHANNEL_LAYERS["default"].get("CONFIG", {})
    return f"{config.get('prefix', 'asgi')}:presence"


def viewers(infos) -> list[dict]:
    """One entry per person from the entries of their sockets, sorted by name."""
    people = {}
    for info in infos:
        person = people.setdefault(info["user"], {"user": info["user"], "name": info["name"], "typing": False})
        person["typing"] = person["typing"] or bool(info.get("typing"))
    return sorted(people.values(), key=lambda p: (p["name"].casefold(), p["user"]))


# One Lua script: set or delete one socket's entry, purge expired entries, renew the keys'
# lifetime, and return (how many expired, every live entry).
SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local op, member = ARGV[1], ARGV[2]
if op == 'set' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), member)
  redis.call('HSET', KEYS[2], member, ARGV[4])
elseif op == 'del' then
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  redis.call('HDEL', KEYS[2], unpack(expired))
end
local ttl = math.ceil(tonumber(ARGV[3])) * 2
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return {#expired, redis.call('HVALS', KEYS[2])}
"""


class RedisStore:
    def __init__(self, url: str, prefix: str):
        import redis.asyncio as redis

        self.client = redis.from_url(url)
        self.script = self.client.register_script(SCRIPT)
        self.prefix = prefix

    async def _call(self, conversation: int, op: str, member: str, info: dict | None):
        Counts.store_calls += 1
        base = f"{self.prefix}:{conversation}"
        expired, values = await self.script(
            keys=[f"{base}:expiry", f"{base}:who"],
            args=[op, member, VIEW_TTL, json.dumps(info) if info else ""])
        return int(expired), [json.loads(value) for value in values]

    async def put(self, conversation, member, info):
        return await self._call(conversation, "set", member, info)

    async def remove(self, conversation, member):
        return await self._call(conversation, "del", member, None)


class MemoryStore:
    """The same as RedisStore inside one process (no Redis: one process serves every socket)."""

    def __init__(self):
        self.rooms = {}  # conversation -> {member: (expires_at, info)}

    async def _call(self, conversation, op, member, info):
        Counts.store_calls += 1
        now = time.monotonic()
        room = self.rooms.setdefault(conversation, {})
        if op == "set":
            room[member] = (now + VIEW_TTL, info)
        else:
            room.pop(member, None)
        expired = [m for m, (until, _) in room.items() if until <= now]
        for m in expired:
            del room[m]
        if not room:
            del self.rooms[conversation]
        return len(expired), [entry for _, entry in room.values()]

    async def put(self, conversation, member, info):
        return await self._call(conversation, "set", member, info)

    async def remove(self, conversation, member):
        return await self._call(conversation, "del", member, None)


_memory = MemoryStore()
_redis_stores = weakref.WeakKeyDictionary()  # event loop -> RedisStore (its connections belong to that loop)


def store():
    if not settings.REDIS_URL:
        return _memory
    loop = asyncio.get_running_loop()
    prefix = key_prefix()
    found = _redis_stores.get(loop)
    if found is None or found.prefix != prefix:
        found = _redis_stores[loop] = RedisStore(settings.REDIS_URL, prefix)
    return found


def may_watch(user, raw_id) -> int | None:
    """The conversation id if this person may see that conversation, else None (one query)."""
    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    from .access import access_conversation

    try:
        return access_conversation(user, raw_id).pk
    except (Http404, PermissionDenied):
        return None


class Watcher:
    """One socket's presence: which conversation it watches and whether its person types.

    The consumer hands it the socket's presence messages (handle) and calls
    leave() when the socket closes. Everything it writes is in the store and
    the channel layer; it keeps only its own socket's state here.
    """

    def __init__(self, consumer, *, fanout, user, name: str):
        self.consumer = consumer
        self.fanout = fanout  # the node's consumers.StaffFanout: it joins the conversation's group for the node
        self.user = user
        self.info = {"user": user.pk, "name": name, "typing": False}
        self.conversation = None  # the watched conversation's id
        self.typing_timer = None
        self.window = (0.0, 0)  # (second, messages in it): the rate limit

    @property
    def member(self) -> str:
        return self.consumer.channel_name  # unique per socket, across nodes

    def _over_limit(self) -> bool:
        second = int(time.monotonic())
        start, count = self.window
        count = count + 1 if start == second else 1
        self.window = (second, count)
        if count > MAX_MESSAGES_PER_SECOND:
            Counts.dropped += 1
            return True
        return False

    async def handle(self, content: dict) -> None:
        if self._over_limit():
            return
        kind = content.get("type")
        if kind == "presence.watch":
            await self.watch(content.get("conversation"))
        elif kind == "presence.typing" and self.conversation is not None:
            await self.set_typing(content.get("typing") is not False)
        elif kind == "presence.leave":
            await self.leave()

    async def watch(self, raw_id) -> None:
        from channels.db import database_sync_to_async

        try:
            wanted = parse_id(raw_id)
        except BadId:
            wanted = None
        if wanted is not None and wanted == self.conversation:
            await self._write()  # the heartbeat
            return
        conversation = None if wanted is None else await database_sync_to_async(may_watch)(self.user, wanted)
        if conversation is None:
            Counts.refused += 1
            await self.consumer.send_json({"type": "presence.refused", "conversation": raw_id if isinstance(
                raw_id, (int, str)) else None, "message": "There is no such conversation you may see."})
            return
        await self.leave()
        self.conversation = conversation
        self.info = {**self.info, "typing": False}
        await self.fanout.watch(self.consumer, conversation)
        await self._write(changed=True)

    async def set_typing(self, typing: bool) -> None:
        if self.typing_timer is not None:
            self.typing_timer.cancel()
            self.typing_timer = None
        changed = typing != self.info["typing"]
        self.info = {**self.info, "typing": typing}
        if typing:
            self.typing_timer = asyncio.create_task(self._typing_expires())
        if changed or typing:  # a repeat renews the entry; only a change is broadcast
            await self._write(changed=changed)

    async def _typing_expires(self) -> None:
        await asyncio.sleep(TYPING_TTL)
        self.typing_timer = None  # this task: set_typing must not cancel it
        if self.conversation is not None and self.info["typing"]:
            try:
                await self.set_typing(False)
            except Exception as exc:  # Redis or the layer is down: the entry expires after VIEW_TTL anyway
                logger.warning("could not clear typing on conversation %s: %r", self.conversation, exc)

    async def _write(self, *, changed: bool = False) -> None:
        expired, entries = await store().put(self.conversation, self.member, self.info)
        if changed or expired:
            await self._broadcast(self.conversation, entries)

    async def leave(self) -> None:
        if self.typing_timer is not None:
            self.typing_timer.cancel()
            self.typing_timer = None
        conversation, self.conversation = self.conversation, None
        if conversation is None:
            return
        await self.fanout.unwatch(self.consumer, conversation)
        _, entries = await store().remove(conversation, self.member)
        await self._broadcast(conversation, entries)

    async def _broadcast(self, conversation: int, entries) -> None:
        Counts.broadcasts += 1
        await self.fanout.layer.group_send(events.presence_group(conversation), {
            "type": "inbox.presence",
            "frame": {"type": "presence", "conversation": conversation, "viewers": viewers(entries)},
        })
