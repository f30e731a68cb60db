from django.db import migrations, models
from django.db.models import Count, Min, Q


def keep_the_first_of_each(apps, schema_editor):
    """Rows the old read-then-write check let through twice: keep the oldest,
    which names the same raw file (raw sources are stored by their digest)."""
    RejectedEmail = apps.get_model("channels_ingest", "RejectedEmail")
    for scope, key in ((Q(mailbox__isnull=False), ("mailbox", "message_id")),
                       (~Q(source="imap"), ("source", "message_id"))):
        repeated = (RejectedEmail.objects.filter(scope).values(*key).order_by()
                    .annotate(n=Count("id"), first=Min("id")).filter(n__gt=1))
        for group in repeated:
            (RejectedEmail.objects.filter(scope, **{k: group[k] for k in key})
             .exclude(pk=group["first"]).delete())


class Migration(migrations.Migration):

    dependencies = [
        ("channels_ingest", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(keep_the_first_of_each, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="rejectedemail",
            constraint=models.UniqueConstraint(condition=models.Q(("mailbox__isnull", False)),
                                               fields=("mailbox", "message_id"), name="rejected_email_once_per_mailbox"),
        ),
        migrations.AddConstraint(
            model_name="rejectedemail",
            constraint=models.UniqueConstraint(condition=models.Q(("source", "imap"), _negated=True),
                                               fields=("source", "message_id"), name="rejected_email_once_per_webhook"),
        ),
    ]
