"""StaffFanout.deliver, the per-node hand-over of staff events to local sockets:
in place for sockets whose send completes at once, in order and without holding
up the others for a socket whose send the server holds back."""
import asyncio
import json
import logging

import pytest

from inbox import consumers
from inbox.consumers import StaffFanout

pytestmark = pytest.mark.asyncio


class Socket:
    """Stands for a consumer: send_frame is the server's send, held back while `gate` is clear."""

    write_frame = None  # not Uvicorn (tests of direct_writer below)

    def __init__(self, held_back=False, fails=False):
        self.got = []
        self.gate = asyncio.Event()
        if not held_back:
            self.gate.set()
        self.fails = fails

    async def send_frame(self, message):
        assert message["type"] == "websocket.send"
        await self.gate.wait()
        if self.fails:
            raise ConnectionResetError("gone")
        self.got.append(json.loads(message["text"])["id"])


def fanout_with(*sockets):
    fanout = StaffFanout(layer=None)
    fanout.sockets.update(sockets)
    return fanout


def event(n):
    return {"id": n, "type": "conversation.updated", "conversation": 1, "at": "2026-01-01T00:00:00Z", "data": {}}


async def settle(fanout):
    for _ in range(100):
        if not fanout.finishing:
            return
        await asyncio.sleep(0)
    raise AssertionError("held-back sends did not finish")


async def test_ready_sockets_get_each_event_in_place_without_tasks():
    sockets = [Socket() for _ in range(50)]
    fanout = fanout_with(*sockets)
    for n in (1, 2, 3):
        fanout.deliver(event(n))
        assert all(s.got == list(range(1, n + 1)) for s in sockets)  # before any await
    assert not fanout.finishing and not fanout.backlogs


async def test_a_held_back_socket_gets_every_event_in_order_and_holds_up_no_one():
    fast, slow = Socket(), Socket(held_back=True)
    fanout = fanout_with(fast, slow)
    for n in range(1, 6):
        fanout.deliver(event(n))
    assert fast.got == [1, 2, 3, 4, 5]
    assert slow.got == []
    slow.gate.set()
    await settle(fanout)
    assert slow.got == [1, 2, 3, 4, 5]
    assert not fanout.backlogs  # back to sending in place
    fanout.deliver(event(6))
    assert slow.got[-1] == 6 and fast.got[-1] == 6 and not fanout.finishing


async def test_a_socket_held_back_too_long_loses_events_past_the_backlog(monkeypatch):
    monkeypatch.setattr(consumers, "MAX_BACKLOG", 2)
    slow = Socket(held_back=True)
    fanout = fanout_with(slow)
    for n in range(1, 7):
        fanout.deliver(event(n))
    assert fanout.dropped == 3  # 1 in flight, 2 queued, 3 dropped: the page sees the gap and catches up
    slow.gate.set()
    await settle(fanout)
    assert slow.got == [1, 2, 3]


async def test_a_failing_socket_is_logged_and_the_others_still_get_the_event(caplog):
    broken, fine = Socket(fails=True), Socket()
    fanout = fanout_with(broken, fine)
    with caplog.at_level(logging.WARNING, logger="inbox.consumers"):
        fanout.deliver(event(1))
    assert fine.got == [1]
    assert "could not forward event 1" in caplog.text


async def test_a_socket_that_disconnects_while_held_back_gets_nothing_more():
    slow = Socket(held_back=True)
    fanout = fanout_with(slow)
    fanout.deliver(event(1))
    fanout.deliver(event(2))
    fanout.discard(slow)
    slow.gate.set()
    await settle(fanout)
    assert slow.got == [1]  # the send already started completes; the queued one is not sent
    assert not fanout.backlogs
