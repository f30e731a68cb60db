"""Two nodes behind nginx, as deploy/cluster runs them (issue 16).

The same Cluster class as `make cluster`, on free loopback ports (never
8001/8002/8080/8443: a running `make cluster` is left alone) and in a
temporary folder: two Uvicorn nodes with DEBUG=0 on the test database,
sharing one channel-layer prefix, and nginx rendered from
deploy/nginx.conf.template. No Celery: tasks run in the nodes
(tests/browser/live_settings.py).
"""
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import requests.adapters
import websockets
from django.conf import settings
from django.test import Client
from urllib3.util.retry import Retry

from deploy.cluster import Cluster
from tests.browser.live_server import database_url, free_port
from tests.factories import make_user

pytestmark = [pytest.mark.nginx, pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def cluster(django_db_setup, django_db_blocker, static_root):
    state = tempfile.mkdtemp(prefix="myhibachi-cluster-")
    os.chmod(state, 0o755)  # nginx's workers (nobody) read the static files in it
    prefix = f"cluster{uuid.uuid4().hex[:10]}"
    with django_db_blocker.unblock():
        url = database_url()
    ports = set()
    while len(ports) < 4:
        ports.add(free_port())
    node1, node2, http_port, https_port = sorted(ports)
    cluster = Cluster(
        state, database_url=url, redis_url=settings.REDIS_URL, node_ports=(node1, node2), http_port=http_port,
        https_port=https_port, pool_size=4, static_root=static_root,
        extra_env={"DJANGO_SETTINGS_MODULE": "tests.browser.live_settings", "SECRET_KEY": settings.SECRET_KEY,
                   "LIVE_CHANNEL_PREFIX": f"{prefix}:asgi", "LIVE_CACHE_PREFIX": f"{prefix}:cache",
                   "LOG_LEVEL": "WARNING"})
    try:
        cluster.state.mkdir(exist_ok=True)
        cluster.ensure_certificate()
        for node in cluster.nodes:
            cluster.start_node(node)
        cluster.start_nginx()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def nodes(cluster, transactional_db):
    """The cluster with both nodes in service, before and after the test."""
    yield cluster
    for node in cluster.nodes:
        if cluster.drain_file(node).exists():
            cluster.undrain(node)


def https(cluster):
    """A client that behaves like a browser towards nginx.

    When nginx reloads (the watchdog and the rolling restart do), its old workers close idle
    keep-alive connections; a request written onto one at that instant sees the connection
    close with no answer. HTTP/1.1 lets a client resend an idempotent request then (RFC 9112
    §9.3.1) and browsers do; requests does not, so GET and HEAD get that one resend here.
    Nothing else is retried: a 502/504 from nginx or a POST still counts as a failure.
    """
    session = requests.Session()
    resend_once = Retry(total=1, connect=0, read=1, redirect=0, status=0, other=0,
                        allowed_methods=frozenset({"GET", "HEAD"}), raise_on_status=False)
    session.mount("https://", requests.adapters.HTTPAdapter(max_retries=resend_once))
    # Not the environment's CA bundle or proxies: requests lets REQUESTS_CA_BUNDLE
    # override a session's verify. Our self-signed certificate names 127.0.0.1.
    session.trust_env = False
    session.verify = str(cluster.cert)
    return session


def cookie_for(user):
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def run(coroutine):
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=60)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_https_serves_the_app_and_http_redirects(nodes):
    web = https(nodes)
    login = web.get(f"{nodes.https_url}/login/", timeout=10)
    assert login.status_code == 200
    assert "Log in" in login.text
    assert login.headers["X-Node"] in nodes.nodes
    assert re.fullmatch(r"[0-9a-f]{32}", login.headers["X-Request-ID"])
    # One HSTS header (nginx's; the node's own is hidden).
    assert login.raw.headers.getlist("Strict-Transport-Security") == [
        "max-age=31536000; includeSubDomains; preload"]
    assert web.get(f"{nodes.https_url}/health", timeout=10).json() == {"status": "ok"}
    assert web.get(f"{nodes.https_url}/metrics", timeout=10).status_code == 404  # only on a node's own port

    plain = http.client.HTTPConnection("127.0.0.1", nodes.http_port, timeout=10)
    plain.request("GET", "/login/?next=/inbox/")
    redirect = plain.getresponse()
    assert redirect.status == 301
    assert redirect.getheader("Location") == f"https://127.0.0.1:{nodes.https_port}/login/?next=/inbox/"

    # HTTP/2 is offered, and nothing older than TLS 1.2 is accepted.
    context = ssl.create_default_context(cafile=str(nodes.cert))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", nodes.https_port)) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.selected_alpn_protocol() == "h2"
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", nodes.https_port)) as raw:
            old.wrap_socket(raw, server_hostname="127.0.0.1").close()


def test_log_in_through_nginx_in_production_mode(nodes):
    # DEBUG=0 nodes: the CSRF origin check, secure cookies and the HTTPS
    # redirect all depend on nginx's Host and X-Forwarded-Proto.
    make_user("alice")
    web = https(nodes)
    page = web.get(f"{nodes.https_url}/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = web.post(f"{nodes.https_url}/login/", allow_redirects=False, timeout=10,
                      data={"csrfmiddlewaretoken": token, "username": "alice", "password": "pw-for-tests-1"},
                      headers={"Origin": nodes.https_url, "Referer": f"{nodes.https_url}/login/"})
    assert answer.status_code == 302, answer.text[:500]
    assert "Secure" in answer.headers["Set-Cookie"]
    assert web.get(f"{nodes.https_url}/", timeout=10).status_code == 200


def test_static_files_come_from_nginx_with_a_long_cache_and_large_bodies_pass(nodes):
    web = https(nodes)
    hashed = next(name for name in os.listdir(nodes.static_root / "js")
                  if re.fullmatch(r"inbox\.[0-9a-f]{12}\.js", name))
    answer = web.get(f"{nodes.https_url}/static/js/{hashed}", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert answer.status_code == 200
    assert "X-Node" not in answer.headers  # nginx, not a node
    assert answer.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert answer.headers["Content-Encoding"] == "gzip"
    assert "Strict-Transport-Security" in answer.headers
    # nginx's default limit is 1 MB; the inbound email webhook needs EMAIL_MAX_MESSAGE_BYTES + 1 MiB.
    big = web.post(f"{nodes.https_url}/health", data=b"x" * (2 * 1024 * 1024), timeout=20)
    assert big.status_code == 403  # reached a node (whose CSRF check refused it), not nginx's 413
    assert big.headers["X-Node"] in nodes.nodes
    assert f"client_max_body_size {50 * 1024 * 1024 + 1024 * 1024};" in nodes.nginx_conf.read_text()


def test_a_socket_on_one_node_gets_the_event_of_an_api_call_on_the_other(nodes):
    from rest_framework.authtoken.models import Token

    from inbox import services

    agent = make_user("alice")
    token = Token.objects.create(user=agent).key
    conversation = services.receive_message(channel="sms", sender="+14155550123", text="Hello").message.conversation
    cookie = cookie_for(agent)
    context = ssl.create_default_context(cafile=str(nodes.cert))
    nodes.drain("node2")  # the socket can only land on node1

    async def scenario():
        async with websockets.connect(f"wss://127.0.0.1:{nodes.https_port}/ws/inbox", ssl=context,
                                      origin=nodes.https_url, additional_headers={"Cookie": cookie}) as ws:
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
            # Swap: node1 out, node2 in. The socket stays open (nginx's old worker keeps it).
            await asyncio.to_thread(nodes.undrain, "node2")
            await asyncio.to_thread(nodes.drain, "node1")
            answer = await asyncio.to_thread(
                https(nodes).post, f"{nodes.https_url}/api/v1/inbox/{conversation.pk}/note",
                json={"body": "Written on node2"}, headers={"Authorization": f"Token {token}"}, timeout=10)
            assert answer.status_code in (200, 201), answer.text[:500]
            assert answer.headers["X-Node"] == "node2"
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if event.get("type") == "note.created":
                    return event

    event = run(scenario())
    assert "Written on node2" in json.dumps(event)


def test_a_draining_node_is_not_ready_and_nginx_sends_everything_to_the_other(nodes):
    web = https(nodes)
    nodes.drain_file("node1").touch()
    ready = requests.get(f"http://127.0.0.1:{nodes.nodes['node1']}/ready", timeout=5)
    assert ready.status_code == 503
    assert ready.json()["failing"] == ["draining"]
    assert requests.get(f"http://127.0.0.1:{nodes.nodes['node1']}/health", timeout=5).status_code == 200
    nodes.drain("node1")  # marks it down in nginx and reloads
    assert "down;" in nodes.nginx_conf.read_text()
    answered = {web.get(f"{nodes.https_url}/login/", timeout=10).headers["X-Node"] for _ in range(20)}
    assert answered == {"node2"}
    nodes.undrain("node1")
    answered = {https(nodes).get(f"{nodes.https_url}/login/", timeout=10).headers["X-Node"] for _ in range(20)}
    assert answered == {"node1", "node2"}


def test_a_rolling_restart_fails_no_request(nodes):
    before = {node: nodes.pid(node) for node in nodes.nodes}
    results, stop = [], threading.Event()

    def steady_stream():
        web = https(nodes)
        while not stop.is_set():
            try:
                answer = web.get(f"{nodes.https_url}/login/", timeout=10)
                results.append((answer.status_code, answer.headers.get("X-Node")))
            except requests.RequestException as exc:
                results.append((repr(exc), None))
            time.sleep(0.01)

    client = threading.Thread(target=steady_stream)
    client.start()
    try:
        time.sleep(0.5)
        nodes.rolling_restart()
        time.sleep(0.5)
    finally:
        stop.set()
        client.join(timeout=15)
    failed = [status for status, _ in results if status != 200]
    assert not failed, failed[:5]
    assert len(results) > 50
    assert {node for _, node in results} == {"node1", "node2"}
    after = {node: nodes.pid(node) for node in nodes.nodes}
    assert all(after[node] and after[node] != before[node] for node in nodes.nodes)


def upstream_down(cluster, node):
    return f"127.0.0.1:{cluster.nodes[node]} max_fails=3 fail_timeout=10s down;" in cluster.nginx_conf.read_text()


def eventually(condition, what, timeout=15):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def test_the_watchdog_takes_a_failing_node_out_and_puts_it_back(nodes):
    nodes.start_watchdog()
    node1 = nodes.pid("node1")
    try:
        # A wedged node: its port still accepts, nothing answers (each probe times out).
        os.kill(node1, signal.SIGSTOP)
        started = time.monotonic()
        eventually(lambda: upstream_down(nodes, "node1"), "node1 down in nginx.conf")
        assert time.monotonic() - started < 10
        assert nodes.down_file("node1").exists()
        time.sleep(1.5)  # the reload the watchdog started: new workers serve
        web = https(nodes)
        answers = [web.get(f"{nodes.https_url}/login/", timeout=10) for _ in range(20)]
        assert [(a.status_code, a.headers["X-Node"]) for a in answers] == [(200, "node2")] * 20

        os.kill(node1, signal.SIGCONT)
        eventually(lambda: not upstream_down(nodes, "node1"), "node1 back in nginx.conf")
        assert not nodes.down_file("node1").exists()
        time.sleep(1.5)
        answered = {https(nodes).get(f"{nodes.https_url}/login/", timeout=10).headers["X-Node"] for _ in range(20)}
        assert answered == {"node1", "node2"}

        # A manual drain is not the watchdog's to undo, nor a failure of its own.
        nodes.drain("node2")
        time.sleep(2 * 2 + 0.5)  # two rounds of probes
        assert upstream_down(nodes, "node2") and not nodes.down_file("node2").exists()
        nodes.undrain("node2")
        time.sleep(2.5)
        assert not upstream_down(nodes, "node2")
        assert "marked down" in nodes.log_file("watchdog").read_text()
    finally:
        os.kill(node1, signal.SIGCONT)
        nodes.stop_process("watchdog")
        for node in nodes.nodes:
            nodes.down_file(node).unlink(missing_ok=True)
        if nodes.pid("nginx"):
            nodes.reload_nginx()
