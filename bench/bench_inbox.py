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
import os
import statistics
import time
from datetime import timedelta

import common

BENCH_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/myhibachi_bench")
BUDGETS = {"list": {"p50": 10, "p99": 30}, "thread": {"p95": 30}, "search": {"p95": 50}}


def setup_django():
    """Django on the bench database, without Redis, timed as a node runs (common.setup_django)."""
    os.environ["DATABASE_URL"] = BENCH_URL
    os.environ.pop("REDIS_URL", None)
    common.environment(ALLOWED_HOSTS="testserver",  # the in-process test client's host
                       DB_POOL_SIZE=4)  # pooled connections with prepared statements, as a node runs
    common.setup_django(as_production=True)


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
    """Each request reads afresh: the list pages the API keeps between changes (inbox/list_cache.py)
    are dropped before each one, so the figures are what the first request after a change costs."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from inbox import list_cache

    for _ in range(warmup):
        assert client.get(url).status_code == 200, url
    list_cache.changed()
    with CaptureQueriesContext(connection) as ctx:  # counted apart: recording queries costs time too
        client.get(url)
    queries = [len(ctx.captured_queries)]
    timings = []
    for _ in range(runs):
        list_cache.changed()
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return {**common.percentiles(timings, digits=2),
            "mean": round(statistics.fmean(timings), 2), "queries": max(queries), "runs": runs}


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--conversations-per-customer", type=int, default=2)
    parser.add_argument("--messages-per-conversation", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--reseed", action="store_true")
    args = parser.parse_args()

    common.ensure_database(BENCH_URL, reseed=args.reseed)
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

    common.print_table(
        ["kind", "case", "p50 ms", "p95 ms", "p99 ms", "queries", "budget"],
        [[row["kind"], row["case"][:38], row["p50"], row["p95"], row["p99"], row["queries"],
          ", ".join(f"{k}≤{v}" for k, v in row["budget"].items()) + (" ok" if row["within_budget"] else " OVER")]
         for row in rows])
    common.write_result("inbox.json", {"machine": common.machine(), "scale": scale, "results": rows})


if __name__ == "__main__":
    main()
