"""Under Uvicorn (the nodes' server) StaffFanout writes one ready-made frame to every open socket
(consumers.direct_writer): the bytes a browser gets must be exactly the frame the websockets
library would have sent, and any socket not plainly open and writable must take the ASGI send."""
import asyncio
import threading
import time

import pytest
import uvicorn
from websockets.sync.client import connect

from inbox.consumers import direct_writer, text_frame
from tests.browser.live_server import free_port


class Server:
    """A real Uvicorn (websockets-sansio, as the nodes run it) in a thread, serving `app`."""

    def __init__(self, app, *, deflate=False):
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, ws="websockets-sansio", loop="asyncio",
                                ws_per_message_deflate=deflate, lifespan="off", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def recording_app(seen):
    """Accepts, writes one frame directly and one through the ASGI send, then after the client
    leaves tries one more direct write."""

    async def app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        write = direct_writer(send)
        seen["before_accept"] = write(text_frame("too early"))
        await send({"type": "websocket.accept"})
        seen["direct"] = write(text_frame("direct: café ☕ " + "x" * 70_000))  # a 64-bit length
        if not seen["direct"]:
            await send({"type": "websocket.send", "text": "direct: café ☕ " + "x" * 70_000})
        await send({"type": "websocket.send", "text": "through ASGI"})
        assert (await receive())["type"] == "websocket.disconnect"
        seen["after_close"] = write(text_frame("too late"))

    return app


def test_a_direct_frame_reaches_the_client_exactly_and_in_order_with_asgi_sends():
    seen = {}
    with Server(recording_app(seen)) as server:
        with connect(f"ws://127.0.0.1:{server.port}/ws/inbox", compression=None) as ws:
            assert ws.recv(timeout=5) == "direct: café ☕ " + "x" * 70_000
            assert ws.recv(timeout=5) == "through ASGI"
        for _ in range(200):
            if "after_close" in seen:
                break
            time.sleep(0.01)
    assert seen == {"before_accept": False, "direct": True, "after_close": False}


def test_with_a_compression_extension_every_frame_takes_the_asgi_send():
    seen = {}
    with Server(recording_app(seen), deflate=True) as server:
        with connect(f"ws://127.0.0.1:{server.port}/ws/inbox", compression="deflate") as ws:
            assert ws.recv(timeout=5) == "direct: café ☕ " + "x" * 70_000
            assert ws.recv(timeout=5) == "through ASGI"
    assert seen["direct"] is False


def test_a_socket_held_back_by_flow_control_takes_the_asgi_send():
    seen = {}

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        protocol = send.__self__
        protocol.pause_writing()  # what the transport does when its buffer is full
        seen["paused"] = direct_writer(send)(text_frame("held"))
        protocol.resume_writing()
        seen["resumed"] = direct_writer(send)(text_frame("flowing"))
        await receive()

    with Server(app) as server:
        with connect(f"ws://127.0.0.1:{server.port}/", compression=None) as ws:
            assert ws.recv(timeout=5) == "flowing"
    assert seen == {"paused": False, "resumed": True}


@pytest.mark.parametrize("send", [None, print, asyncio.sleep])
def test_other_servers_have_no_direct_writer(send):
    assert direct_writer(send) is None
