"""Configuration: fail fast in production, S3 when a bucket is set, mailbox passwords never in clear."""
import os
import subprocess
import sys

import pytest
from django.conf import settings

from channels_ingest.email.passwords import PasswordUnavailable, password_for
from channels_ingest.models import Mailbox


def settings_in_subprocess(env, expression):
    code = f"import os; os.environ['DJANGO_SETTINGS_MODULE']='myhibachi.settings'; import django; django.setup(); " \
           f"from django.conf import settings; print({expression})"
    clean = {k: v for k, v in os.environ.items()
             if k not in ("ANYMAIL_WEBHOOK_SECRET", "AWS_STORAGE_BUCKET_NAME", "EMAIL_WEBHOOKS", "EMAIL_PROVIDER")}
    return subprocess.run([sys.executable, "-c", code], cwd=settings.BASE_DIR, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


PRODUCTION = {"DEBUG": "0", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "example.com", "EMAIL_PROVIDER": "sendgrid",
              "SENDGRID_API_KEY": "SG.key"}


def test_production_with_sendgrid_refuses_to_start_without_a_webhook_secret():
    result = settings_in_subprocess(PRODUCTION, "'started'")
    assert result.returncode != 0 and "ANYMAIL_WEBHOOK_SECRET" in result.stderr
    ok = settings_in_subprocess({**PRODUCTION, "ANYMAIL_WEBHOOK_SECRET": "sg:long-secret"}, "settings.INBOX_SENDERS")
    assert ok.returncode == 0, ok.stderr
    assert "channels_ingest.email.sender.send" in ok.stdout


def test_production_with_the_webhooks_on_refuses_to_start_without_a_secret_whatever_the_provider():
    smtp = {**PRODUCTION, "EMAIL_PROVIDER": "smtp", "EMAIL_WEBHOOKS": "1"}
    result = settings_in_subprocess(smtp, "'started'")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "need ANYMAIL_WEBHOOK_SECRET" in result.stderr
    assert "EMAIL_WEBHOOKS=0" in result.stderr  # says how to turn them off instead
    ok = settings_in_subprocess({**smtp, "ANYMAIL_WEBHOOK_SECRET": "sg:long-secret"}, "settings.EMAIL_WEBHOOKS")
    assert ok.returncode == 0 and ok.stdout.strip() == "True", ok.stderr


def test_the_webhooks_are_on_with_sendgrid_and_off_otherwise_unless_asked():
    console = {k: v for k, v in PRODUCTION.items() if k not in ("EMAIL_PROVIDER", "SENDGRID_API_KEY")}
    off = settings_in_subprocess(console, "settings.EMAIL_WEBHOOKS")
    assert off.returncode == 0 and off.stdout.strip() == "False", off.stderr
    sending_only = settings_in_subprocess({**PRODUCTION, "EMAIL_WEBHOOKS": "0"}, "settings.EMAIL_WEBHOOKS")
    assert sending_only.returncode == 0 and sending_only.stdout.strip() == "False", sending_only.stderr
    debug = settings_in_subprocess({"DEBUG": "1", "EMAIL_WEBHOOKS": "1"}, "settings.EMAIL_WEBHOOKS")
    assert debug.returncode == 0 and debug.stdout.strip() == "True", debug.stderr  # they answer 403 until a secret


def test_attachments_go_to_s3_when_a_bucket_is_set():
    result = settings_in_subprocess({"AWS_STORAGE_BUCKET_NAME": "hibachi-mail", "AWS_S3_REGION_NAME": "us-west-2"},
                                    "settings.STORAGES['default']")
    assert result.returncode == 0, result.stderr
    assert "storages.backends.s3.S3Storage" in result.stdout and "hibachi-mail" in result.stdout
    local = settings_in_subprocess({}, "settings.STORAGES['default']['BACKEND']")
    assert "FileSystemStorage" in local.stdout


def test_beat_polls_imap_with_an_expiry():
    entry = settings.CELERY_BEAT_SCHEDULE["email-poll-imap"]
    assert entry["schedule"] == settings.IMAP_POLL_SECONDS and entry["options"]["expires"] > 0


def test_mailbox_password_from_environment_or_encrypted(db, monkeypatch, manager_client):
    response = manager_client.post("/admin/channels_ingest/mailbox/add/", {
        "name": "sales", "host": "imap.example.com", "port": 993, "tls": "implicit", "username": "sales@example.com",
        "password": "hunter2", "folder": "INBOX", "active": "on"})
    assert response.status_code == 302, response.content[:2000]
    mailbox = Mailbox.objects.get(name="sales")
    assert "hunter2" not in mailbox.password_encrypted and password_for(mailbox) == "hunter2"
    mailbox.password_env = "IMAP_PASSWORD_SALES"
    with pytest.raises(PasswordUnavailable, match="IMAP_PASSWORD_SALES is not set"):
        password_for(mailbox)
    monkeypatch.setenv("IMAP_PASSWORD_SALES", "from-env")
    assert password_for(mailbox) == "from-env"


def test_mailbox_without_any_password_is_refused_in_the_admin(db, manager_client):
    response = manager_client.post("/admin/channels_ingest/mailbox/add/", {
        "name": "nopw", "host": "imap.example.com", "port": 993, "tls": "implicit", "username": "x@example.com",
        "folder": "INBOX"})
    assert response.status_code == 200 and b"Give a password environment variable" in response.content
    assert not Mailbox.objects.exists()
