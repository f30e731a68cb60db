"""Idempotency keys remember a SHA-256 of the request body they were first used
with, so the same key with another body is refused (422) instead of replaying
the first answer. Keys stored before this have an empty hash (method and path
are still compared) and are pruned within IDEMPOTENCY_KEY_TTL_HOURS."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("inbox", "0005_gin_pending_list")]

    operations = [
        migrations.AddField(
            model_name="idempotencykey",
            name="request_hash",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
    ]
