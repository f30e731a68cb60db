"""Email channel benchmark: IMAP ingest from a real Dovecot, campaign send to the SendGrid stand-in.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test [REDIS_URL=redis://127.0.0.1:6379/0] \
        .venv/bin/python bench/bench_email.py [--emails 10000] [--recipients 5000]

Creates its own throwaway database (test_<name>), Dovecot (tmp folder, loopback) and stand-in.
Ingest runs `manage.py poll_imap` as a separate worker process, end to end (fetch, parse,
store, thread, route, publish events), and reports its peak RSS. Prints a table and writes
bench/results/email.json.
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import common
from common import ROOT

common.environment()
TARGETS = {"ingest_msgs_per_s": 200, "ingest_peak_rss_mb": 300, "campaign_recipients_per_s": 500}


def sample_emails(count):
    from channels_ingest.tests import mails

    customers = max(1, count // 5)
    for i in range(count):
        who = i % customers
        if i % 50 == 7:
            yield mails.with_attachment(20_000, mid=f"<bench{i}@mail.example.com>", filename=f"plan{i}.pdf")
        elif i >= customers and i % 3 == 0:
            yield mails.reply(mid=f"<bench{i}@mail.example.com>", in_reply_to=f"<bench{who}@mail.example.com>",
                              frm=f"Customer {who} <c{who}@example.com>", body=f"Follow-up {i} " * 20)
        else:
            yield mails.plain(mid=f"<bench{i}@mail.example.com>", frm=f"Customer {who} <c{who}@example.com>",
                              subject=f"Party request {i}", body=f"Hello, party for {i % 40 + 8} guests? " * 10)


def bench_ingest(count, db_url, media):
    from channels_ingest.email import passwords
    from channels_ingest.models import Mailbox
    from channels_ingest.tests.dovecot import PASSWORD, USER, Dovecot
    from inbox.models import Message

    root = tempfile.mkdtemp(prefix="myhibachi-bench-dovecot-")
    server = Dovecot(root).start()
    try:
        folder = server.new_folder("bench")
        print(f"appending {count:,} emails to Dovecot ...", flush=True)
        conn, started = server.client(), time.monotonic()
        for n, raw in enumerate(sample_emails(count), 1):
            conn.append(folder, None, None, raw)
            if n % 2000 == 0:
                print(f"  {n:,}/{count:,}", flush=True)
        conn.logout()
        print(f"  appended in {time.monotonic() - started:.1f}s", flush=True)
        Mailbox.objects.create(name="bench", host=server.host, port=server.port, tls="none", username=USER,
                               password_encrypted=passwords.encrypt(PASSWORD), folder=folder)
        env = {**os.environ, "DATABASE_URL": db_url, "MEDIA_ROOT": media, "LOG_LEVEL": "WARNING"}
        if env.get("REDIS_URL"):
            # A Redis database of its own: test runs elsewhere on this machine flush theirs (cache.clear()).
            env["REDIS_URL"] = env["REDIS_URL"].rsplit("/", 1)[0] + "/14"
        print("polling with a separate worker process (manage.py poll_imap) ...", flush=True)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "manage.py", "poll_imap", "--mailbox", "bench", "--progress-every",
                               "2000"], cwd=ROOT, env=env, text=True, capture_output=True)
        wall = time.monotonic() - started
        print(proc.stdout, proc.stderr[-2000:] if proc.returncode else "", flush=True)
        if proc.returncode:
            raise SystemExit("poll_imap failed")
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        stats = Mailbox.objects.get(name="bench").last_poll_stats
        stored = Message.objects.filter(channel="email", direction="inbound").count()
        assert stored == count == stats["stored"], (stored, stats)
        return {"emails": count, "stored": stored, "poll_seconds": stats["seconds"],
                "ingest_msgs_per_s": round(count / stats["seconds"], 1),
                "process_wall_seconds": round(wall, 2), "ingest_peak_rss_mb": round(peak_kb / 1024, 1)}
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def bench_campaign(recipients):
    from django.conf import settings

    from channels_ingest.email import campaigns
    from channels_ingest.models import Campaign
    from channels_ingest.tests.sendgrid_standin import SendGridStandIn
    from crm.models import Customer, CustomerIdentity

    print(f"creating {recipients:,} customers ...", flush=True)
    made = Customer.objects.bulk_create([Customer(first_name=f"Guest{i}", last_name="Bench") for i in range(recipients)])
    CustomerIdentity.objects.bulk_create([CustomerIdentity(customer=c, kind="email", value=f"guest{i}@bench.example.com",
                                                           is_primary=True) for i, c in enumerate(made)])
    standin = SendGridStandIn().start()
    standin.keep_bodies = False
    settings.EMAIL_BACKEND = "anymail.backends.sendgrid.EmailBackend"
    settings.ANYMAIL = {**settings.ANYMAIL, "SENDGRID_API_KEY": standin.api_key, "SENDGRID_API_URL": standin.url}
    campaign = Campaign.objects.create(name="bench", subject="Hi {{ first_name }}", segment="all",
                                       body="Dear {{ full_name }}, spring menu is here.", status="queued")
    try:
        print("sending the campaign ...", flush=True)
        started = time.monotonic()
        campaigns.send(campaign, progress=lambda n: n % 1000 == 0 and print(f"  {n:,}/{recipients:,}", flush=True))
        seconds = time.monotonic() - started
    finally:
        standin.stop()
    campaign.refresh_from_db()
    assert campaign.sent_count == standin.recipients == recipients, (campaign.sent_count, standin.recipients)
    return {"recipients": campaign.sent_count, "api_calls": len(standin.requests),
            "campaign_seconds": round(seconds, 2), "campaign_recipients_per_s": round(campaign.sent_count / seconds, 1),
            "rate_limit_per_s": settings.EMAIL_CAMPAIGN_RATE_PER_SECOND, "batch_size": settings.EMAIL_CAMPAIGN_BATCH_SIZE}


def main():
    parser = common.parser(__doc__)
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--recipients", type=int, default=5_000)
    args = parser.parse_args()
    common.require_postgres()
    common.setup_django()
    from anymail.exceptions import AnymailNotSupportedWarning

    warnings.simplefilter("ignore", AnymailNotSupportedWarning)  # settings silence anymail.W003 the same way
    media = tempfile.mkdtemp(prefix="myhibachi-bench-media-")
    from django.conf import settings

    settings.MEDIA_ROOT = media
    try:
        with common.throwaway_database() as db_url:
            campaign = bench_campaign(args.recipients)  # first: the segment is exactly these customers
            ingest = bench_ingest(args.emails, db_url, media)
    finally:
        shutil.rmtree(media, ignore_errors=True)
    results = {"machine": common.machine(redis=bool(os.environ.get("REDIS_URL"))),
               "ingest": ingest, "campaign": campaign, "targets": TARGETS}
    print()
    common.print_table(["measure", "result", "target"], [
        ["IMAP ingest", f"{ingest['ingest_msgs_per_s']:,} msgs/s", f">= {TARGETS['ingest_msgs_per_s']}"],
        ["worker peak RSS", f"{ingest['ingest_peak_rss_mb']} MB", f"<= {TARGETS['ingest_peak_rss_mb']}"],
        ["campaign send", f"{campaign['campaign_recipients_per_s']:,} recipients/s",
         f">= {TARGETS['campaign_recipients_per_s']}"]])
    common.write_result("email.json", results)


if __name__ == "__main__":
    main()
