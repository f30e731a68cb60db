"""manage.py refresh_analytics: rebuild the analytics rollups, with progress."""
import sys
import time

from django.core.management.base import BaseCommand

from analytics import refresh


class Command(BaseCommand):
    help = ("Rebuild the analytics rollups (revenue by day, response cycles, resolutions) from the bookings, "
            "payments and conversation history. --recent: only what changed since the last run, as Celery beat does.")

    def add_arguments(self, parser):
        parser.add_argument("--recent", action="store_true", help="Only the incremental step.")

    def handle(self, *args, **options):
        started = time.monotonic()
        if options["recent"]:
            result = refresh.refresh_recent()
        else:
            def progress(step, done, total):
                self.stderr.write(f"\r  {step}: {done:,}/{total:,} ({time.monotonic() - started:.1f} s)", ending="")
                sys.stderr.flush()

            result = refresh.refresh_all(progress=progress)
            self.stderr.write("")
        summary = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in result.items())
        self.stdout.write(self.style.SUCCESS(f"Analytics refreshed in {time.monotonic() - started:.1f} s: {summary}."))
