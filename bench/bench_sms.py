"""SMS benchmark: inbound webhooks through a real ASGI node, and a message-sync of 10,000 records.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/bench_sms.py \
        [--webhooks 2000] [--records 10000]

Creates its own throwaway database (test_<name>) and a RingCentral stand-in on loopback.
- Webhooks: one uvicorn node (manage.py's ASGI app, one process) and two concurrent senders
  posting RingCentral's instant-SMS notifications (with the Verification-Token), each waiting for
  its answer as RingCentral does; reports stored per second and the slowest acknowledgement
  (RingCentral wants one within 3 s).
- Sync: `manage.py sync_sms` as a separate worker process, end to end (FSync over 10,000 records,
  store, dedupe, events), with its peak RSS.
Prints a table and writes bench/results/sms.json.
"""
import json
import os
import resource
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
    env.pop("REDIS_URL", None)  # eager tasks, in-memory layer: the node and worker measure storing only
    return env


def bench_webhooks(count, db_url, standin):
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)

    from inbox.models import Message
    from tests.browser.live_server import free_port

    before = Message.objects.filter(channel="sms").count()
    port = free_port()
    env = {**node_env(db_url, standin), "DB_POOL_SIZE": "4"}  # as production nodes run (README)
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
                                                                      "Content-Type": "application/json"})
                    took = time.monotonic() - started
                    with lock:
                        latencies.append(took)
                        if response.status_code != 200:
                            failures.append(response.status_code)

        threads = [threading.Thread(target=sender, args=(payloads[i::2],)) for i in range(2)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
    finally:
        node.terminate()
        node.wait(10)
    stored = Message.objects.filter(channel="sms").count() - before
    assert not failures and stored == count, (failures[:5], stored)
    ack = common.percentiles(latencies, (50, 99), digits=4)
    return {"notifications": count, "senders": 2, "stored": stored, "seconds": round(wall, 2),
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
    args = parser.parse_args()
    common.require_postgres()
    os.environ.pop("REDIS_URL", None)
    common.setup_django()
    from channels_ingest.tests.ringcentral_standin import RingCentralStandIn

    with common.throwaway_database() as db_url:
        standin = RingCentralStandIn().start()
        try:
            sync = bench_sync(args.records, db_url, standin)  # first: its peak RSS is the only child's so far
            print(f"posting {args.webhooks:,} notifications from two senders ...", flush=True)
            webhooks = bench_webhooks(args.webhooks, db_url, standin)
        finally:
            standin.stop()
    results = {"machine": common.machine(), "webhooks": webhooks, "sync": sync, "targets": TARGETS}
    print()
    common.print_table(["measure", "result", "target"], [
        ["webhooks stored", f"{webhooks['webhook_stored_per_s']:,}/s", f">= {TARGETS['webhook_stored_per_s']}"],
        ["slowest ack", f"{webhooks['webhook_max_ack_s']} s (p99 {webhooks['p99_ack_s']} s)",
         f"<= {TARGETS['webhook_max_ack_s']}"],
        ["message-sync", f"{sync['sync_records_per_s']:,} records/s", f">= {TARGETS['sync_records_per_s']}"],
        ["sync peak RSS", f"{sync['sync_peak_rss_mb']} MB", f"<= {TARGETS['sync_peak_rss_mb']}"]])
    common.write_result("sms.json", results)


if __name__ == "__main__":
    main()
