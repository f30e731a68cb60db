"""Live updates across real processes: an ASGI node (Daphne, and Uvicorn with
uvloop and httptools as bench/bench_screens.py runs it) serves the socket, and
the event is raised in a different process (as a Celery worker or the other
ASGI node would) and travels through channels-redis."""
import asyncio
import json
import sys

import pytest
import websockets
from django.conf import settings
from django.test import Client

from tests.browser.live_server import ROOT, LiveServer, database_url
from tests.factories import make_user

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

RAISE_IN_ANOTHER_PROCESS = (
    "from inbox import services; "
    "services.receive_message(channel='sms', sender='+14155550177', text='Sent from another process', "
    "external_id='xproc-1')"
)


@pytest.fixture(params=["daphne", "uvicorn"])
def node(request):
    server = LiveServer(database_url=database_url(), redis_url=settings.REDIS_URL, server=request.param)
    server.start()
    yield server
    server.stop()


def run(coroutine):
    """asyncio.run on a fresh thread, whatever loop the test's thread may hold."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=120)


def cookie_for(user):
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def events_from_another_process(url, cookie, env, count, timeout=15):
    async with websockets.connect(url, origin="http://127.0.0.1", additional_headers={"Cookie": cookie}) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), timeout)) == {"type": "pong"}  # joined and listening
        events = []
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "shell", "-c", RAISE_IN_ANOTHER_PROCESS, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-2000:]
        while len(events) < count:
            events.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
        return events


def test_an_event_raised_in_another_process_reaches_a_socket_on_a_node(node):
    agent = make_user("alice")
    # The other process gets the same database, Redis and channel prefix as the node.
    got = run(events_from_another_process(node.ws_url, cookie_for(agent), node.env, 2))
    assert [e["type"] for e in got] == ["conversation.created", "message.created"]
    assert got[1]["data"]["preview"] == "Sent from another process"
    assert got[1]["id"] == got[0]["id"] + 1


def test_a_node_refuses_foreign_origins_and_anonymous_sockets(node):
    agent = make_user("alice")

    async def attempt(origin, cookie):
        headers = {"Cookie": cookie} if cookie else {}
        try:
            async with websockets.connect(node.ws_url, origin=origin, additional_headers=headers):
                return "open"
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert run(attempt("https://evil.example", cookie_for(agent))) == 403
    assert run(attempt("http://127.0.0.1", None)) == 403
    assert run(attempt("http://127.0.0.1", cookie_for(agent))) == "open"
