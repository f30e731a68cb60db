"""Benchmark of the staff screens and live updates, against PostgreSQL and Redis.

    .venv/bin/python bench/bench_screens.py [--customers 100000] [--skip-seed]

1. Data: database BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/bench,
   created if missing), filled by `manage.py seed_demo --customers N
   --conversations-per-customer 2 --messages-per-conversation 5` (N=100,000 gives
   about 1M messages), plus one customer with a 200-message thread.
2. Server-side render time of the inbox page and of that 200-message thread
   (Django's full request path in process, as the ASGI handler runs it):
   p50/p95/p99 over repeated requests. Budget p95 <= 50 ms.
3. Page weight of the inbox: HTML + CSS + JS, uncompressed. Budget <= 150 KB.
4. Event latency: a daphne node (its own process) with 500 connected sockets;
   this process calls receive_message; latency is from the commit to each
   socket receiving the event (channels-redis between the processes).
   Budget p99 <= 100 ms.

Prints a table and writes bench/results/screens.json.
"""
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ["DATABASE_URL"] = BENCH_DB
os.environ["REDIS_URL"] = REDIS_URL
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.browser.live_settings")
os.environ.setdefault("LIVE_CHANNEL_PREFIX", f"bench{os.getpid()}:asgi")
os.environ.setdefault("LIVE_CACHE_PREFIX", f"bench{os.getpid()}:cache")
os.environ.setdefault("LOG_LEVEL", "WARNING")

BUDGET_RENDER_P95_MS = 50
BUDGET_PAGE_KB = 150
BUDGET_EVENT_P99_MS = 100


def pct(values, p):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ensure_database():
    name = BENCH_DB.rsplit("/", 1)[1]
    listed = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc",
                             f"SELECT 1 FROM pg_database WHERE datname = '{name}'"], capture_output=True, text=True)
    if listed.stdout.strip() != "1":
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)


def seed(customers):
    env = {**os.environ}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
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
                             phone="+14155559999")
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


async def socket_latency(server, cookie, sockets, events, stamps, ready, go):
    import websockets

    received = {}  # event id -> list of receive times
    connections = []
    for _ in range(sockets):
        ws = await websockets.connect(server.ws_url, origin="http://127.0.0.1", additional_headers={"Cookie": cookie},
                                      compression=None, max_queue=None)
        connections.append(ws)
    for ws in connections:  # every socket has joined its groups
        await ws.send('{"type":"ping"}')
        assert json.loads(await ws.recv()) == {"type": "pong"}

    async def reader(ws):
        while True:
            try:
                raw = await ws.recv()
            except websockets.ConnectionClosed:
                return
            at = time.time()
            event = json.loads(raw)
            if event.get("type") == "message.created":
                received.setdefault(event["id"], []).append(at)

    tasks = [asyncio.create_task(reader(ws)) for ws in connections]
    ready.set()
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    deadline = time.time() + 20
    while time.time() < deadline and (len(received) < events or any(len(v) < sockets for v in received.values())):
        await asyncio.sleep(0.05)
    for ws in connections:
        await ws.close()
    for task in tasks:
        task.cancel()
    return received


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--skip-seed", action="store_true", help="Use the data already in the bench database.")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--spacing", type=float, default=0.5, help="Seconds between probe events (default 0.5).")
    args = parser.parse_args()

    ensure_database()
    seed_seconds = None if args.skip_seed else seed(args.customers)

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection, transaction
    from django.test import Client

    from inbox import services
    from inbox.models import Conversation, InboxEvent, Message
    from tests.browser.live_server import LiveServer, database_url
    from tests.factories import make_user

    settings.DEBUG = False  # no query log, as in production
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]  # the in-process client's host
    from django.contrib.auth import get_user_model

    agent = get_user_model().objects.filter(username="bench-agent").first() or make_user("bench-agent")
    conversation = long_thread_customer()
    scale = {"messages": Message.objects.count(), "conversations": Conversation.objects.count(),
             "customers": Conversation.objects.values("customer").distinct().count()}
    client = Client()
    client.force_login(agent)

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
    server = LiveServer(database_url=database_url(connection.settings_dict), redis_url=REDIS_URL,
                        prefix=os.environ["LIVE_CHANNEL_PREFIX"].removesuffix(":asgi"),
                        log_path=ROOT / "bench" / "results" / "daphne.log")
    server.env["LIVE_CHANNEL_PREFIX"] = os.environ["LIVE_CHANNEL_PREFIX"]
    server.env["LIVE_CACHE_PREFIX"] = os.environ["LIVE_CACHE_PREFIX"]
    server.start()
    stamps, ready, go = {}, threading.Event(), threading.Event()
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    result = {}

    def run_sockets():
        result["received"] = asyncio.run(socket_latency(server, cookie, args.sockets, args.events, stamps, ready, go))

    thread = threading.Thread(target=run_sockets)
    thread.start()
    if not ready.wait(120):
        server.stop()
        raise SystemExit("the sockets did not connect in time")
    go.set()
    run = int(time.time())
    for n in range(args.events):
        committed = []
        with transaction.atomic():
            transaction.on_commit(lambda: committed.append(time.time()))  # runs first, right after COMMIT
            received = services.receive_message(channel="sms", sender=f"+1415666{n:04d}",
                                                text=f"latency probe {n}", external_id=f"bench-{run}-{n}")
        event_id = (InboxEvent.objects.filter(type="message.created", conversation=received.message.conversation_id)
                    .order_by("-id").values_list("id", flat=True).first())
        stamps[event_id] = committed[0]
        time.sleep(args.spacing)
    thread.join(60)
    server.stop()
    latencies = [(at - stamps[eid]) * 1000 for eid, times in result.get("received", {}).items() if eid in stamps
                 for at in times]
    delivered = sum(len(times) for eid, times in result.get("received", {}).items() if eid in stamps)

    report = {
        "scale": scale,
        "seed_seconds": seed_seconds,
        "inbox_page_ms": {"p50": pct(inbox_ms, 50), "p95": pct(inbox_ms, 95), "p99": pct(inbox_ms, 99),
                          "n": len(inbox_ms)},
        "thread_page_ms": {"p50": pct(thread_ms, 50), "p95": pct(thread_ms, 95), "p99": pct(thread_ms, 99),
                           "n": len(thread_ms), "items_rendered": items},
        "thread_older_fragment_ms": {"p50": pct(older_ms, 50), "p95": pct(older_ms, 95), "p99": pct(older_ms, 99),
                                     "n": len(older_ms)},
        "search_page_ms": {"p50": pct(search_ms, 50), "p95": pct(search_ms, 95), "n": len(search_ms)},
        "inbox_page_weight_bytes": weight,
        "inbox_page_weight_parts": weight_parts,
        "event_latency_ms": {"p50": pct(latencies, 50), "p95": pct(latencies, 95), "p99": pct(latencies, 99),
                             "max": max(latencies) if latencies else None, "sockets": args.sockets,
                             "events": args.events, "spacing_s": args.spacing, "deliveries": delivered,
                             "expected_deliveries": args.sockets * args.events},
        "budgets": {"render_p95_ms": BUDGET_RENDER_P95_MS, "page_kb": BUDGET_PAGE_KB,
                    "event_p99_ms": BUDGET_EVENT_P99_MS},
    }
    out = ROOT / "bench" / "results" / "screens.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))

    def ok(value, budget):
        return "ok" if value <= budget else "OVER"

    print(f"\nScale: {scale['messages']:,} messages, {scale['conversations']:,} conversations, "
          f"{scale['customers']:,} customers (PostgreSQL, database {connection.settings_dict['NAME']})")
    print(f"{'measure':42} {'p50':>8} {'p95':>8} {'p99':>8}  budget")
    for label, data, budget in [("inbox page render (ms)", report["inbox_page_ms"], BUDGET_RENDER_P95_MS),
                                (f"200-message thread page, newest {items} (ms)", report["thread_page_ms"],
                                 BUDGET_RENDER_P95_MS),
                                ("  'show older' fragment, next 50 (ms)", report["thread_older_fragment_ms"],
                                 BUDGET_RENDER_P95_MS)]:
        print(f"{label:42} {data['p50']:8.1f} {data['p95']:8.1f} {data['p99']:8.1f}  p95 <= {budget} "
              f"{ok(data['p95'], budget)}")
    print(f"{'search page render (ms)':42} {report['search_page_ms']['p50']:8.1f} {report['search_page_ms']['p95']:8.1f}")
    lat = report["event_latency_ms"]
    print(f"{'event latency, ' + str(args.sockets) + ' sockets (ms)':42} {lat['p50']:8.1f} {lat['p95']:8.1f} "
          f"{lat['p99']:8.1f}  p99 <= {BUDGET_EVENT_P99_MS} {ok(lat['p99'], BUDGET_EVENT_P99_MS)}")
    print(f"  deliveries {delivered:,} of {args.sockets * args.events:,}")
    print(f"{'inbox page weight (KB, uncompressed)':42} {weight / 1024:8.1f} {'':>8} {'':>8}  <= {BUDGET_PAGE_KB} "
          f"{ok(weight / 1024, BUDGET_PAGE_KB)}  {weight_parts}")
    print(f"\nWrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
