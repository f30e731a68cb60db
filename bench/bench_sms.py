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
import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myhibachi.settings")
os.environ.setdefault("DEBUG", "1")  # settings refuse to start without DEBUG
TARGETS = {"webhook_stored_per_s": 300, "webhook_max_ack_s": 3.0, "sync_records_per_s": 300,
           "sync_peak_rss_mb": 300}
TOKEN = "bench-verification-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    latencies.sort()
    return {"notifications": count, "senders": 2, "stored": stored, "seconds": round(wall, 2),
            "webhook_stored_per_s": round(stored / wall, 1),
            "p50_ack_s": round(latencies[len(latencies) // 2], 4),
            "p99_ack_s": round(latencies[int(len(latencies) * 0.99)], 4),
            "webhook_max_ack_s": round(latencies[-1], 4)}


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--records", type=int, default=10_000)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("Set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test (the bench makes its own database).")
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.db import connection

    from channels_ingest.tests.ringcentral_standin import RingCentralStandIn

    name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    db = connection.settings_dict
    db_url = f"postgres://{db['USER']}{':' + db['PASSWORD'] if db['PASSWORD'] else ''}@{db['HOST'] or '127.0.0.1'}:" \
             f"{db['PORT'] or 5432}/{name}"
    standin = RingCentralStandIn().start()
    try:
        sync = bench_sync(args.records, db_url, standin)  # first: its peak RSS is the only child's so far
        print(f"posting {args.webhooks:,} notifications from two senders ...", flush=True)
        webhooks = bench_webhooks(args.webhooks, db_url, standin)
    finally:
        standin.stop()
        connection.creation.destroy_test_db(name, verbosity=0)
    results = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "load_average_1m_at_end": round(os.getloadavg()[0], 1)},
               "webhooks": webhooks, "sync": sync, "targets": TARGETS}
    rows = [("webhooks stored", f"{webhooks['webhook_stored_per_s']:,}/s", f">= {TARGETS['webhook_stored_per_s']}"),
            ("slowest ack", f"{webhooks['webhook_max_ack_s']} s (p99 {webhooks['p99_ack_s']} s)",
             f"<= {TARGETS['webhook_max_ack_s']}"),
            ("message-sync", f"{sync['sync_records_per_s']:,} records/s", f">= {TARGETS['sync_records_per_s']}"),
            ("sync peak RSS", f"{sync['sync_peak_rss_mb']} MB", f"<= {TARGETS['sync_peak_rss_mb']}")]
    print(f"\n{'measure':<16} {'result':<30} target")
    for row in rows:
        print(f"{row[0]:<16} {row[1]:<30} {row[2]}")
    out = ROOT / "bench" / "results" / "sms.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
