"""Inbox API benchmark at production scale.

    .venv/bin/python bench/bench_inbox.py            # generate data if missing, then measure
    .venv/bin/python bench/bench_inbox.py --reseed   # drop and rebuild the bench database first

Fills a dedicated PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/myhibachi_bench) with 100,000 customers,
200,000 conversations and about 1,000,000 messages via `seed_demo`, plus one
customer with a 200-message thread. Then it times server-side requests
through Django's test client (middleware, view, queries, serialisation; no
network), and prints p50/p95/p99 and queries per request. Results go to
bench/results/inbox.json.
"""
import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/myhibachi_bench")
BUDGETS = {"list": {"p50": 10, "p99": 30}, "thread": {"p95": 30}, "search": {"p95": 50}}


def ensure_database(url, reseed):
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and reseed:
            conn.execute(f'DROP DATABASE "{name}"')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django():
    os.environ["DATABASE_URL"] = BENCH_URL
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myhibachi.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")  # the in-process test client's host
    os.environ.setdefault("DB_POOL_SIZE", "4")  # pooled connections with prepared statements, as a node runs
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False  # measured as production runs: no query log
    import gc

    gc.collect()
    gc.freeze()  # as myhibachi/asgi.py does after start-up


def generate(customers, per_customer, per_conversation):
    from django.core.management import call_command

    from inbox.models import Message

    call_command("migrate", verbosity=0)
    if Message.objects.count() < customers * per_customer * per_conversation * 0.9:
        print(f"generating {customers:,} customers × {per_customer} conversations × ~{per_conversation} messages …")
        started = time.monotonic()
        call_command("seed_demo", customers=customers, conversations_per_customer=per_customer,
                     messages_per_conversation=per_conversation, batch=2000)
        print(f"  generated in {time.monotonic() - started:,.0f} s")
    return long_thread()


def long_thread():
    """One customer with a 200-message thread (plus a few notes)."""
    from django.utils import timezone

    from crm.models import CustomerIdentity
    from inbox import services
    from inbox.models import Message
    from tests.factories import make_customer

    found = CustomerIdentity.objects.filter(value="long.thread@bench.test").first()
    if found and Message.objects.filter(customer=found.customer).count() >= 200:
        return found.customer.conversations.order_by("-id").first()
    customer = found.customer if found else make_customer("long.thread@bench.test", first_name="Long",
                                                          last_name="Thread", phone="+14155559999")
    start = timezone.now() - timedelta(days=60)
    for i in range(200):
        by_email = i % 3 == 0
        services.receive_message(channel="email" if by_email else ["sms", "chat"][i % 2],
                                 sender="long.thread@bench.test" if by_email else "+14155559999",
                                 sender_kind="email" if by_email else "phone",
                                 text=f"Message {i} about the party menu and the grill", external_id=f"long-{i}",
                                 received_at=start + timedelta(hours=i), route=False)
    return customer.conversations.order_by("-id").first()


def deep_cursor(depth):
    """The cursor the list gives out after `depth` rows (walking there page by page takes minutes)."""
    from inbox.models import Conversation
    from inbox.selectors import encode_cursor

    row = Conversation.objects.order_by("-last_activity_at", "-id").values("id", "last_activity_at")[depth - 1]
    return encode_cursor({"t": row["last_activity_at"].isoformat(), "id": row["id"]})


def measure(client, url, runs, warmup=5):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(warmup):
        assert client.get(url).status_code == 200, url
    with CaptureQueriesContext(connection) as ctx:  # counted apart: recording queries costs time too
        client.get(url)
    queries = [len(ctx.captured_queries)]
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    timings.sort()

    def pct(p):
        return timings[min(len(timings) - 1, int(round(p / 100 * (len(timings) - 1))))]

    return {"p50": round(pct(50), 2), "p95": round(pct(95), 2), "p99": round(pct(99), 2),
            "mean": round(statistics.fmean(timings), 2), "queries": max(queries), "runs": runs}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--conversations-per-customer", type=int, default=2)
    parser.add_argument("--messages-per-conversation", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--reseed", action="store_true")
    args = parser.parse_args()

    ensure_database(BENCH_URL, args.reseed)
    setup_django()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from inbox.models import Conversation, Message

    thread = generate(args.customers, args.conversations_per_customer, args.messages_per_conversation)
    with connection.cursor() as cursor:
        # What autovacuum does to a live database: statistics, visibility map, GIN pending lists merged.
        cursor.execute("VACUUM ANALYZE")
    user = get_user_model().objects.get(username="agent")
    client = Client()
    client.force_login(user)
    scale = {"customers": args.customers, "conversations": Conversation.objects.count(),
             "messages": Message.objects.count()}
    print(f"scale: {scale['customers']:,} customers, {scale['conversations']:,} conversations, "
          f"{scale['messages']:,} messages")

    cases = [
        ("list", "all, 25 rows", "/api/v1/inbox"),
        ("list", "open", "/api/v1/inbox?status=open"),
        ("list", "closed, page 2", None),
        ("list", "all, page 4,001 (cursor)", "deep"),
        ("list", "mine, open", "/api/v1/inbox?assignee=me&status=open"),
        ("list", "unassigned", "/api/v1/inbox?assignee=unassigned"),
        ("list", "channel=sms", "/api/v1/inbox?channel=sms"),
        ("list", "tag=pricing", "/api/v1/inbox?tag=pricing"),
        ("thread", "200-message thread, newest 50", f"/api/v1/inbox/{thread.pk}?page_size=50"),
        ("search", "common word (party)", "/api/v1/inbox?q=party"),
        ("search", "rare word (teppanyaki… Sacramento)", "/api/v1/inbox?q=Sacramento"),
        ("search", "phrase", "/api/v1/inbox?q=%22vegetarian%20options%22"),
        ("search", "prefix", "/api/v1/inbox?q=grad*"),
        ("search", "email", "/api/v1/inbox?q=guest000042@demo.myhibachi.test"),
    ]
    closed = client.get("/api/v1/inbox?status=closed").json()["next"]
    deep = deep_cursor(100_000)
    rows = []
    for kind, label, url in cases:
        if url == "deep":
            url = f"/api/v1/inbox?cursor={deep}"
        url = url or f"/api/v1/inbox?status=closed&cursor={closed}"
        result = measure(client, url, args.runs)
        budget = BUDGETS[kind]
        ok = all(result[k] <= v for k, v in budget.items())
        rows.append({"kind": kind, "case": label, "url": url, **result,
                     "budget": budget, "within_budget": ok})

    header = f"{'kind':7} {'case':38} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'queries':>8}  budget"
    print(header)
    print("-" * len(header))
    for row in rows:
        budget = ", ".join(f"{k}≤{v}" for k, v in row["budget"].items())
        flag = "ok" if row["within_budget"] else "OVER"
        print(f"{row['kind']:7} {row['case'][:38]:38} {row['p50']:8.2f} {row['p95']:8.2f} {row['p99']:8.2f} "
              f"{row['queries']:8d}  {budget} {flag}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "inbox.json").write_text(json.dumps({"scale": scale, "results": rows}, indent=2))
    print(f"\nwritten to {out / 'inbox.json'}")


if __name__ == "__main__":
    main()
