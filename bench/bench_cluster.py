"""Two nodes behind nginx, measured (issue 16).

    .venv/bin/python bench/bench_cluster.py [--seconds 20] [--sockets 5000] [--skip-failover]

Runs the same Cluster as `make cluster` (deploy/cluster.py: two Uvicorn nodes in
production mode, DEBUG=0, pooled connections, nginx with TLS) on free loopback
ports, a Redis of its own (tests/cluster/services.py) and the bench database
(BENCH_DATABASE_URL, default myhibachi_bench, when it exists; otherwise a small
myhibachi_bench_cluster made with seed_demo). It measures:

- inbox list (GET /api/v1/inbox) requests per second at 50 concurrent clients,
  with p50/p99, through nginx (HTTPS, both nodes) and on one bare node (plain
  HTTP), with wrk (apt: wrk), each for --seconds. Flat out (each client sends
  its next request the moment an answer comes: the most the machine serves,
  and p99 is then mostly time queued behind the other 49), and through nginx
  also paced (each client pausing THINK_MS on average, at random, between an
  answer and its next request: the latency at a steady load); through nginx also with every
  page read afresh (a new unknown parameter per request, so no page is served
  from the list cache: what the first request after each change costs);
- --sockets staff WebSockets through nginx (spread over both nodes by
  least_conn), held by two client processes, then a broadcast: an event reaching
  all of them, p50/p99 from the API call that caused it to each socket's receipt
  (5 rounds). Receipt is the kernel's receive timestamp of the frame on each
  client socket (SO_TIMESTAMPNS; the clients speak TLS and WebSocket by hand),
  so the clients' own reading is outside it. During a round the clients only
  read (one recvmsg per socket, bytes kept with their stamps) and decrypt
  after it, so their work competes as little as it can with the servers' on
  the shared cores; when the client processes had read the bytes is
  reported beside it;
- each node's resident memory with its half of the sockets open;
- failover: 20 clients reading through nginx while node1 is killed with
  kill -9; the longest gap any client saw between two answers, and failures.

Prints a table, writes bench/results/cluster.json. Other people share the
machine: the load windows are short and the load average is recorded with
the figures.
"""
import asyncio
import base64
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import common
from common import load_average

from deploy.cluster import Cluster  # noqa: E402
from tests.browser.live_server import free_port  # noqa: E402
from tests.cluster.services import RedisServer  # noqa: E402

BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/myhibachi_bench")
SMALL_URL = "postgres://postgres@127.0.0.1:5432/myhibachi_bench_cluster"
WRK = shutil.which("wrk")
CLIENTS = 50

SETUP = """
import json
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.cached_db import SessionStore
from rest_framework.authtoken.models import Token
from tests.factories import make_user
from django.contrib.auth import get_user_model
user = get_user_model().objects.filter(username="bench-cluster").first() or make_user("bench-cluster")
token, _ = Token.objects.get_or_create(user=user)
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
from inbox import services
conversation = services.receive_message(channel="sms", sender="+14155550199", text="Bench").message.conversation_id
print(json.dumps({"token": token.key, "session": session.session_key, "conversation": conversation}))
"""


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the nodes and nginx inherit it
    return hard


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


# --- wrk ------------------------------------------------------------------------------

# Each request asks for a page no one has asked for (an unknown parameter the list ignores, a
# new value each time): the list is read afresh every time, as the first request after a change.
FRESH_PAGES = """
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, wrk.path .. "?fresh=" .. tostring(n) .. "-" .. tostring(math.random(1e9)))
end
"""


# Each client pauses between an answer and its next request, for a random time averaging
# THINK_MS (exponentially distributed: arrivals as from people and pollers acting on their own),
# so the clients offer a steady load short of the machine's limit rather than all it can take.
THINK_MS = 50
PACED = """
math.randomseed(os.time())
delay = function()
  return -%d * math.log(1 - math.random())
end
""" % THINK_MS


def wrk(url, headers, seconds, *, fresh=False, paced=False):
    command = [WRK, "-t2", f"-c{CLIENTS}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if fresh or paced:
            script.write((FRESH_PAGES if fresh else "") + (PACED if paced else ""))
            script.flush()
            command += ["-s", script.name]
        out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {q: _ms(re.search(rf"^\s+{q}%\s+(\S+)", out, re.M).group(1)) for q in ("50", "99")}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"req_per_s": rate, "p50_ms": latency["50"], "p99_ms": latency["99"],
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1).strip() if socket_errors else "", "load_average": load_average()}


def _ms(text):
    number, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


# --- sockets ------------------------------------------------------------------------------

CLIENT_PROCESSES = 2  # the socket clients, spread so one Python process's reading is not the figure
SCM_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux: the kernel's receive time of each read


class RawSocket:
    """One staff WebSocket with no WebSocket library: TLS through memory BIOs over a plain
    socket read with recvmsg, so each read carries the kernel's receive timestamp
    (SO_TIMESTAMPNS). The time a frame reached this machine is then known exactly, however
    long this process takes to get round to the socket among thousands."""

    def __init__(self, host, port, context, path, headers):
        self.sock = socket.create_connection((host, port), timeout=60)
        self.sock.setsockopt(socket.SOL_SOCKET, SCM_TIMESTAMPNS, 1)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=host)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill(blocking=True)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
                 *(f"{name}: {value}" for name, value in headers.items())]
        self.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            self._fill(blocking=True)
            reply += self._plaintext()
        head, _, self.buffer = reply.partition(b"\r\n\r\n")
        self.held = []  # [(kernel receive time, bytes, read at)] read but not yet decrypted (hold())
        if not head.startswith(b"HTTP/1.1 101"):
            raise OSError(f"upgrade refused: {head[:80]!r}")
        self.sock.setblocking(False)

    def fileno(self):
        return self.sock.fileno()

    def write(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def _flush(self):
        pending = self.outgoing.read()
        if pending:  # a handshake step or a pong: small, the send buffer takes it whole
            self.sock.sendall(pending)

    def _receive(self, blocking=False):
        """One read from the kernel: (its receive time on the time.time() clock, the bytes), or None."""
        if blocking:
            self.sock.setblocking(True)
        try:
            data, ancillary, _, _ = self.sock.recvmsg(262144, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return None
        finally:
            if blocking:
                self.sock.setblocking(False)
        if not data:
            raise ConnectionError("closed by the server")
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                return seconds + nanoseconds / 1e9, data
        return time.time(), data

    def _fill(self, blocking=False):
        """One read from the kernel into the TLS object; its receive time, or None."""
        read = self._receive(blocking)
        if read is None:
            return None
        self.incoming.write(read[1])
        return read[0]

    def _plaintext(self) -> bytes:
        out = b""
        while True:
            try:
                out += self.tls.read(262144)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                return out

    def hold(self):
        """Read what the kernel holds without decrypting it (a broadcast round: this process's work on
        each socket is then one system call, and competes little with the servers for the CPU).
        Each read is kept with the time.time() at which this process made it."""
        while True:
            read = self._receive()
            if read is None:
                return
            self.held.append((*read, time.time()))

    def frames(self):
        """Read what the kernel holds, after what hold() kept: [(kernel receive time, opcode, payload,
        when this process read it)] of each complete frame, stamped by the read that completed it."""
        out = []
        chunks, self.held = self.held, []
        while True:
            if chunks:
                at, data, read_at = chunks.pop(0)
                self.incoming.write(data)
            else:
                at, read_at = self._fill(), time.time()
                if at is None:
                    return out
            self.buffer += self._plaintext()
            while len(self.buffer) >= 2:
                opcode, length, start = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
                if length == 126:
                    length, start = struct.unpack("!H", self.buffer[2:4])[0], 4
                elif length == 127:
                    length, start = struct.unpack("!Q", self.buffer[2:10])[0], 10
                if len(self.buffer) < start + length:
                    break
                payload, self.buffer = self.buffer[start:start + length], self.buffer[start + length:]
                if opcode == 0x9:  # ping: a pong with its payload (client frames are masked)
                    self.write(_masked(0xA, payload))
                out.append((at, opcode, payload, read_at))


def _masked(opcode, payload):
    mask = os.urandom(4)
    return (bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def _socket_client(host, port, cafile, path, headers, count, conn):
    """One client process: open `count` sockets, then for each round armed by the parent report,
    for each socket, when the kernel received the first frame naming the round's marker, and when
    this process had read it (both on the time.time() clock every process here shares)."""
    import select

    context = ssl.create_default_context(cafile=cafile)
    sockets = []
    for _ in range(count):
        for attempt in range(20):
            try:
                sockets.append(RawSocket(host, port, context, path, headers))
                break
            except (OSError, ssl.SSLError):
                time.sleep(0.2 * (attempt + 1))
        else:
            raise RuntimeError("could not open a socket")
    poller = select.epoll()
    by_fd = {ws.fileno(): ws for ws in sockets}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    poller.register(conn.fileno(), select.EPOLLIN)
    conn.send(("ready", count))
    marker, seen, kernel, read = None, set(), [], []
    while True:
        for fd, _ in poller.poll(1.0):
            if fd == conn.fileno():
                command, value = conn.recv()
                if command == "stop":
                    for ws in sockets:
                        ws.sock.close()
                    return
                if command == "round":
                    marker, seen, kernel, read = value.encode(), set(), [], []
                    conn.send(("armed", value))
                elif command == "report":
                    # Now decrypt what the round's reads kept, and find each socket's marked frame.
                    for ws in sockets:
                        for at, opcode, payload, read_at in ws.frames():
                            if opcode == 0x1 and ws.fileno() not in seen and marker in payload:
                                seen.add(ws.fileno())
                                kernel.append(at)
                                read.append(read_at)
                    conn.send(("times", kernel, read))
                    marker = None
                continue
            ws = by_fd[fd]
            if marker:  # a round is on: read only, decrypt at the report
                ws.hold()
            else:
                ws.frames()  # between rounds: answer pings at once


async def sockets_and_broadcast(cluster, session, token, conversation, count, rounds=5):
    """count sockets through nginx, held by CLIENT_PROCESSES processes; then rounds of one reply each,
    timed from just before its API call to the kernel's receipt of the first frame naming it on
    each socket (and, reported beside it, to the client process having read it)."""
    import multiprocessing

    import httpx

    headers = {"Cookie": f"sessionid={session}", "Origin": cluster.https_url}
    shares = [count // CLIENT_PROCESSES + (i < count % CLIENT_PROCESSES) for i in range(CLIENT_PROCESSES)]
    spawn = multiprocessing.get_context("fork")
    clients = []
    started = time.monotonic()
    for share in shares:
        parent, child = spawn.Pipe()
        process = spawn.Process(target=_socket_client, args=("127.0.0.1", cluster.https_port, str(cluster.cert),
                                                             "/ws/inbox", headers, share, child), daemon=True)
        process.start()
        clients.append((process, parent))
    loop = asyncio.get_running_loop()
    for process, conn in clients:
        answer = await loop.run_in_executor(None, conn.recv)
        assert answer[0] == "ready", answer
    connect_seconds = time.monotonic() - started
    await asyncio.sleep(2)
    per_node = {node: node_metric(cluster, node, "myhibachi_staff_sockets") for node in cluster.nodes}
    memory = {node: rss_mb(cluster.pid(node)) for node in cluster.nodes}

    latencies = []
    async with httpx.AsyncClient(verify=str(cluster.cert), timeout=30) as web:
        for round_number in range(rounds):
            marker = f"broadcast-{uuid.uuid4().hex[:12]}"
            for process, conn in clients:
                conn.send(("round", marker))
            for process, conn in clients:
                assert (await loop.run_in_executor(None, conn.recv)) == ("armed", marker)
            began = time.time()
            answer = await web.post(f"{cluster.https_url}/api/v1/inbox/{conversation}/reply",
                                    json={"text": marker}, headers={"Authorization": f"Token {token}"})
            answer.raise_for_status()
            await asyncio.sleep(5)  # far longer than any delivery: what has not come by then counts as missed
            kernel, read = [], []
            for process, conn in clients:
                conn.send(("report", None))
                kind, at_kernel, at_read = await loop.run_in_executor(None, conn.recv)
                kernel += at_kernel
                read += at_read
            latencies.append({"reached": len(kernel), "kernel": [(at - began) * 1000 for at in kernel],
                              "read": [(at - began) * 1000 for at in read]})
    for process, conn in clients:
        conn.send(("stop", None))
    for process, conn in clients:
        process.join(30)
    kernel = [ms for r in latencies for ms in r["kernel"]]
    read = [ms for r in latencies for ms in r["read"]]
    return {"sockets": count, "client_processes": CLIENT_PROCESSES, "connect_seconds": round(connect_seconds, 1),
            "per_node": per_node, "rss_mb": {node: round(mb, 1) for node, mb in memory.items()},
            "rounds": len(latencies), "reached_all_rounds": sum(r["reached"] == count for r in latencies),
            "min_reached": min(r["reached"] for r in latencies),
            "p50_ms": round(common.percentile(kernel, 50), 1), "p99_ms": round(common.percentile(kernel, 99), 1),
            "max_ms": round(max(kernel), 1),
            "read_p50_ms": round(common.percentile(read, 50), 1), "read_p99_ms": round(common.percentile(read, 99), 1),
            "per_round": [{"p50_ms": round(common.percentile(r["kernel"], 50), 1),
                           "p99_ms": round(common.percentile(r["kernel"], 99), 1), "max_ms": round(max(r["kernel"]), 1)}
                          for r in latencies if r["kernel"]],
            "load_average": load_average()}


def node_metric(cluster, node, name):
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{cluster.nodes[node]}/metrics", timeout=10).read().decode()
    match = re.search(rf"^{name} ([\d.e+]+)$", text, re.M)
    return float(match.group(1)) if match else None


# --- failover -------------------------------------------------------------------------------

def failover(cluster, token, clients=20, before=3.0, after=5.0):
    import requests

    stop = threading.Event()
    answers = [[] for _ in range(clients)]  # per client: (finished at, ok)

    def client(index):
        web = requests.Session()
        web.trust_env = False  # not REQUESTS_CA_BUNDLE: our self-signed certificate
        web.verify = str(cluster.cert)
        while not stop.is_set():
            try:
                ok = web.get(f"{cluster.https_url}/api/v1/inbox", headers={"Authorization": f"Token {token}"},
                             timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            answers[index].append((time.monotonic(), ok))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(before)
    killed = time.monotonic()
    os.kill(cluster.pid("node1"), signal.SIGKILL)
    process = cluster.processes.pop("node1", None)
    if process is not None:
        process.wait(timeout=10)
    time.sleep(after)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    gaps, normal, never = [], [], 0
    for series in answers:
        oks = [at for at, ok in series if ok]
        if not any(at > killed for at in oks):
            never += 1  # no answer after the kill at all
            continue
        for previous, following in zip(oks, oks[1:]):
            (gaps if following >= killed else normal).append(following - previous)
    failures = sum(not ok for series in answers for _, ok in series)
    return {"clients": clients, "answers": sum(len(s) for s in answers), "failed": failures,
            "clients_without_answer_after_kill": never,
            "longest_gap_ms": round(max(gaps, default=float("nan")) * 1000, 1),
            "typical_gap_ms": round(statistics.median(normal) * 1000, 1) if normal else None,
            "load_average": load_average()}


# --- the run ------------------------------------------------------------------------------------

def main():
    parser = common.parser(__doc__)
    parser.add_argument("--seconds", type=int, default=20, help="each wrk load window")
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--skip-failover", action="store_true")
    args = parser.parse_args()
    if not WRK:
        raise SystemExit("wrk is needed: apt-get install wrk")
    fd_limit = raise_fd_limit()
    if fd_limit < args.sockets * 2 + 1000:
        raise SystemExit(f"the open-file limit ({fd_limit}) is too low for {args.sockets} sockets")

    url = BENCH_URL if common.database_exists(BENCH_URL) else SMALL_URL
    redis = RedisServer().start()
    state = Path(tempfile.mkdtemp(prefix="myhibachi-bench-cluster-"))
    os.chmod(state, 0o755)
    ports = set()
    while len(ports) < 4:
        ports.add(free_port())
    node1, node2, http_port, https_port = sorted(ports)
    cluster = Cluster(state, database_url=url, redis_url=redis.url, node_ports=(node1, node2), http_port=http_port,
                      https_port=https_port, pool_size=8, worker_connections=8192,
                      extra_env={"LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "tests.browser.live_settings"})
    results = {"database": url.rsplit("/", 1)[1], "cores": os.cpu_count(), "fd_limit": fd_limit}
    try:
        print(f"[bench] database {url}; preparing")
        cluster.create_database()
        cluster.prepare(seed=url == SMALL_URL)
        cluster.ensure_certificate()
        for node in cluster.nodes:
            cluster.start_node(node)
        cluster.start_nginx()
        setup = json.loads(cluster.manage("shell", "-c", SETUP, capture=True).strip().splitlines()[-1])
        auth = {"Authorization": f"Token {setup['token']}"}

        print(f"[bench] inbox list through nginx (HTTPS, 2 nodes), {CLIENTS} clients, {args.seconds} s")
        results["list_nginx"] = wrk(f"{cluster.https_url}/api/v1/inbox", auth, args.seconds)
        print(f"  {results['list_nginx']}")
        print(f"[bench] the same, each client pausing {THINK_MS} ms on average between requests, {args.seconds} s")
        results["list_nginx_paced"] = wrk(f"{cluster.https_url}/api/v1/inbox", auth, args.seconds, paced=True)
        print(f"  {results['list_nginx_paced']}")
        print(f"[bench] the same flat out, every page read afresh (no cached page), {args.seconds} s")
        results["list_nginx_fresh"] = wrk(f"{cluster.https_url}/api/v1/inbox", auth, args.seconds, fresh=True)
        print(f"  {results['list_nginx_fresh']}")
        print(f"[bench] inbox list on node1 alone (plain HTTP), {CLIENTS} clients, {args.seconds} s")
        results["list_bare_node"] = wrk(f"http://127.0.0.1:{node1}/api/v1/inbox",
                                        {**auth, "X-Forwarded-Proto": "https"}, args.seconds)
        print(f"  {results['list_bare_node']}")

        print(f"[bench] {args.sockets} WebSockets through nginx, then 5 broadcasts")
        results["sockets"] = asyncio.run(sockets_and_broadcast(cluster, setup["session"], setup["token"],
                                                               setup["conversation"], args.sockets))
        print(f"  {results['sockets']}")

        if not args.skip_failover:
            print("[bench] failover: 20 readers through nginx, kill -9 node1")
            results["failover"] = failover(cluster, setup["token"])
            print(f"  {results['failover']}")
    finally:
        cluster.stop()
        redis.close()
        shutil.rmtree(state, ignore_errors=True)

    results["date"] = time.strftime("%Y-%m-%d")
    table(results)
    common.write_result("cluster.json", results)


def table(r):
    nginx, fresh, bare = r["list_nginx"], r["list_nginx_fresh"], r["list_bare_node"]
    paced = r["list_nginx_paced"]
    rows = [
        ("inbox list, nginx + TLS, 2 nodes, 50 clients flat out", f"{nginx['req_per_s']:.0f} req/s, p50 "
         f"{nginx['p50_ms']:.1f} ms, p99 {nginx['p99_ms']:.1f} ms, non-2xx {nginx['non_2xx']}"),
        (f"  the same, each client pausing ~{THINK_MS} ms", f"{paced['req_per_s']:.0f} req/s, p50 "
         f"{paced['p50_ms']:.1f} ms, p99 {paced['p99_ms']:.1f} ms, non-2xx {paced['non_2xx']}"),
        ("  flat out, every page read afresh", f"{fresh['req_per_s']:.0f} req/s, p50 {fresh['p50_ms']:.1f} ms, "
         f"p99 {fresh['p99_ms']:.1f} ms, non-2xx {fresh['non_2xx']}"),
        ("inbox list, 1 bare node, 50 clients", f"{bare['req_per_s']:.0f} req/s, p50 {bare['p50_ms']:.1f} ms, "
         f"p99 {bare['p99_ms']:.1f} ms"),
    ]
    s = r["sockets"]
    rows.append((f"{s['sockets']} sockets, broadcast to all (kernel receipt)",
                 f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, all reached in {s['reached_all_rounds']}/"
                 f"{s['rounds']} rounds; per node {s['per_node']}"))
    rows.append(("  the same, read by the client processes", f"p50 {s['read_p50_ms']} ms, p99 {s['read_p99_ms']} ms"))
    rows.append(("memory per node (RSS)", ", ".join(f"{n} {mb} MB" for n, mb in s["rss_mb"].items())))
    if "failover" in r:
        f = r["failover"]
        rows.append(("failover, kill -9 node1, 20 readers", f"longest gap {f['longest_gap_ms']} ms "
                     f"(typical {f['typical_gap_ms']} ms), failed {f['failed']} of {f['answers']}"))
    common.print_table(["measure", "result"], rows)


if __name__ == "__main__":
    main()
