"""The staff socket: /ws/inbox.

Authenticates once (session cookie, via Channels' AuthMiddleware; the origin
is checked by AllowedHostsOriginValidator in asgi.py) and then only forwards
events recorded by the services (inbox/events.py). It never writes and never
queries per event: every event is already a small JSON payload that every
staff member may see, and per-user events (mentions) go to that user's group
only.

Presence (who views a conversation, who types) rides on this socket too:
presence.* messages from the page go to presence.Watcher, which keeps them in
Redis with a TTL and tells that conversation's own group; no database write
either (inbox/presence.py).

Fan-out. With one channel-layer member per socket, channels-redis delivers a
staff event once per socket (500 sockets: 500 queue pushes and 500 pops in
each node, several hundred milliseconds per event). So each node (process and
event loop) joins the staff group once, through StaffFanout, and hands every
staff event to its local sockets itself: one Redis message per node per
event. Per-user groups stay ordinary (a person has a few tabs).

The hand-over is the hot path (500 sockets per event), so it costs no
coroutine scheduling per socket: the event is JSON-encoded once into one ASGI
message shared by all sockets, and each socket's ASGI send is started in
place. Under Uvicorn's websockets-sansio protocol (the nodes') it goes further:
a server's text frame is the same bytes for every socket (server frames are not
masked, and the nodes negotiate no extension), so the frame is built once per
event, by the websockets library, and written to each open socket's transport
as it stands (direct_writer()); a socket that is closing, not yet accepted or
held back by flow control takes the ASGI send as before. A server's send
normally completes without suspending (Daphne and Uvicorn write to the
transport's buffer), so no task is made. Only when a
server holds a send back (a slow reader, flow control) does that socket get
a task that finishes the send and then the events queued behind it, in order,
while the other sockets go on; past MAX_BACKLOG queued events that socket's
further events are dropped, which the page notices as a gap in the numbers
and fills from the events API, as it does for channels-redis' own drops.
"""
import asyncio
import collections
import contextlib
import json
import logging
import weakref

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from myhibachi.roles import is_staff_member, staff_user_ids

from . import events, presence, socket_access

logger = logging.getLogger(__name__)

# Close code for a refused socket (4000-4999 are for applications). Closing
# before accept answers the WebSocket handshake with 403.
NOT_STAFF = 4403
# Re-join the staff group now and then: membership is a Redis key, lost if
# Redis restarts without persistence or the database is flushed, and it
# expires after channels-redis' group_expiry (1 day). Every new socket re-joins too.
# At the same time the node asks the database (one query) which of its sockets'
# users are still staff and closes the others' sockets, whatever close message
# (inbox/socket_access.py) they may have missed. Read at each wait: tests patch it.
REJOIN_SECONDS = 60


# Events queued for one socket whose send is held back, before further ones are dropped.
MAX_BACKLOG = 200
# Scope key under which with_server_send() keeps the ASGI server's own send.
SERVER_SEND = "inbox.server_send"


def direct_writer(send):
    """For a send of Uvicorn's websockets-sansio protocol: a function that writes a ready-made frame
    straight to that socket's transport and says whether it did. It does only while the connection
    is open with no extension, the handshake done, no close sent or begun and the transport taking
    data (flow control); otherwise it writes nothing and answers False, and the frame goes through
    the ASGI send, which waits, refuses or raises as the protocol says. None for any other server."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.protocol import State

    protocol = getattr(send, "__self__", None)
    if not isinstance(protocol, WebSocketsSansIOProtocol):
        return None

    def write(frame: bytes) -> bool:
        if (protocol.handshake_complete and protocol.initial_response is None and not protocol.close_sent
                and not protocol.disconnected and protocol.writable.is_set()
                and protocol.conn.state is State.OPEN and not protocol.conn.extensions
                and not protocol.conn.expect_continuation_frame and not protocol.transport.is_closing()):
            protocol.transport.write(frame)
            return True
        return False

    return write


def text_frame(text: str) -> bytes:
    """A server's unfragmented text frame, as the websockets library writes it (no mask, no extension)."""
    from websockets.frames import OP_TEXT, Frame

    return Frame(OP_TEXT, text.encode()).serialize(mask=False, extensions=[])


def with_server_send(app):
    """Outermost WebSocket middleware (asgi.py): keep the server's own send callable
    in the scope. Channels' SessionMiddleware wraps send to save the session on
    "websocket.accept"; for a frame its wrapper only costs time (a lazy session
    object is consulted on every call, about a quarter of the fan-out's work), so
    StaffFanout sends frames with the server's send directly."""

    async def app_with_server_send(scope, receive, send):
        return await app({**scope, SERVER_SEND: send}, receive, send)

    return app_with_server_send


class NodeCounts:
    """This process's totals over every StaffFanout it ever had (a fanout is replaced when its
    loop or layer changes), read by /metrics (myhibachi/metrics.py) from another thread."""

    sockets = 0  # open staff sockets handed events by this process
    events = 0  # staff events received from the layer and handed to local sockets
    dropped = 0  # events not sent to a socket whose backlog was full (StaffFanout.dropped, summed)
    layer_errors = collections.Counter()  # channel-layer calls that raised, by operation (Redis down)


@contextlib.contextmanager
def counted_layer_errors(operation):
    """Count a channel-layer call that raised (for /metrics), and let the error go on."""
    try:
        yield
    except Exception:
        NodeCounts.layer_errors[operation] += 1
        raise


class StaffFanout:
    """This node's single member of the staff group; forwards to local sockets."""

    def __init__(self, layer):
        self.layer = layer
        self.sockets = set()
        self.channel = None
        self.presence_channel = None
        self.tasks = []
        self.lock = asyncio.Lock()
        self.backlogs = {}  # consumer -> deque of messages waiting behind a held-back send
        self.watching = {}  # conversation id -> local consumers watching it (presence)
        self.finishing = set()  # tasks of held-back sends (the loop keeps only weak references)
        self.dropped = 0

    async def add(self, consumer):
        async with self.lock:
            if not self.tasks or any(task.done() for task in self.tasks):
                for task in self.tasks:
                    task.cancel()
                # The default prefix matters: channels-redis reads all of a process's
                # channels with one shared receive loop per prefix.
                self.channel = await self.layer.new_channel()
                with counted_layer_errors("group_add"):
                    await self.layer.group_add(events.STAFF_GROUP, self.channel)
                # Presence frames come on a channel of their own: a burst of them never fills
                # the staff channel's capacity (channels-redis drops what does not fit).
                self.presence_channel = await self.layer.new_channel()
                for conversation in self.watching:  # a new channel: its presence groups again
                    with counted_layer_errors("group_add"):
                        await self.layer.group_add(events.presence_group(conversation), self.presence_channel)
                self.tasks = [asyncio.create_task(self._forward()), asyncio.create_task(self._rejoin()),
                              asyncio.create_task(self._forward_presence())]
            else:
                with counted_layer_errors("group_add"):
                    await self.layer.group_add(events.STAFF_GROUP, self.channel)  # one ZADD; cheap
        if consumer not in self.sockets:
            self.sockets.add(consumer)
            NodeCounts.sockets += 1

    def discard(self, consumer):
        if consumer in self.sockets:
            self.sockets.discard(consumer)
            NodeCounts.sockets -= 1
        self.backlogs.pop(consumer, None)
        for local in self.watching.values():  # no frame goes to it any more (unwatch leaves the groups)
            local.discard(consumer)

    async def watch(self, consumer, conversation: int) -> None:
        """A local socket watches a conversation's presence: the node joins its group once,
        so a presence frame costs one channel-layer message per node, not one per socket."""
        local = self.watching.setdefault(conversation, set())
        if not local:
            await self.layer.group_add(events.presence_group(conversation), self.presence_channel)
        local.add(consumer)

    async def unwatch(self, consumer, conversation: int) -> None:
        local = self.watching.get(conversation)
        if local is None:
            return
        local.discard(consumer)
        if not local:
            del self.watching[conversation]
            await self.layer.group_discard(events.presence_group(conversation), self.presence_channel)

    async def _forward(self):
        while True:
            with counted_layer_errors("receive"):
                message = await self.layer.receive(self.channel)
            if not self.sockets:
                continue
            if message.get("type") == "inbox.event":
                self.deliver(message["event"])
            elif message.get("type") == "inbox.events":  # several, from a bulk store (inbox/events.py)
                for event in message["events"]:
                    self.deliver(event)

    async def _forward_presence(self):
        while True:
            message = await self.layer.receive(self.presence_channel)
            if message.get("type") == "inbox.presence":
                frame = message["frame"]
                local = self.watching.get(frame.get("conversation"))
                if local:  # only the sockets watching that conversation
                    self.deliver(frame, to=local)

    def deliver(self, event, to=None):
        """Hand one event to every local socket (or to those in `to`: a presence frame);
        all get event n before any gets n+1."""
        outgoing = {"type": "websocket.send", "text": json.dumps(event)}  # encoded once, shared
        frame = None  # the same as a frame, built for the first socket that takes one (direct_writer)
        if to is None:
            NodeCounts.events += 1
        for consumer in list(self.sockets if to is None else to):
            backlog = self.backlogs.get(consumer)
            if backlog is not None:
                if len(backlog) < MAX_BACKLOG:
                    backlog.append(outgoing)
                else:
                    self.dropped += 1
                    NodeCounts.dropped += 1
                continue
            if consumer.write_frame is not None:
                if frame is None:
                    frame = text_frame(outgoing["text"])
                if consumer.write_frame(frame):
                    continue  # written to the transport
            sending = consumer.send_frame(outgoing)
            try:
                waiting = sending.send(None)  # runs the server's send up to its first suspension, if any
            except StopIteration:
                continue  # sent (the usual case)
            except Exception as exc:
                logger.warning("could not forward event %s: %r", event.get("id"), exc)
                continue
            self.backlogs[consumer] = collections.deque()
            task = asyncio.get_running_loop().create_task(self._finish(consumer, sending, waiting))
            self.finishing.add(task)
            task.add_done_callback(self.finishing.discard)

    async def _finish(self, consumer, sending, waiting):
        """Complete a send the server held back, then the events queued behind it."""
        try:
            while True:
                if waiting is None:
                    await asyncio.sleep(0)  # a bare yield: give the loop one turn
                else:
                    await asyncio.wait([waiting])  # its result or error is raised inside `sending`
                try:
                    waiting = sending.send(None)
                except StopIteration:
                    break
            backlog = self.backlogs.get(consumer)
            while backlog and consumer in self.sockets:
                await consumer.send_frame(backlog.popleft())
        except Exception as exc:
            logger.warning("could not forward to a slow socket: %r", exc)
        finally:
            sending.close()
            self.backlogs.pop(consumer, None)

    async def _rejoin(self):
        while True:
            await asyncio.sleep(REJOIN_SECONDS)
            try:
                with counted_layer_errors("group_add"):
                    await self.layer.group_add(events.STAFF_GROUP, self.channel)
                    for conversation in list(self.watching):
                        await self.layer.group_add(events.presence_group(conversation), self.presence_channel)
                await self.close_non_staff()
            except Exception:
                # Keep the loop: the next round tries again.
                logger.exception("staff group re-join or access check failed")

    async def close_non_staff(self):
        """Close the local sockets whose users are no longer staff (one query for all)."""
        sockets = list(self.sockets)
        if not sockets:
            return
        staff = await database_sync_to_async(staff_user_ids)({consumer.user_id for consumer in sockets})
        for consumer in sockets:
            if consumer.user_id not in staff:
                try:
                    await consumer.end(socket_access.NOT_STAFF)
                except Exception as exc:  # a socket that went away meanwhile; the others still close
                    logger.warning("could not close the socket of user %s: %r", consumer.user_id, exc)


_fanouts = weakref.WeakKeyDictionary()  # event loop -> StaffFanout


def fanout_for(layer) -> StaffFanout:
    loop = asyncio.get_running_loop()
    fanout = _fanouts.get(loop)
    if fanout is None or fanout.layer is not layer:
        if fanout is not None:
            for task in fanout.tasks:
                task.cancel()
        fanout = _fanouts[loop] = StaffFanout(layer)
    return fanout


class InboxConsumer(AsyncJsonWebsocketConsumer):
    write_frame = None  # direct_writer() of the server's send, under Uvicorn

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not await database_sync_to_async(is_staff_member)(user):
            await self.close(code=NOT_STAFF)
            return
        self.user_id = user.pk
        session = self.scope.get("session")
        self.session_key = getattr(session, "session_key", None) if session is not None else None
        # The person's own group: mentions, and the close message when their access ends.
        self.user_group = events.user_group(user.pk)
        with counted_layer_errors("group_add"):
            await self.channel_layer.group_add(self.user_group, self.channel_name)
        await self.accept()
        # Frames (never the accept) go straight to the server; without the asgi.py
        # wrapper (a bare consumer in a test) through the middleware chain.
        self.send_frame = self.scope.get(SERVER_SEND, self.base_send)
        self.write_frame = direct_writer(self.send_frame)
        self.fanout = fanout_for(self.channel_layer)
        await self.fanout.add(self)
        self.presence = presence.Watcher(self, fanout=self.fanout, user=user,
                                         name=user.get_full_name() or user.get_username())

    async def end(self, code):
        """Stop forwarding and close the socket (access ended)."""
        if getattr(self, "fanout", None):
            self.fanout.discard(self)
            self.fanout = None
        await self._leave_presence()
        await self.close(code=code)

    async def _leave_presence(self):
        watcher, self.presence = getattr(self, "presence", None), None
        if watcher is not None:
            try:
                await watcher.leave()
            except Exception as exc:  # Redis down: the entry expires after presence.VIEW_TTL
                logger.warning("could not end the presence of socket %s: %r", self.channel_name, exc)

    async def inbox_close(self, message):
        """Sent by inbox/socket_access.py: log-out (of this session, or all), left the staff, deactivated."""
        session = message.get("session")
        if session and session != self.session_key:
            return  # another of the person's log-ins logged out
        await self.end(message.get("code") or socket_access.NOT_STAFF)

    async def disconnect(self, code):
        if getattr(self, "fanout", None):
            self.fanout.discard(self)
        await self._leave_presence()
        if getattr(self, "user_group", None):
            with counted_layer_errors("group_discard"):
                await self.channel_layer.group_discard(self.user_group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        # Events flow one way; a ping gets a pong so clients can check liveness, and
        # presence.* messages say who views a conversation and types (inbox/presence.py).
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif isinstance(kind, str) and kind.startswith("presence.") and getattr(self, "presence", None):
            try:
                await self.presence.handle(content)
            except Exception as exc:  # Redis down for a moment: presence waits, the socket stays
                logger.warning("presence message failed on socket %s: %r", self.channel_name, exc)

    async def inbox_event(self, message):
        """Events for this user's group (mentions)."""
        await self.send_json(message["event"])

    async def inbox_events(self, message):
        for event in message["events"]:
            await self.send_json(event)

    @classmethod
    async def decode_json(cls, text_data):
        try:
            return json.loads(text_data)
        except ValueError:
            return None
