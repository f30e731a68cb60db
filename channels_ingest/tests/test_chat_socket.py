"""The visitor socket /ws/chat/<token> through the whole ASGI stack, hostile input included."""
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import cache

from channels_ingest.base import counted
from channels_ingest.chat import services
from inbox import services as inbox_services
from inbox.models import Message
from inbox.tasks import deliver_message
from tests.factories import make_user
from tests.layers import use_own_channel_layer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

TOKEN = "Tok_" + "a1B2" * 8
SITE = b"https://www.myhibachi.example"


@pytest.fixture(autouse=True)
def chat_settings(settings):
    use_own_channel_layer(settings)
    settings.CHAT_ALLOWED_ORIGINS = [SITE.decode()]
    settings.INBOX_SENDERS = {**settings.INBOX_SENDERS, "chat": "channels_ingest.chat.sender.send"}
    cache.clear()


async def connect(token=TOKEN, origin=SITE, address="203.0.113.7"):
    from myhibachi.asgi import application

    headers = [(b"host", b"inbox.myhibachi.example")]
    if origin:
        headers.append((b"origin", origin))
    communicator = WebsocketCommunicator(application, f"/ws/chat/{token}", headers=headers)
    communicator.scope["client"] = (address, 50000)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def send(communicator, **frame):
    await communicator.send_to(text_data=json.dumps(frame))
    return json.loads(await communicator.receive_from(timeout=5))


@database_sync_to_async
def stored():
    return list(Message.objects.order_by("id").values_list("text", flat=True))


async def test_a_visitor_connects_writes_and_gets_the_stored_line_back():
    socket, connected, _ = await connect()
    assert connected
    assert json.loads(await socket.receive_from(timeout=5)) == {"type": "history", "messages": []}
    frame = await send(socket, type="message", text="Hi, are you free on May 3?", client_id="abcdef123")
    assert frame["type"] == "message" and frame["from"] == "visitor" and frame["client_id"] == "abcdef123"
    assert await stored() == ["Hi, are you free on May 3?"]
    assert await send(socket, type="ping") == {"type": "pong"}
    await socket.disconnect()
    # Reloaded: the same token gets its history.
    again, connected, _ = await connect()
    history = json.loads(await again.receive_from(timeout=5))
    assert [m["text"] for m in history["messages"]] == ["Hi, are you free on May 3?"]
    await again.disconnect()


async def test_a_staff_reply_arrives_live():
    socket, connected, _ = await connect()
    await socket.receive_from(timeout=5)
    await send(socket, type="message", text="hello", client_id="abcdef123")

    @database_sync_to_async
    def staff_replies():
        agent = make_user("alice", first_name="Alice", last_name="Hidden")
        conversation = Message.objects.get().conversation
        reply = inbox_services.reply(conversation=conversation, author=agent, text="Hi there!", channel="chat")
        deliver_message.apply(args=[reply.pk])  # a no-op when the commit already ran it (eager tasks)
        reply.refresh_from_db()
        return reply.delivery_status

    assert await staff_replies() == "sent"
    frame = json.loads(await socket.receive_from(timeout=5))
    assert (frame["from"], frame["text"], frame["agent"]) == ("staff", "Hi there!", "Alice")
    assert "Hidden" not in json.dumps(frame) and "alice" not in json.dumps(frame)
    await socket.disconnect()


@pytest.mark.parametrize("origin", [b"https://evil.example", b"null", None])
async def test_a_page_from_another_origin_is_refused(origin):
    socket, connected, code = await connect(origin=origin)
    assert not connected and code == 4403
    assert await database_sync_to_async(counted)("chat", "refused_origin") == 1


async def test_a_token_the_widget_cannot_make_is_refused():
    socket, connected, code = await connect(token="short")
    assert not connected and code == 4400


async def test_html_is_stored_and_sent_back_as_text():
    socket, _, _ = await connect()
    await socket.receive_from(timeout=5)
    frame = await send(socket, type="message", text="<script>alert(1)</script>", client_id="abcdef123")
    assert frame["text"] == "<script>alert(1)</script>"  # the widget shows it with textContent
    await socket.disconnect()


async def test_over_four_kilobytes_is_refused_and_not_stored():
    socket, _, _ = await connect()
    await socket.receive_from(timeout=5)
    frame = await send(socket, type="message", text="x" * 4097, client_id="abcdef123")
    assert frame["code"] == "too_large" and "4 KB" in frame["message"]
    frame = await send(socket, type="message", text="y" * 100_000, client_id="abcdef124")  # never parsed
    assert frame["code"] == "too_large"
    assert await stored() == []
    await socket.disconnect()
    assert await database_sync_to_async(counted)("chat", "too_large") == 2


async def test_bad_frames_get_an_error_not_a_crash():
    socket, _, _ = await connect()
    await socket.receive_from(timeout=5)
    for text in ["not json", "[1,2]", '{"type": "nope"}', '{"type": "message", "text": 5}']:
        await socket.send_to(text_data=text)
        frame = json.loads(await socket.receive_from(timeout=5))
        assert frame["type"] == "error"
    assert await stored() == []
    await socket.disconnect()


async def test_a_flood_is_limited_per_token_then_the_socket_is_closed(settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 3
    socket, _, _ = await connect()
    await socket.receive_from(timeout=5)
    codes = []
    for n in range(40):
        await socket.send_to(text_data=json.dumps({"type": "message", "text": f"spam {n}", "client_id": f"id{n:08d}"}))
        output = await socket.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            codes.append(output["code"])
            break
        codes.append(json.loads(output["text"]).get("code", "stored"))
    assert codes[:3] == ["stored"] * 3
    assert codes[3:-1] == ["rate_limited"] * 20 and codes[-1] == 4429
    assert len(await stored()) == 3
    # A second socket of the same visitor is limited too (the count is per token, not per socket).
    other, _, _ = await connect(address="198.51.100.9")
    await other.receive_from(timeout=5)
    assert (await send(other, type="message", text="more", client_id="abcdef999"))["code"] == "rate_limited"
    await other.disconnect()


async def test_connections_are_limited_per_address(settings):
    settings.CHAT_CONNECTIONS_PER_MINUTE_PER_IP = 2
    opened = []
    for n in range(2):
        socket, connected, _ = await connect(token=f"Tok{n}_" + "q" * 30)
        assert connected
        opened.append(socket)
    socket, connected, code = await connect(token="Tok9_" + "q" * 30)
    assert not connected and code == 4429
    _, connected, _ = await connect(token="Tok8_" + "q" * 30, address="198.51.100.10")
    assert connected
    for socket in opened:
        await socket.disconnect()


async def test_contact_errors_name_the_field_and_a_good_one_is_saved():
    socket, _, _ = await connect()
    await socket.receive_from(timeout=5)
    frame = await send(socket, type="contact", name="Kim", email="not-an-email")
    assert frame["type"] == "error" and frame["field"] == "email"
    assert await send(socket, type="contact", name="Kim", email="kim@example.com") == {"type": "contact_saved"}
    customer = await database_sync_to_async(
        lambda: services.CustomerIdentity.objects.get(kind="email").customer.first_name)()
    assert customer == "Kim"
    await socket.disconnect()


async def test_a_binary_frame_is_refused():
    socket, _, _ = await connect()
    await socket.receive_from(timeout=5)
    await socket.send_to(bytes_data=b"\x00\x01")
    frame = json.loads(await socket.receive_from(timeout=5))
    assert frame["code"] == "bad_frame"
    await socket.disconnect()
