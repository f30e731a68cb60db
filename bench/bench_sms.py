"""SMS benchmark: inbound webhooks through a real ASGI node, and a message-sync of 10,000 records.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/bench_sms.py \
        [--webhooks 2000] [--records 10000]

Creates its own throwaway database (test_<name>) and a RingCentral stand-in on loopback.
- Webhooks, as production runs them: one uvicorn node (the ASGI app, one process, pooled
  connections) and one Celery worker over Redis (REDIS_URL, default db 9) storing what the node
  queued; two concurrent senders post RingCentral's instant-SMS notifications (with the
  Verification-Token), each waiting for its answer as RingCentral does. Reports messages stored
  per second (first post to the last message stored) and the slowest acknowledgement
  (RingCentral wants one within 3 s). Without Redis (--eager) tasks run inside the request.
- Sync: `manage.py sync_sms` as a separate worker process, end to end (FSync over 10,000 records,
  store, dedupe, events), with its peak RSS.
Prints a table and writes bench/results/sms.json.
"""
import json
import os
import resource
import secrets
import subprocess
import sys
import threading
import time

import common
from common import ROOT

common.environment()
TARGETS = {"webhook_stored_per_s": 300, "webhook_max_ack_s": 3.0, "sync_records_per_s": 300,
           "sync_peak_rss_mb": 300}
TOKEN = "bench-verification-token"


def node_env(db_url, standin):
    env = {**os.environ, "DATABASE_URL": db_url, "LOG_LEVEL": "WARNING", "RINGCENTRAL_SERVER_URL": standin.url,
           "RINGCENTRAL_CLIENT_ID": standin.client_id, "RINGCENTRAL_CLIENT_SECRET": standin.client_secret,
           "RINGCENTRAL_JWT": standin.jwt, "RINGCENTRAL_SMS_FROM": "+14155550199",
           "RINGCENTRAL_VERIFICATION_TOKEN": TOKEN, "SMS_FIRST_SYNC_HOURS": "48"}
    env.pop("REDIS_URL", None)  # eager tasks, in-memory layer unless a caller sets REDIS_URL
    return env


def bench_webhooks(count, db_url, standin, redis_url=None):
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)

    from inbox.models import Message
    from tests.browser.live_server import free_port

    before = Message.objects.filter(channel="sms").count()
    port = free_port()
    # As a production node runs (docs/operations.md): DEBUG off (no query log), pooled connections,
    # behind nginx, which says the request came over HTTPS.
    env = {**node_env(db_url, standin), "DB_POOL_SIZE": "4", "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1",
           "SECRET_KEY": secrets.token_urlsafe(50)}
    worker = None
    if redis_url:
        env["REDIS_URL"] = redis_url
        subprocess.run(["redis-cli", "-u", redis_url, "flushdb"], check=True, capture_output=True)
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "myhibachi", "worker", "--loglevel",
                                   "WARNING", "--concurrency", "1", "--without-gossip", "--without-mingle"],
                                  cwd=ROOT, env=env)
    node = subprocess.Popen([sys.executable, "-m", "uvicorn", "myhibachi.asgi:application", "--port", str(port),
                             "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}/ringcentral/webhook/"
    try:
        for _ in range(100):
            try:
                httpx.post(url, headers={"Validation-Token": "warm-up"}, timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        payloads = [json.dumps(standin.notification(standin.add_message(
            from_number=f"+1415555{i % 2000:04d}", text=f"Hi, party for {i % 40 + 8} on the {i % 28 + 1}th?")))
            for i in range(count)]
        latencies, failures = [], []
        lock = threading.Lock()

        def sender(part):
            with httpx.Client(timeout=30) as http:
                for body in part:
                    started = time.monotonic()
                    response = http.post(url, content=body, headers={"Verification-Token": TOKEN,
                                                                      "Content-Type": "application/json",
                                                                      "X-Forwarded-Proto": "https"})
                    took = time.monotonic() - started
                    with lock:
                        latencies.append(took)
                        if response.status_code != 200:
                            failures.append(response.status_code)

        threads = [threading.Thread(target=sender, args=(payloads[i::2],)) for i in range(2)]
        cpu = {"node": common.cpu_seconds(node.pid), "worker": common.cpu_seconds(worker.pid, children=True)
               if worker else 0.0, "senders": time.process_time(), "machine": common.machine_cpu_seconds(),
               "postgres": common.cpu_seconds_of("postgres"), "redis": common.cpu_seconds_of("redis-server")}
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        posted = time.monotonic() - started
        stored = Message.objects.filter(channel="sms").count() - before
        while stored < count and time.monotonic() - started < posted + 120:
            time.sleep(0.05)
            stored = Message.objects.filter(channel="sms").count() - before
        wall = time.monotonic() - started
        cpu = {"node": common.cpu_seconds(node.pid) - cpu["node"], "senders": time.process_time() - cpu["senders"],
               "worker": common.cpu_seconds(worker.pid, children=True) - cpu["worker"] if worker else 0.0,
               "postgres": common.cpu_seconds_of("postgres") - cpu["postgres"],
               "redis": common.cpu_seconds_of("redis-server") - cpu["redis"],
               "machine": common.machine_cpu_seconds() - cpu["machine"]}
    finally:
        for process in (node, worker):
            if process:
                process.terminate()
                process.wait(20)
    assert not failures and stored == count, (failures[:5], stored)
    ack = common.percentiles(latencies, (50, 99), digits=4)
    return {"notifications": count, "senders": 2, "worker": "celery" if redis_url else "eager (in the request)",
            "stored": stored, "posting_seconds": round(posted, 2), "seconds": round(wall, 2),
            "acknowledged_per_s": round(count / posted, 1),
            "cpu_ms_per_notification": {k: round(v * 1000 / count, 2) for k, v in cpu.items()},
            "webhook_stored_per_s": round(stored / wall, 1), "p50_ack_s": ack["p50"], "p99_ack_s": ack["p99"],
            "webhook_max_ack_s": round(max(latencies), 4)}


def bench_sync(records, db_url, standin):
    from inbox.models import Message

    before = Message.objects.filter(channel="sms").count()
    print(f"adding {records:,} records to the stand-in's message store ...", flush=True)
    for i in range(records):
        standin.add_message(from_number=f"+1415556{i % 2500:04d}", text=f"Sync message {i}: menu for {i % 30 + 10}?")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "manage.py", "sync_sms"], cwd=ROOT, env=node_env(db_url, standin),
                          text=True, capture_output=True)
    wall = time.monotonic() - started
    print(proc.stdout, proc.stderr[-2000:] if proc.returncode else "", flush=True)
    if proc.returncode:
        raise SystemExit("sync_sms failed")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far
    stored = Message.objects.filter(channel="sms").count() - before
    assert stored == records, stored
    return {"records": records, "stored": stored,
            "process_wall_seconds": round(wall, 2), "sync_records_per_s": round(records / wall, 1),
            "sync_peak_rss_mb": round(peak_kb / 1024, 1)}


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--eager", action="store_true", help="No worker: store inside the webhook request.")
    args = parser.parse_args()
    common.require_postgres()
    redis_url = None if args.eager else os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
    os.environ.pop("REDIS_URL", None)
    common.setup_django()
    from channels_ingest.tests.ringcentral_standin import RingCentralStandIn

    with common.throwaway_database() as db_url:
        standin = RingCentralStandIn().start()
        try:
            sync = bench_sync(args.records, db_url, standin)  # first: its peak RSS is the only child's so far
            print(f"posting {args.webhooks:,} notifications from two senders ...", flush=True)
            webhooks = bench_webhooks(args.webhooks, db_url, standin, redis_url)
        finally:
            standin.stop()
    results = {"machine": common.machine(), "webhooks": webhooks, "sync": sync, "targets": TARGETS}
    print()
    common.print_table(["measure", "result", "target"], [
        ["webhooks stored", f"{webhooks['webhook_stored_per_s']:,}/s", f">= {TARGETS['webhook_stored_per_s']}"],
        ["webhooks acknowledged", f"{webhooks['acknowledged_per_s']:,}/s", ""],
        ["CPU per notification", ", ".join(f"{k} {v} ms" for k, v in webhooks["cpu_ms_per_notification"].items()),
         ""],
        ["slowest ack", f"{webhooks['webhook_max_ack_s']} s (p99 {webhooks['p99_ack_s']} s)",
         f"<= {TARGETS['webhook_max_ack_s']}"],
        ["message-sync", f"{sync['sync_records_per_s']:,} records/s", f">= {TARGETS['sync_records_per_s']}"],
        ["sync peak RSS", f"{sync['sync_peak_rss_mb']} MB", f"<= {TARGETS['sync_peak_rss_mb']}"]])
    common.write_result("sms.json", results)


if __name__ == "__main__":
    main()
