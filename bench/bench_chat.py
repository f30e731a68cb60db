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
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_chat")

import bench_screens as screens  # noqa: E402  (sets the database, Redis and settings environment)

BUDGET_P99_MS = 100


def token(run: int, n: int) -> str:
    return f"bench{run}_{n:06d}".ljust(24, "x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--replies", type=int, default=60)
    parser.add_argument("--spacing", type=float, default=0.25, help="Seconds between replies (default 0.25).")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--client-batch", type=float, default=0.02)
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="uvicorn")
    args = parser.parse_args()

    screens.ensure_database()
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env={**os.environ},
                   check=True)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from channels_ingest.chat import services as chat
    from inbox import services
    from tests.factories import make_user

    settings.DEBUG = False
    settings.INBOX_SENDERS = {**settings.INBOX_SENDERS, "chat": "channels_ingest.chat.sender.send"}
    agent = get_user_model().objects.filter(username="bench-agent").first() or make_user("bench-agent",
                                                                                          first_name="Bench")
    run = int(time.time())
    started = time.monotonic()
    conversations = [chat.visitor_says(token=token(run, n), text=f"hello {n}").message.conversation
                     for n in range(args.sockets)]
    seed_seconds = time.monotonic() - started

    server = screens.start_server(args.server, os.environ["LIVE_CHANNEL_PREFIX"],
                                  ROOT / "bench" / "results" / f"chat-{args.server}.log",
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
        "reply_to_visitor_ms": {"p50": screens.pct(arrived, 50), "p95": screens.pct(arrived, 95),
                                "p99": screens.pct(arrived, 99), "max": max(arrived) if arrived else None},
        "commit_to_sent_ms": {"p50": screens.pct(published, 50), "p99": screens.pct(published, 99)},
        "budget_p99_ms": BUDGET_P99_MS,
    }
    out = ROOT / "bench" / "results" / "chat.json"
    out.write_text(json.dumps(result, indent=2))
    lat = result["reply_to_visitor_ms"]
    verdict = "ok" if lat["p99"] <= BUDGET_P99_MS else "OVER"
    print(f"\n{'measure':50} {'p50':>8} {'p95':>8} {'p99':>8}  budget")
    print(f"{'staff reply -> visitor, ' + str(args.sockets) + ' sockets, ' + args.server + ' (ms)':50} "
          f"{lat['p50']:8.1f} {lat['p95']:8.1f} {lat['p99']:8.1f}  p99 <= {BUDGET_P99_MS} {verdict}")
    print(f"  delivered {len(probes)} of {args.replies}; commit -> sender done p50 "
          f"{result['commit_to_sent_ms']['p50']:.1f} ms; {closed} sockets closed by the server")
    print(f"\nWrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
