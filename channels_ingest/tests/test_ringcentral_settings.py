"""RingCentral settings are read at start-up: a fresh process each."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGURED = {"RINGCENTRAL_CLIENT_ID": "id", "RINGCENTRAL_CLIENT_SECRET": "secret", "RINGCENTRAL_JWT": "jwt"}
PRINT = ("from django.conf import settings; print(settings.INBOX_SENDERS.get('sms')); "
         "print(sorted(k for k in settings.CELERY_BEAT_SCHEDULE if k.startswith('ringcentral')))")


def _shell(env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("RINGCENTRAL") and k != "REDIS_URL"}
    base["DJANGO_SETTINGS_MODULE"] = "myhibachi.settings"
    return subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", PRINT], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_sms_replies_and_syncs_are_on_only_when_ringcentral_is_configured():
    off = _shell({"DEBUG": "1"})
    assert off.stdout.split("\n")[:2] == ["None", "[]"], off.stderr
    on = _shell({"DEBUG": "1", **CONFIGURED})
    assert on.stdout.split("\n")[:2] == [
        "channels_ingest.ringcentral.sender.send",
        "['ringcentral-renew-subscription', 'ringcentral-sync-calls', 'ringcentral-sync-sms']"], on.stderr


def test_production_refuses_to_start_without_a_verification_token():
    env = {"DEBUG": "0", "SECRET_KEY": "k3y-" + "q8Zr1xW9vP2mT7nL4bY6cJ0hF5sD3gA" * 2, "ALLOWED_HOSTS": "x.test",
           "RINGCENTRAL_SMS_FROM": "+14155550199", **CONFIGURED}
    result = _shell(env)
    assert result.returncode != 0
    assert "RINGCENTRAL_VERIFICATION_TOKEN is not set" in result.stderr


def test_queued_notifications_are_stored_every_minute_wherever_the_webhook_accepts_them():
    on = _shell({"DEBUG": "1", "RINGCENTRAL_VERIFICATION_TOKEN": "token"})
    assert "'ringcentral-store-notifications'" in on.stdout.split("\n")[1], on.stderr
