"""Create or renew our RingCentral webhook subscription."""
from django.core.management.base import BaseCommand, CommandError

from channels_ingest.ringcentral import client as rc
from channels_ingest.ringcentral.subscriptions import SubscribeError, subscribe


class Command(BaseCommand):
    help = (
        "Create (or renew, if one exists for the address) the RingCentral webhook subscription for inbound SMS/MMS, "
        "message status changes and missed calls. RingCentral first calls the address with a Validation-Token, "
        "so the webhook must be reachable from the internet. Celery beat renews it a day before it expires."
    )

    def add_arguments(self, parser):
        parser.add_argument("--address", help="Webhook URL (default: RINGCENTRAL_WEBHOOK_URL), "
                                              "e.g. https://inbox.example.com/ringcentral/webhook/")

    def handle(self, *args, **options):
        try:
            subscription, created = subscribe(options["address"])
        except (SubscribeError, rc.RingCentralError) as exc:
            raise CommandError(str(exc))
        self.stdout.write(f"{'Created' if created else 'Renewed'} subscription {subscription.subscription_id} "
                          f"({subscription.status}) for {subscription.address}, "
                          f"expires {subscription.expires_at:%Y-%m-%d %H:%M} UTC")
