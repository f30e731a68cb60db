"""Benchmark of the website chat: staff reply -> visitor delivery with many visitor sockets on one node.

    .venv/bin/python bench/bench_chat.py [--sockets 1000] [--replies 60] [--server uvicorn]

An ASGI node in its own process (uvicorn as production runs it, over
channels-redis) holds --sockets visitor sockets, /ws/chat/<token>, one visitor
each, held by --client-processes separate processes at SCHED_IDLE (they stand
for phones and browsers elsewhere; bench_screens.py's clients, which stamp
every frame with the kernel's arrival time). This process stores one chat line
per visitor first, then sends --replies staff replies, one every --spacing s,
each to a visitor picked in turn across the whole set: services.reply in a
transaction, whose commit runs the delivery task in process (eager, as a
worker would run it right away) — the chat sender finds the visitor, and
publishes the frame to the visitor's group. Time zero is an on_commit hook
registered before reply's own, i.e. right after COMMIT; the end is the kernel's
stamp of the frame on the visitor's socket. One warm-up reply is not counted.
Budget: p99 <= 100 ms.

Uses its own database (BENCH_DATABASE_URL, default .../bench_chat, created and
migrated) and REDIS_URL. Prints a table and writes bench/results/chat.json.
"""
import os
import time

import common

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_chat")

import bench_screens as screens  # noqa: E402  (sets the database, Redis and settings environment)

BUDGET_P99_MS = 100


def token(run: int, n: int) -> str:
    return f"bench{run}_{n:06d}".ljust(24, "x")


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--replies", type=int, default=60)
    parser.add_argument("--spacing", type=float, default=0.25, help="Seconds between replies (default 0.25).")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--client-batch", type=float, default=0.02)
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="uvicorn")
    args = parser.parse_args()

    screens.ensure_database(migrate=True)
    common.setup_django(as_production=True)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from channels_ingest.chat import services as chat
    from inbox import services
    from tests.factories import make_user

    settings.INBOX_SENDERS = {**settings.INBOX_SENDERS, "chat": "channels_ingest.chat.sender.send"}
    agent = get_user_model().objects.filter(username="bench-agent").first() or make_user("bench-agent",
                                                                                          first_name="Bench")
    run = int(time.time())
    started = time.monotonic()
    conversations = [chat.visitor_says(token=token(run, n), text=f"hello {n}").message.conversation
                     for n in range(args.sockets)]
    seed_seconds = time.monotonic() - started

    server = screens.start_server(args.server, os.environ["LIVE_CHANNEL_PREFIX"],
                                  common.RESULTS / f"chat-{args.server}.log",
                                  extra_env={"CHAT_CONNECTIONS_PER_MINUTE_PER_IP": "1000000"})
    committed_at, published = {}, []
    try:
        paths = [f"/ws/chat/{token(run, n)}" for n in range(args.sockets)]
        clients = screens.start_clients(server, "", args.sockets, args.client_processes, "message",
                                        args.client_batch, paths=paths)
        try:
            time.sleep(1)
            step = max(1, args.sockets // max(1, args.replies))
            for n in range(-1, args.replies):
                conversation = conversations[((n + 1) * step + n) % args.sockets]
                committed = []
                with transaction.atomic():
                    transaction.on_commit(lambda: committed.append(time.time()))  # runs first, right after COMMIT
                    reply = services.reply(conversation=conversation, author=agent, text=f"reply {n}",
                                           channel="chat")
                if n >= 0:
                    committed_at[reply.pk] = committed[0]
                    published.append((time.time() - committed[0]) * 1000)
                time.sleep(args.spacing)
            time.sleep(2)
        finally:
            stamps, closed = screens.stop_clients(clients)
    finally:
        server.stop()
    probes = [s for s in stamps if s[0] in committed_at]
    arrived = [(at - committed_at[mid]) * 1000 for mid, at, _ in probes if at is not None]
    result = {
        "sockets": args.sockets, "replies": args.replies, "spacing_s": args.spacing, "server": args.server,
        "client_processes": args.client_processes, "seed_seconds": round(seed_seconds, 1),
        "delivered": len(probes), "expected": args.replies, "sockets_closed_by_server": closed,
        "reply_to_visitor_ms": {**common.percentiles(arrived), "max": max(arrived) if arrived else None},
        "commit_to_sent_ms": common.percentiles(published, (50, 99)),
        "budget_p99_ms": BUDGET_P99_MS,
    }
    lat = result["reply_to_visitor_ms"]
    print()
    common.print_table(["measure", "p50", "p95", "p99", "budget"], [
        [f"staff reply -> visitor, {args.sockets} sockets, {args.server} (ms)", lat["p50"], lat["p95"], lat["p99"],
         f"p99 <= {BUDGET_P99_MS} {common.verdict(lat['p99'], BUDGET_P99_MS)}"]])
    print(f"  delivered {len(probes)} of {args.replies}; commit -> sender done p50 "
          f"{result['commit_to_sent_ms']['p50']:.1f} ms; {closed} sockets closed by the server")
    common.write_result("chat.json", result)


if __name__ == "__main__":
    main()
