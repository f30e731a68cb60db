"""Benchmark of the staff screens and live updates, against PostgreSQL and Redis.

    .venv/bin/python bench/bench_screens.py [--customers 100000] [--skip-seed]
    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_ws \
        .venv/bin/python bench/bench_screens.py --only-latency [--server daphne]

1. Data: database BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/bench,
   created if missing), filled by `manage.py seed_demo --customers N
   --conversations-per-customer 2 --messages-per-conversation 5` (N=100,000 gives
   about 1M messages), plus one customer with a 200-message thread.
2. Server-side render time of the inbox page and of that 200-message thread
   (Django's full request path in process, as the ASGI handler runs it):
   p50/p95/p99 over repeated requests. Budget p95 <= 50 ms.
3. Page weight of the inbox: HTML + CSS + JS, uncompressed. Budget <= 150 KB.
4. Event latency (--only-latency runs just this part, on an empty database of
   its own): an ASGI node in its own process (--server uvicorn, the default:
   uvloop, httptools, websockets-sansio, no per-message deflate; or --server
   daphne, as LiveServer runs it) with 500 staff sockets open over channels-redis.
   This process calls receive_message in a transaction, one probe every
   --spacing s; the probe's time zero is taken by an on_commit hook registered
   before the service's own, i.e. right after COMMIT, so the on-commit publish
   (events.py) is inside the measured time. One warm-up probe is not counted.
   The sockets are held by --client-processes separate processes (plain
   sockets, one epoll loop each, websockets' sans-I/O protocol; no coroutine per
   socket), run at SCHED_IDLE so that they take no CPU from the server, Redis,
   PostgreSQL or this process (they stand for browsers on other machines). A
   frame's receive time is the kernel's: every client socket has SO_TIMESTAMPNS,
   the kernel stamps each incoming segment with CLOCK_REALTIME (the clock of
   time.time() here) when it reaches the socket, and the client reads one frame
   per recvmsg to get the stamp of the segment that completed that frame. So
   the clients' own Python work and scheduling are not in the measure; the time
   their code got to each frame is reported beside it to show what a reader in
   one process would have added. Clients read in batches (--client-batch s after
   a wake-up). The only error this leaves is on the safe side: when a later
   segment (a server ping) arrives before a frame is read, the kernel merges
   them and the frame carries the later stamp. Latency = kernel stamp - commit,
   over every (probe, socket) pair of the message.created event. Budget p99 <= 100 ms.

Prints a table and writes bench/results/screens.json.
"""
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import common
from common import ROOT

BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ["DATABASE_URL"] = BENCH_DB
os.environ["REDIS_URL"] = REDIS_URL
common.environment("tests.browser.live_settings", LIVE_CHANNEL_PREFIX=f"bench{os.getpid()}:asgi",
                   LIVE_CACHE_PREFIX=f"bench{os.getpid()}:cache", LOG_LEVEL="WARNING",
                   DB_POOL_SIZE=4)  # pooled connections with prepared statements, as a node runs

BUDGET_RENDER_P95_MS = 50
BUDGET_PAGE_KB = 150
BUDGET_EVENT_P99_MS = 100


def ensure_database(*, migrate=False):
    """The bench database (BENCH_DATABASE_URL), created when missing; migrate: and migrated."""
    common.ensure_database(BENCH_DB)
    if migrate:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env={**os.environ},
                       check=True)


def seed(customers):
    env = {**os.environ}
    ensure_database(migrate=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "manage.py", "seed_demo", "--customers", str(customers),
                    "--conversations-per-customer", "2", "--messages-per-conversation", "5"],
                   cwd=ROOT, env=env, check=True)
    return time.monotonic() - started


def long_thread_customer():
    """One customer with 200 messages (and no more), built once."""
    from django.utils import timezone

    from crm.models import CustomerIdentity
    from inbox.models import Conversation, Message
    from tests.factories import make_customer

    found = CustomerIdentity.objects.filter(value="bench-long-thread@example.com").first()
    if found:
        return found.customer.conversations.order_by("-id").first()
    customer = make_customer("bench-long-thread@example.com", first_name="Long", last_name="Thread",
                             phone="+14155559998")
    start = timezone.now() - timedelta(days=30)
    conversation = Conversation.objects.create(customer=customer, status="open", last_activity_at=start)
    rows = []
    for n in range(200):
        inbound = n % 2 == 0
        channel = ["email", "sms", "chat"][n % 3]
        rows.append(Message(
            conversation=conversation, customer=customer, channel=channel,
            direction="inbound" if inbound else "outbound",
            text=f"Message {n}: " + "we would like hibachi for our party, can you confirm the menu? " * 3,
            html=(f"<p>Message {n} with <b>html</b></p><blockquote>On Monday someone wrote: earlier</blockquote>"
                  if channel == "email" else ""),
            delivery_status="received" if inbound else "delivered", created_at=start + timedelta(minutes=10 * n)))
    Message.objects.bulk_create(rows)
    last = Message.objects.filter(conversation=conversation).order_by("-created_at").first()
    Conversation.objects.filter(pk=conversation.pk).update(last_message=last, last_activity_at=last.created_at)
    return conversation


def render_times(client, path, repeat):
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return samples, response


def page_weight(html: bytes):
    import re

    total = len(html)
    parts = {"html": len(html)}
    for ref in re.findall(rb'(?:href|src)="(/static/[^"]+\.(?:css|js))"', html):
        path = ROOT / "static" / ref.decode().removeprefix("/static/")
        parts[path.name] = path.stat().st_size
        total += path.stat().st_size
    return total, parts


# --- event latency: the socket clients ---------------------------------------------
#
# Each client process holds its share of the sockets with plain blocking-free
# sockets, one epoll loop and websockets' sans-I/O protocol (no coroutine per
# socket). The receive time of a frame is the kernel's: SO_TIMESTAMPNS stamps
# every incoming TCP segment with CLOCK_REALTIME when it reaches the socket, and
# recvmsg hands that stamp back. So the harness's own Python work (parsing, JSON,
# being scheduled late on a busy 2-core machine) is not in the measured time.
# The time the client code got around to the frame is recorded too, to show
# what a one-process asyncio reader would have added.

SO_TIMESTAMPNS = 35  # Linux; <asm-generic/socket.h>. SCM_TIMESTAMPNS has the same value.
TIMESPEC = "qq"  # struct timespec on 64-bit Linux


def kernel_stamp(ancillary):
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = struct.unpack(TIMESPEC, data[:16])
            return seconds + nanoseconds / 1e9
    return None


def open_socket(host, port, cookie, path="/ws/inbox"):
    """A connected, handshaken, pong-confirmed socket: (socket, protocol). No cookie: none sent
    (bench_chat.py's visitor sockets)."""
    from websockets.client import ClientProtocol
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Response
    from websockets.protocol import State
    from websockets.typing import Origin
    from websockets.uri import parse_uri

    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    # Offer permessage-deflate as browsers do, so a server that would compress
    # every frame for every socket pays for it here too.
    protocol = ClientProtocol(parse_uri(f"ws://{host}:{port}{path}"), origin=Origin("http://127.0.0.1"),
                              extensions=[ClientPerMessageDeflateFactory()])
    request = protocol.connect()
    if cookie:
        request.headers["Cookie"] = cookie
    protocol.send_request(request)
    sock.sendall(b"".join(protocol.data_to_send()))
    pinged = False
    while True:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("the server closed a socket during the handshake")
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Response):
                if protocol.state is not State.OPEN:
                    raise RuntimeError(f"handshake refused: {event.status_code}")
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                if json.loads(event.data) == {"type": "pong"}:
                    sock.settimeout(None)
                    sock.setblocking(False)
                    return sock, protocol
        if protocol.state is State.OPEN and not pinged:
            # Answered only after connect() finished: the socket is in its groups.
            protocol.send_text(b'{"type":"ping"}')
            pinged = True
        pending = protocol.data_to_send()
        if pending:
            sock.sendall(b"".join(pending))


def frame_length(header):
    """Length of the server (unmasked) WebSocket frame starting with `header`, or
    None while fewer bytes than its header are available."""
    if len(header) < 2:
        return None
    size = header[1] & 0x7F
    if size == 126:
        return None if len(header) < 4 else 4 + struct.unpack("!H", header[2:4])[0]
    if size == 127:
        return None if len(header) < 10 else 10 + struct.unpack("!Q", header[2:10])[0]
    return 2 + size


def client_process(host, port, cookie, count, probe_type, batch_seconds, paths=None):
    """Run by `bench_screens.py --socket-client`: hold `count` sockets, print
    "ready", stamp every `probe_type` frame until "stop" arrives on stdin, then
    print one JSON line with [event id, kernel arrival time, time the client code read it]."""
    from websockets.frames import Frame, Opcode

    # The clients stand for browsers on other machines: they run only on CPU time
    # the server, PostgreSQL, Redis and the sending process leave over.
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    sockets = [open_socket(host, port, cookie, path) for path in paths or ["/ws/inbox"] * count]
    by_fd = {sock.fileno(): (sock, protocol) for sock, protocol in sockets}
    poller = select.epoll()
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    stdin = sys.stdin.fileno()
    poller.register(stdin, select.EPOLLIN)
    print("ready", flush=True)
    marker = f'"type": "{probe_type}"'.encode()
    stamps, closed, space = [], 0, socket.CMSG_SPACE(16)
    while True:
        poller.poll()
        # Read in batches: the kernel has stamped every frame on arrival, so waking
        # the clients once per fan-out rather than once per frame loses nothing and
        # leaves the CPU to the server while it sends.
        time.sleep(batch_seconds)
        for fd, _ in poller.poll(0):
            if fd == stdin:
                sys.stdin.readline()
                for sock, _ in sockets:
                    sock.close()
                print(json.dumps({"stamps": stamps, "closed": closed}), flush=True)
                return
            sock, protocol = by_fd[fd]
            while True:
                # One frame per recvmsg, so its stamp is that of the segment that
                # completed this frame (and not of a later one read in the same call).
                try:
                    header = sock.recv(10, socket.MSG_PEEK)
                except BlockingIOError:
                    break
                if not header:
                    poller.unregister(fd)
                    closed += 1
                    break
                length = frame_length(header)
                if length is None or len(sock.recv(length, socket.MSG_PEEK)) < length:
                    break  # the rest of the frame is still on its way
                data, ancillary, _, _ = sock.recvmsg(length, space)
                read_at = time.time()
                arrived = kernel_stamp(ancillary)
                protocol.receive_data(data)
                for frame in protocol.events_received():
                    if isinstance(frame, Frame) and frame.opcode is Opcode.TEXT and marker in frame.data:
                        stamps.append((json.loads(frame.data)["id"], arrived, read_at))
                pending = [chunk for chunk in protocol.data_to_send() if chunk]  # pongs to the server's pings
                if pending:
                    sock.sendall(b"".join(pending))


def start_clients(server, cookie, sockets, processes, probe_type, batch_seconds, paths=None):
    """paths: one WebSocket path per socket (default: /ws/inbox for all), shared out among the processes."""
    import tempfile
    from urllib.parse import urlsplit

    where = urlsplit(server.url)
    clients = []
    start = 0
    for n in range(processes):
        share = sockets // processes + (1 if n < sockets % processes else 0)
        env = {**os.environ, "BENCH_COOKIE": cookie}
        if paths is not None:
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as listing:
                json.dump(paths[start:start + share], listing)
            env["BENCH_SOCKET_PATHS"] = listing.name
        start += share
        clients.append(subprocess.Popen(
            [sys.executable, __file__, "--socket-client", where.hostname, str(where.port), str(share), probe_type,
             str(batch_seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env))
    for client in clients:
        line = client.stdout.readline()
        if line.strip() != "ready":
            for other in clients:
                other.kill()
            raise SystemExit(f"a socket client did not get ready: {line!r}")
    return clients


def stop_clients(clients):
    stamps, closed = [], 0
    for client in clients:
        out, _ = client.communicate("stop\n", timeout=60)
        result = json.loads(out.strip().splitlines()[-1])
        stamps += result["stamps"]
        closed += result["closed"]
    return stamps, closed


def start_server(kind, prefix, log_path, extra_env=None):
    """The ASGI node under test, in its own process (tests.browser.live_server):
    uvicorn as production runs it, or daphne. extra_env: settings for this bench's node."""
    from django.db import connection

    from tests.browser.live_server import LiveServer, database_url

    server = LiveServer(database_url=database_url(connection.settings_dict), redis_url=REDIS_URL,
                        prefix=prefix.removesuffix(":asgi"), log_path=log_path, server=kind)
    server.env["LIVE_CHANNEL_PREFIX"] = os.environ["LIVE_CHANNEL_PREFIX"]
    server.env["LIVE_CACHE_PREFIX"] = os.environ["LIVE_CACHE_PREFIX"]
    server.env.update(extra_env or {})
    return server.start()


def event_latency(args, cookie):
    """Raise args.events messages through receive_message, one every args.spacing
    seconds, with args.sockets staff sockets open on a separate ASGI server process."""
    from django.db import transaction

    from inbox import services
    from inbox.models import InboxEvent

    server = start_server(args.server, os.environ["LIVE_CHANNEL_PREFIX"],
                          ROOT / "bench" / "results" / f"{args.server}.log")
    try:
        clients = start_clients(server, cookie, args.sockets, args.client_processes, "message.created",
                                args.client_batch)
        committed_at, published = {}, []
        run = int(time.time())
        try:
            time.sleep(1)  # the connection burst settles
            # Probe -1 warms up what a running node has warm (the sending process's
            # channel-layer connection and Lua script, the node's first fan-out); not counted.
            for n in range(-1, args.events):
                committed = []
                with transaction.atomic():
                    transaction.on_commit(lambda: committed.append(time.time()))  # runs first, right after COMMIT
                    received = services.receive_message(channel="sms", sender=f"+1415666{n + 1:04d}",
                                                        text=f"latency probe {n}", external_id=f"bench-{run}-{n}")
                if n >= 0:
                    published.append((time.time() - committed[0]) * 1000)  # every on_commit handler has run
                event_id = (InboxEvent.objects.filter(type="message.created",
                                                      conversation=received.message.conversation_id)
                            .order_by("-id").values_list("id", flat=True).first())
                if n >= 0:
                    committed_at[event_id] = committed[0]
                time.sleep(args.spacing)
            time.sleep(2)  # stragglers
        finally:
            stamps, closed = stop_clients(clients)
    finally:
        server.stop()
    probes = [s for s in stamps if s[0] in committed_at]
    arrived = [(at - committed_at[eid]) * 1000 for eid, at, _ in probes if at is not None]
    read = [(at - committed_at[eid]) * 1000 for eid, _, at in probes]
    per_event = {}
    for eid, at, _ in probes:
        if at is not None:
            per_event.setdefault(eid, []).append((at - committed_at[eid]) * 1000)
    return {
        **common.percentiles(arrived), "max": max(arrived) if arrived else None,
        "first_socket_p50": common.percentile([min(v) for v in per_event.values()], 50),
        "last_socket_p50": common.percentile([max(v) for v in per_event.values()], 50),
        "client_code_read_ms": common.percentiles(read),
        "commit_to_published_ms": {"p50": common.percentile(published, 50), "max": max(published) if published else None},
        "per_event": [[eid, len(v), round(min(v), 1), round(max(v), 1)] for eid, v in sorted(per_event.items())],
        "server": args.server, "sockets": args.sockets, "client_processes": args.client_processes,
        "client_batch_s": args.client_batch, "events": args.events, "spacing_s": args.spacing, "deliveries": len(probes), "unstamped": len(probes) - len(arrived),
        "expected_deliveries": args.sockets * args.events, "sockets_closed_by_server": closed,
    }


def report_latency(lat, args):
    verdict = "ok" if lat["p99"] <= BUDGET_EVENT_P99_MS else "OVER"
    print(f"{'event latency, ' + str(args.sockets) + ' sockets, ' + lat['server'] + ' (ms)':42} {lat['p50']:8.1f} {lat['p95']:8.1f} "
          f"{lat['p99']:8.1f}  p99 <= {BUDGET_EVENT_P99_MS} {verdict}")
    print(f"  first socket of an event p50 {lat['first_socket_p50']:.1f} ms, last socket p50 "
          f"{lat['last_socket_p50']:.1f} ms, max {lat['max']:.1f} ms; the sending process's on-commit "
          f"handlers took p50 {lat['commit_to_published_ms']['p50']:.1f} ms")
    code = lat["client_code_read_ms"]
    print(f"  (as read by the client code, not the measure: p50 {code['p50']:.1f}, p95 {code['p95']:.1f}, "
          f"p99 {code['p99']:.1f} ms)")
    print(f"  deliveries {lat['deliveries']:,} of {lat['expected_deliveries']:,} "
          f"({lat['client_processes']} client processes; {lat['unstamped']} without a kernel stamp; "
          f"{lat['sockets_closed_by_server']} sockets closed by the server)")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--socket-client":
        host, port, count, probe_type, batch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
        paths = None
        if os.environ.get("BENCH_SOCKET_PATHS"):
            listing = Path(os.environ["BENCH_SOCKET_PATHS"])
            paths = json.loads(listing.read_text())
            listing.unlink()
        client_process(host, port, os.environ["BENCH_COOKIE"], count, probe_type, float(batch), paths)
        return
    parser = common.parser(__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--skip-seed", action="store_true", help="Use the data already in the bench database.")
    parser.add_argument("--only-latency", action="store_true",
                        help="Only the event-latency part (migrates the database, seeds nothing).")
    parser.add_argument("--skip-latency", action="store_true",
                        help="Only the render times and page weight (for iterating; writes screens-render.json).")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--client-processes", type=int, default=2,
                        help="Processes the sockets are spread over (default 2).")
    parser.add_argument("--client-batch", type=float, default=0.02,
                        help="Seconds a client waits after a wake-up before reading all its sockets (default 0.02; "
                             "less than half of --spacing).")
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="uvicorn",
                        help="ASGI server of the node under test (default uvicorn).")
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--spacing", type=float, default=0.5, help="Seconds between probe events (default 0.5).")
    args = parser.parse_args()
    if args.client_batch >= args.spacing / 2:
        parser.error("--client-batch must be less than half of --spacing (see the docstring)")

    ensure_database(migrate=args.only_latency)
    seed_seconds = None if args.skip_seed or args.only_latency else seed(args.customers)

    common.setup_django(as_production=True)
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    from inbox.models import Conversation, Message
    from tests.factories import make_user

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]  # the in-process client's host
    from django.contrib.auth import get_user_model

    agent = get_user_model().objects.filter(username="bench-agent").first() or make_user("bench-agent")
    client = Client()
    client.force_login(agent)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    if args.only_latency:
        lat = event_latency(args, cookie)
        report_latency(lat, args)
        common.write_result("screens-latency.json", {"event_latency_ms": lat, "budget_p99_ms": BUDGET_EVENT_P99_MS})
        return

    conversation = long_thread_customer()
    if seed_seconds is not None:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")  # as autovacuum would after the import: plans from real statistics
    scale = {"messages": Message.objects.count(), "conversations": Conversation.objects.count(),
             "customers": Conversation.objects.values("customer").distinct().count()}

    client.get("/")  # warm caches (status counts, templates)
    inbox_ms, response = render_times(client, "/", args.repeat)
    weight, weight_parts = page_weight(response.content)
    thread_path = f"/inbox/{conversation.pk}/"
    client.get(thread_path)
    thread_ms, thread_response = render_times(client, thread_path, args.repeat)
    items = thread_response.content.decode().count('class="item ')
    import re

    older_path = re.search(r'hx-get="(/inbox/\d+/older\?before=[^"]+)"', thread_response.content.decode()).group(1)
    older_ms, _ = render_times(client, older_path, args.repeat)
    search_ms, _ = render_times(client, "/inbox/?status=all&q=menu", max(20, args.repeat // 10))

    # --- event latency over two processes ---------------------------------------
    lat = None if args.skip_latency else event_latency(args, cookie)

    report = {
        "scale": scale,
        "seed_seconds": seed_seconds,
        "inbox_page_ms": {**common.percentiles(inbox_ms), "n": len(inbox_ms)},
        "thread_page_ms": {**common.percentiles(thread_ms), "n": len(thread_ms), "items_rendered": items},
        "thread_older_fragment_ms": {**common.percentiles(older_ms), "n": len(older_ms)},
        "search_page_ms": {**common.percentiles(search_ms, (50, 95)), "n": len(search_ms)},
        "inbox_page_weight_bytes": weight,
        "inbox_page_weight_parts": weight_parts,
        "event_latency_ms": lat,
        "budgets": {"render_p95_ms": BUDGET_RENDER_P95_MS, "page_kb": BUDGET_PAGE_KB,
                    "event_p99_ms": BUDGET_EVENT_P99_MS},
    }
    print(f"\nScale: {scale['messages']:,} messages, {scale['conversations']:,} conversations, "
          f"{scale['customers']:,} customers (PostgreSQL, database {connection.settings_dict['NAME']})")
    rows = [[label, data["p50"], data["p95"], data["p99"], f"p95 <= {BUDGET_RENDER_P95_MS} "
             f"{common.verdict(data['p95'], BUDGET_RENDER_P95_MS)}"]
            for label, data in [("inbox page render (ms)", report["inbox_page_ms"]),
                                (f"200-message thread page, newest {items} (ms)", report["thread_page_ms"]),
                                ("  'show older' fragment, next 50 (ms)", report["thread_older_fragment_ms"])]]
    rows.append(["search page render (ms)", report["search_page_ms"]["p50"], report["search_page_ms"]["p95"], None, ""])
    rows.append(["inbox page weight (KB, uncompressed)", weight / 1024, None, None,
                 f"<= {BUDGET_PAGE_KB} {common.verdict(weight / 1024, BUDGET_PAGE_KB)}"])
    common.print_table(["measure", "p50", "p95", "p99", "budget"], rows)
    print(f"  page weight by part (bytes): {weight_parts}")
    if lat is not None:
        report_latency(lat, args)
    common.write_result("screens-render.json" if args.skip_latency else "screens.json", report)


if __name__ == "__main__":
    main()
