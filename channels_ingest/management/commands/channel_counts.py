"""Print what each channel source accepted, found already stored, or refused."""
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Sum
from django.utils import timezone

from channels_ingest.models import IngestCount


class Command(BaseCommand):
    help = ("Print the counted outcomes of every channel source (webhooks, IMAP polls, SMS syncs): accepted, "
            "duplicates, invalid, refused_* and the rest, for today and the last N days (--days, default 7). "
            "Every node and worker adds to the same counts.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=7, help="How many days back to sum (default 7).")
        parser.add_argument("--source", help="Only this source, e.g. sendgrid-inbound.")

    def handle(self, *args, **options):
        if options["days"] < 1:
            raise CommandError("--days must be 1 or more.")
        today = timezone.localdate()
        rows = IngestCount.objects.filter(day__gt=today - timedelta(days=options["days"]))
        if options["source"]:
            rows = rows.filter(source=options["source"])
        totals = {}
        for row in rows.values("source", "outcome", "day").annotate(total=Sum("count")):
            entry = totals.setdefault((row["source"], row["outcome"]), [0, 0])
            entry[1] += row["total"]
            if row["day"] == today:
                entry[0] += row["total"]
        if not totals:
            self.stdout.write(f"Nothing counted in the last {options['days']} day(s).")
            return
        width = max(len(source) for source, _ in totals) + 2
        span = f"{options['days']} days"
        self.stdout.write(f"{'source':<{width}}{'outcome':<26}{'today':>10}{span:>12}")
        for (source, outcome), (today_count, total) in sorted(totals.items()):
            self.stdout.write(f"{source:<{width}}{outcome:<26}{today_count:>10,}{total:>12,}")
