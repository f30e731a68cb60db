"""The staff socket: /ws/inbox.

Authenticates once (session cookie, via Channels' AuthMiddleware; the origin
is checked by AllowedHostsOriginValidator in asgi.py) and then only forwards
events recorded by the services (inbox/events.py). It never writes and never
queries per event: every event is already a small JSON payload that every
staff member may see, and per-user events (mentions) go to that user's group
only.

Fan-out. With one channel-layer member per socket, channels-redis delivers a
staff event once per socket (500 sockets: 500 queue pushes and 500 pops in
each node, several hundred milliseconds per event). So each node (process and
event loop) joins the staff group once, through StaffFanout, and hands every
staff event to its local sockets itself: one Redis message per node per
event. Per-user groups stay ordinary (a person has a few tabs).
"""
import asyncio
import json
import logging
import weakref

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from myhibachi.roles import is_staff_member

from . import events

logger = logging.getLogger(__name__)

# Close code for a refused socket (4000-4999 are for applications). Closing
# before accept answers the WebSocket handshake with 403.
NOT_STAFF = 4403
# Re-join the staff group now and then: membership is a Redis key, lost if
# Redis restarts without persistence or the database is flushed, and it
# expires after channels-redis' group_expiry (1 day). Every new socket re-joins too.
REJOIN_SECONDS = 60


class StaffFanout:
    """This node's single member of the staff group; forwards to local sockets."""

    def __init__(self, layer):
        self.layer = layer
        self.sockets = set()
        self.channel = None
        self.tasks = []
        self.lock = asyncio.Lock()

    async def add(self, consumer):
        async with self.lock:
            if not self.tasks or any(task.done() for task in self.tasks):
                for task in self.tasks:
                    task.cancel()
                # The default prefix matters: channels-redis reads all of a process's
                # channels with one shared receive loop per prefix.
                self.channel = await self.layer.new_channel()
                await self.layer.group_add(events.STAFF_GROUP, self.channel)
                self.tasks = [asyncio.create_task(self._forward()), asyncio.create_task(self._rejoin())]
            else:
                await self.layer.group_add(events.STAFF_GROUP, self.channel)  # one ZADD; cheap
        self.sockets.add(consumer)

    def discard(self, consumer):
        self.sockets.discard(consumer)

    async def _forward(self):
        while True:
            message = await self.layer.receive(self.channel)
            if message.get("type") != "inbox.event" or not self.sockets:
                continue
            # Encoded once for all sockets; all get event n before any gets n+1.
            text = json.dumps(message["event"])
            results = await asyncio.gather(*(s.forward(text) for s in list(self.sockets)), return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    logger.warning("could not forward event %s: %r", message["event"].get("id"), result)

    async def _rejoin(self):
        while True:
            await asyncio.sleep(REJOIN_SECONDS)
            await self.layer.group_add(events.STAFF_GROUP, self.channel)


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
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not await database_sync_to_async(is_staff_member)(user):
            await self.close(code=NOT_STAFF)
            return
        self.user_group = events.user_group(user.pk)
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        await self.accept()
        self.fanout = fanout_for(self.channel_layer)
        await self.fanout.add(self)

    async def disconnect(self, code):
        if getattr(self, "fanout", None):
            self.fanout.discard(self)
        if getattr(self, "user_group", None):
            await self.channel_layer.group_discard(self.user_group, self.channel_name)

    async def forward(self, text):
        await self.send(text_data=text)

    async def receive_json(self, content, **kwargs):
        # The socket is one-way; a ping gets a pong so clients can check liveness.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def inbox_event(self, message):
        """Events for this user's group (mentions)."""
        await self.send_json(message["event"])

    @classmethod
    async def decode_json(cls, text_data):
        try:
            return json.loads(text_data)
        except ValueError:
            return None
