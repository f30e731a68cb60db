"""Two nodes behind nginx, measured (issue 16).

    .venv/bin/python bench/bench_cluster.py [--seconds 20] [--sockets 5000] [--skip-failover]

Runs the same Cluster as `make cluster` (deploy/cluster.py: two Uvicorn nodes in
production mode, DEBUG=0, pooled connections, nginx with TLS) on free loopback
ports, a Redis of its own (tests/cluster/services.py) and the bench database
(BENCH_DATABASE_URL, default myhibachi_bench, when it exists; otherwise a small
myhibachi_bench_cluster made with seed_demo). It measures:

- inbox list (GET /api/v1/inbox) requests per second at 50 concurrent clients,
  with p50/p99, through nginx (HTTPS, both nodes) and on one bare node (plain
  HTTP), with wrk (apt: wrk), each for --seconds;
- --sockets staff WebSockets through nginx (spread over both nodes by
  least_conn), held by two client processes, then a broadcast: an event reaching
  all of them, p50/p99 from the API call that caused it to each socket's receipt
  (5 rounds; receipt read by the clients' Python, so their decoding is inside);
- each node's resident memory with its half of the sockets open;
- failover: 20 clients reading through nginx while node1 is killed with
  kill -9; the longest gap any client saw between two answers, and failures.

Prints a table, writes bench/results/cluster.json. Other people share the
machine: the load windows are short and the load average is recorded with
the figures.
"""
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import ssl
import statistics
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

def wrk(url, headers, seconds):
    command = [WRK, "-t2", f"-c{CLIENTS}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
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

CLIENT_PROCESSES = 2  # the socket clients, spread so one Python process's decoding is not the figure


def _socket_client(url, cafile, origin, headers, count, conn):
    """One client process: open `count` sockets, then for each round armed by the parent note when
    (time.time(), one clock for every process here) each socket first sees a frame naming the marker."""
    import websockets

    async def run():
        context = ssl.create_default_context(cafile=cafile)
        opened, received, current = [], {}, {"round": None}
        semaphore = asyncio.Semaphore(50)  # handshakes (TLS, then the upgrade) in flight at once

        async def one():
            for attempt in range(20):
                try:
                    async with semaphore:
                        ws = await websockets.connect(url, ssl=context, origin=origin, additional_headers=headers,
                                                      open_timeout=60, ping_interval=None, max_queue=None)
                    break
                except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError):
                    await asyncio.sleep(0.2 * (attempt + 1))
            else:
                raise RuntimeError("could not open a socket")
            opened.append(ws)
            seen = set()
            async for message in ws:
                marker = current["round"]
                if marker is not None and marker not in seen and marker in message:  # the first event naming it
                    seen.add(marker)
                    received.setdefault(marker, []).append(time.time())

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        while len(opened) < count:
            failed = [task for task in tasks if task.done() and task.exception()]
            if failed:
                raise failed[0].exception()
            await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        conn.send(("ready", count))
        while True:
            command, marker = await loop.run_in_executor(None, conn.recv)
            if command == "stop":
                break
            current["round"] = marker
            conn.send(("armed", marker))
            deadline = time.monotonic() + 30
            while len(received.get(marker, [])) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            conn.send(("times", received.get(marker, [])))
        for ws in opened:
            await ws.close()
        for task in tasks:
            task.cancel()

    asyncio.run(run())


async def sockets_and_broadcast(cluster, session, token, conversation, count, rounds=5):
    """count sockets through nginx, held by CLIENT_PROCESSES processes; then rounds of one reply each,
    timed from just before its API call to each socket's first frame naming it."""
    import multiprocessing

    import httpx

    url = f"wss://127.0.0.1:{cluster.https_port}/ws/inbox"
    headers = {"Cookie": f"sessionid={session}"}
    shares = [count // CLIENT_PROCESSES + (i < count % CLIENT_PROCESSES) for i in range(CLIENT_PROCESSES)]
    spawn = multiprocessing.get_context("fork")
    clients = []
    started = time.monotonic()
    for share in shares:
        parent, child = spawn.Pipe()
        process = spawn.Process(target=_socket_client, args=(url, str(cluster.cert), cluster.https_url, headers,
                                                             share, child), daemon=True)
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
            got = []
            for process, conn in clients:
                kind, times = await loop.run_in_executor(None, conn.recv)
                got += times
            latencies.append({"reached": len(got), "ms": [(at - began) * 1000 for at in got]})
            await asyncio.sleep(1)
    for process, conn in clients:
        conn.send(("stop", None))
    for process, conn in clients:
        process.join(30)
    every = [ms for r in latencies for ms in r["ms"]]
    return {"sockets": count, "client_processes": CLIENT_PROCESSES, "connect_seconds": round(connect_seconds, 1),
            "per_node": per_node, "rss_mb": {node: round(mb, 1) for node, mb in memory.items()},
            "rounds": len(latencies), "reached_all_rounds": sum(r["reached"] == count for r in latencies),
            "min_reached": min(r["reached"] for r in latencies),
            "p50_ms": round(common.percentile(every, 50), 1), "p99_ms": round(common.percentile(every, 99), 1),
            "max_ms": round(max(every), 1), "load_average": load_average()}


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
    nginx, bare = r["list_nginx"], r["list_bare_node"]
    rows = [
        ("inbox list, nginx + TLS, 2 nodes, 50 clients", f"{nginx['req_per_s']:.0f} req/s, p50 {nginx['p50_ms']:.1f} ms, "
         f"p99 {nginx['p99_ms']:.1f} ms, non-2xx {nginx['non_2xx']}"),
        ("inbox list, 1 bare node, 50 clients", f"{bare['req_per_s']:.0f} req/s, p50 {bare['p50_ms']:.1f} ms, "
         f"p99 {bare['p99_ms']:.1f} ms"),
    ]
    s = r["sockets"]
    rows.append((f"{s['sockets']} sockets, broadcast to all", f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, "
                 f"all reached in {s['reached_all_rounds']}/{s['rounds']} rounds; per node {s['per_node']}"))
    rows.append(("memory per node (RSS)", ", ".join(f"{n} {mb} MB" for n, mb in s["rss_mb"].items())))
    if "failover" in r:
        f = r["failover"]
        rows.append(("failover, kill -9 node1, 20 readers", f"longest gap {f['longest_gap_ms']} ms "
                     f"(typical {f['typical_gap_ms']} ms), failed {f['failed']} of {f['answers']}"))
    common.print_table(["measure", "result"], rows)


if __name__ == "__main__":
    main()
