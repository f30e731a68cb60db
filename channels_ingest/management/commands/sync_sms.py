"""Run one RingCentral SMS sync now (and the call log with --calls) and print what happened."""
from datetime import datetime, time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from channels_ingest.ringcentral.sync import sync_calls, sync_messages


def parse_since(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since {value!r}: use a date (2026-11-01) or a date and time (2026-11-01T08:00).")
        moment = datetime.combine(day, time.min)
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class Command(BaseCommand):
    help = (
        "Sync SMS from RingCentral now: an ISync from the stored sync token (an FSync the first time), or with "
        "--since DATE every SMS since then, page by page from the message store (a backfill), then a fresh token. "
        "Prints fetched / stored / duplicates: messages the webhook (or an earlier run) already stored are "
        "counted as duplicates, never stored twice. Safe while Celery beat syncs: one run holds the feed at a time. "
        "--calls also reads the call log."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", help="Backfill from this date (YYYY-MM-DD or ISO date-time, business zone).")
        parser.add_argument("--calls", action="store_true", help="Also sync the call log (from --since, if given).")

    def handle(self, *args, **options):
        since = parse_since(options["since"]) if options["since"] else None

        def progress(done, total):
            self.stdout.write(f"  {done:,} / {total:,} records read")

        feeds = [("SMS", sync_messages)] + ([("calls", sync_calls)] if options["calls"] else [])
        failed = False
        for label, run in feeds:
            self.stdout.write(f"Syncing {label} from RingCentral" + (f" since {since:%Y-%m-%d %H:%M}" if since else ""))
            stats = run(since=since, progress=progress)
            if stats.skipped:
                self.stdout.write(f"{label}: another sync is running now; nothing done.")
                continue
            self.stdout.write(f"{label}: fetched {stats.fetched}, stored {stats.stored}, duplicates {stats.duplicates}, "
                              f"status updates {stats.updated}, unreadable {stats.invalid}")
            if stats.error:
                failed = True
                self.stderr.write(f"{label}: stopped early: {stats.error} (the next run continues from here)")
        if failed:
            raise CommandError("RingCentral sync incomplete.")
