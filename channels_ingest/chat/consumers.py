"""The visitor socket: /ws/chat/<visitor token>. Public, so hostile ground.

Before accepting: the token must look like one the widget makes (else 4400),
the page's Origin must be on the allow-list (CHAT_ALLOWED_ORIGINS; else 4403,
counted as chat/refused_origin), and the client address must be within its
connection rate (else 4429). Then the socket joins its visitor's group (every
tab of that visitor, on any node) and gets the visitor's own history.

Frames from the page (JSON objects):
    {"type": "message", "text": "...", "client_id": "..."}   a line (<= CHAT_MAX_MESSAGE_BYTES)
    {"type": "contact", "name": "...", "email": "...", "phone": "..."}
    {"type": "ping"}                                          keeps presence; answered {"type": "pong"}
Frames to the page:
    {"type": "history", "messages": [line, ...]}  on connect
    {"type": "message", ...line}                  a line of the visitor's (every tab) or a staff reply
    {"type": "typing", "agent": "Alice"}          staff are typing
    {"type": "contact_saved"} · {"type": "error", "code": ..., "message": ..., "field"?: ...}

A line is services.visitor_frame: text, time, who, the agent's first name;
never anything else about staff or other customers. Over-long frames, bad JSON
and frames past the rate limits get an error frame and are counted (once per
socket and kind, when it closes); a socket that keeps flooding is closed (4429).
"""
import json
import logging
from collections import Counter
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.exceptions import ValidationError

from crm import identity

from .. import base
from . import limits, services

logger = logging.getLogger(__name__)

BAD_TOKEN = 4400
BAD_ORIGIN = 4403
FLOODING = 4429
SOURCE = "chat"
# Refused frames a socket may send before it is closed.
MAX_STRIKES = 20


def origin_allowed(origin: str) -> bool:
    """Whether a page of this origin may open the visitor socket (see settings.CHAT_ALLOWED_ORIGINS)."""
    if not origin:
        return False
    origin = origin.rstrip("/").lower()
    allowed = [o.rstrip("/").lower() for o in settings.CHAT_ALLOWED_ORIGINS]
    if allowed:
        return origin in allowed
    host = urlsplit(origin).hostname or ""
    return any(pattern == "*" or host == pattern or (pattern.startswith(".") and host.endswith(pattern))
               for pattern in settings.ALLOWED_HOSTS)


@database_sync_to_async
def _count(outcomes: dict) -> None:
    for outcome, n in outcomes.items():
        base.count(SOURCE, outcome, n)


class VisitorConsumer(AsyncWebsocketConsumer):
    digest = None

    async def connect(self):
        self.refused = Counter()
        token = self.scope["url_route"]["kwargs"].get("token", "")
        headers = dict(self.scope.get("headers") or ())
        origin = headers.get(b"origin", b"").decode("latin-1")
        if not identity.VISITOR_TOKEN.fullmatch(token):
            await _count({"refused_token": 1})
            await self.close(code=BAD_TOKEN)
            return
        if not origin_allowed(origin):
            logger.warning("chat socket refused: origin %r is not allowed", origin[:200])
            await _count({"refused_origin": 1})
            await self.close(code=BAD_ORIGIN)
            return
        self.address = limits.socket_address(self.scope)
        if not await database_sync_to_async(limits.allow)("connect", self.address,
                                                          settings.CHAT_CONNECTIONS_PER_MINUTE_PER_IP):
            await _count({"refused_rate": 1})
            await self.close(code=FLOODING)
            return
        self.token = token
        self.digest = services.digest_of(token)
        self.group = services.visitor_group(self.digest)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        lines = await database_sync_to_async(self._start)()
        await self.send_json({"type": "history", "messages": lines})

    def _start(self):
        services.mark_present(self.digest)
        return services.history(self.digest)

    async def disconnect(self, code):
        if self.digest is None:
            return
        await self.channel_layer.group_discard(self.group, self.channel_name)
        try:
            await database_sync_to_async(services.mark_absent)(self.digest)
        except Exception as exc:  # the cache is down: presence expires on its own
            logger.warning("could not clear chat presence: %r", exc)
        if self.refused:
            await _count(dict(self.refused))

    async def send_json(self, content):
        await self.send(text_data=json.dumps(content))

    async def refuse(self, code: str, message: str, **extra):
        self.refused[code] += 1
        await self.send_json({"type": "error", "code": code, "message": message, **extra})
        if sum(self.refused.values()) >= MAX_STRIKES:
            await self.close(code=FLOODING)

    async def receive(self, text_data=None, bytes_data=None):
        limit = settings.CHAT_MAX_MESSAGE_BYTES
        if text_data is None:
            return await self.refuse("bad_frame", "Send text frames.")
        if len(text_data) > 2 * limit + 1024:
            # Longer than any allowed line could be as JSON: not even parsed.
            return await self.refuse("too_large", f"A message can be at most {limit // 1024} KB; split it in two.")
        try:
            content = json.loads(text_data)
        except ValueError:
            content = None
        if not isinstance(content, dict):
            return await self.refuse("bad_frame", "That was not a chat frame.")
        kind = content.get("type")
        if kind == "ping":
            await database_sync_to_async(services.mark_present)(self.digest)
            return await self.send_json({"type": "pong"})
        if kind not in ("message", "contact"):
            return await self.refuse("bad_frame", "Unknown frame type.")
        if not await database_sync_to_async(self._within_rate)():
            return await self.refuse("rate_limited", "You are sending messages too quickly; wait a minute.")
        if kind == "message":
            await self.visitor_message(content)
        else:
            await self.visitor_contact(content)

    def _within_rate(self) -> bool:
        return (limits.allow("token", self.digest, settings.CHAT_MESSAGES_PER_MINUTE)
                and limits.allow("address", self.address, settings.CHAT_MESSAGES_PER_MINUTE_PER_IP))

    async def visitor_message(self, content):
        try:
            received = await database_sync_to_async(services.visitor_says)(
                token=self.token, text=content.get("text"), client_id=content.get("client_id"))
        except ValidationError as exc:
            return await self.refuse(getattr(exc, "code", None) or "invalid", " ".join(exc.messages))
        frame = services.visitor_frame(received.message)
        # Every tab of this visitor, this one included, shows the stored line.
        await self.channel_layer.group_send(self.group, {"type": "chat.frame", "frame": frame})

    async def visitor_contact(self, content):
        try:
            await database_sync_to_async(services.leave_contact)(
                token=self.token, name=content.get("name", ""), email=content.get("email", ""),
                phone=content.get("phone", ""))
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                field, messages = next(iter(exc.message_dict.items()))
                return await self.refuse("invalid", " ".join(messages), field=field)
            return await self.refuse("invalid", " ".join(exc.messages))
        await self.send_json({"type": "contact_saved"})

    async def chat_frame(self, message):
        """A frame for this visitor's sockets (their own line, a staff reply, typing)."""
        await self.send_json(message["frame"])
