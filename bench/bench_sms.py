"""SMS benchmark: inbound webhooks through a real ASGI node, and a message-sync of 10,000 records.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/bench_sms.py \
        [--webhook-seconds 15] [--records 10000] [--eager]

Creates its own throwaway database (test_<name>) and a RingCentral stand-in on loopback.
- Webhooks, as production runs them: one uvicorn node (the ASGI app, one process, pooled
  connections) and one Celery worker over Redis (REDIS_URL, default db 9) storing what the node
  queued; two concurrent senders post RingCentral's instant-SMS notifications (with the
  Verification-Token), each waiting for its answer as RingCentral does. Reports messages stored
  per second (first post to the last message stored) and the slowest acknowledgement
  (RingCentral wants one within 3 s). The senders are wrk (apt: wrk) with two connections.
  Without Redis (--eager) tasks run inside the request.
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


WRK_SCRIPT = r"""
-- Two connections, each posting one notification and waiting for its answer, as RingCentral does.
-- Every request is a new message: ids from the thread's number and a counter; 2,000 senders.
local template = [==[TEMPLATE]==]
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("prefix", threads)
end
local counter = 0
function request()
  counter = counter + 1
  local id = tostring(prefix * 100000000 + counter)
  local body = template:gsub("__ID__", id)
  body = body:gsub("__FROM__", string.format("+1415555%04d", counter % 2000))
  return wrk.format("POST", nil, nil, body)
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\n", summary.requests, summary.errors.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_webhooks(seconds, db_url, standin, redis_url=None):
    """Post for `seconds` from two connections with wrk (C: the senders stand for RingCentral, elsewhere;
    their CPU here is a few percent of the node's), then wait until every acknowledged one is stored."""
    import shutil
    import tempfile

    import httpx

    from inbox.models import Message
    from tests.browser.live_server import free_port

    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk is needed: apt-get install wrk")
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
    record = standin.add_message(from_number="+14150000000", text="Hi, party for 12 on the 14th?")
    template = json.dumps(standin.notification(record)).replace(f'"id": "{record["id"]}"', '"id": "__ID__"', 1)
    template = template.replace("+14150000000", "__FROM__")
    assert "__ID__" in template and "__FROM__" in template
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(WRK_SCRIPT.replace("TEMPLATE", template))
    script.close()
    try:
        for _ in range(100):
            try:
                httpx.post(url, headers={"Validation-Token": "warm-up"}, timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        cpu = {"node": common.cpu_seconds(node.pid), "worker": common.cpu_seconds(worker.pid, children=True)
               if worker else 0.0, "machine": common.machine_cpu_seconds(),
               "postgres": common.cpu_seconds_of("postgres"), "redis": common.cpu_seconds_of("redis-server"),
               "senders": _children_cpu()}
        started = time.monotonic()
        out = subprocess.run([wrk, "-t2", "-c2", f"-d{seconds}s", "--timeout", "10s", "-s", script.name,
                              "-H", f"Verification-Token: {TOKEN}", "-H", "Content-Type: application/json",
                              "-H", "X-Forwarded-Proto: https", url], capture_output=True, text=True, check=True).stdout
        posted = time.monotonic() - started
        requests, failed, p50_us, p99_us, max_us = (int(v) for v in out.split("RESULT", 1)[1].split())
        count = requests - failed
        stored = Message.objects.filter(channel="sms").count() - before
        while stored < count and time.monotonic() - started < posted + 120:
            time.sleep(0.05)
            stored = Message.objects.filter(channel="sms").count() - before
        wall = time.monotonic() - started
        cpu = {"node": common.cpu_seconds(node.pid) - cpu["node"],
               "senders": _children_cpu() - cpu["senders"],  # wrk, ended: counted in our children
               "worker": common.cpu_seconds(worker.pid, children=True) - cpu["worker"] if worker else 0.0,
               "postgres": common.cpu_seconds_of("postgres") - cpu["postgres"],
               "redis": common.cpu_seconds_of("redis-server") - cpu["redis"],
               "machine": common.machine_cpu_seconds() - cpu["machine"]}
    finally:
        os.unlink(script.name)
        for process in (node, worker):
            if process:
                process.terminate()
                process.wait(20)
    # wrk counts answered requests; the (at most two) in flight when it stopped are stored too.
    assert not failed and count <= stored <= count + 2, (failed, stored, count)
    return {"notifications": count, "senders": 2, "worker": "celery" if redis_url else "eager (in the request)",
            "stored": stored, "posting_seconds": round(posted, 2), "seconds": round(wall, 2),
            "acknowledged_per_s": round(count / posted, 1),
            "cpu_ms_per_notification": {k: round(v * 1000 / count, 2) for k, v in cpu.items()},
            "webhook_stored_per_s": round(stored / wall, 1), "p50_ack_s": round(p50_us / 1e6, 4),
            "p99_ack_s": round(p99_us / 1e6, 4), "webhook_max_ack_s": round(max_us / 1e6, 4)}


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
    parser.add_argument("--webhook-seconds", type=int, default=15, help="How long the two senders post.")
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
            print(f"posting notifications from two senders for {args.webhook_seconds} s ...", flush=True)
            webhooks = bench_webhooks(args.webhook_seconds, db_url, standin, redis_url)
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
