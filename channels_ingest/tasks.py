"""Celery tasks of the channel adapters (found by Celery's autodiscovery)."""
from .email.tasks import (  # noqa: F401
    poll_all_mailboxes,
    poll_mailbox,
    send_booking_email,
    send_campaign,
    send_due_reminders,
)
from .ringcentral.tasks import (  # noqa: F401
    download_media,
    renew_subscription,
    sync_calls,
    sync_sms,
)
