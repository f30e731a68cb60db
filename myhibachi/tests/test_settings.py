"""Settings are read from the environment at start-up, so these run a fresh process."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "k3y-" + "q8Zr1xW9vP2mT7nL4bY6cJ0hF5sD3gA" * 2,
    "ALLOWED_HOSTS": "inbox.myhibachi.com",
    "CSRF_TRUSTED_ORIGINS": "https://inbox.myhibachi.com",
    "DATABASE_URL": "sqlite:///" + str(ROOT / "prod-check.sqlite3"),
}


def _manage(*args, env):
    # The real settings module: the suite's own (tests/settings.py) defaults DEBUG to 1.
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "REDIS_URL")}
    base["DJANGO_SETTINGS_MODULE"] = "myhibachi.settings"
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_production_settings_pass_check_deploy():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_with_sendgrid_passes_check_deploy():
    env = {**PRODUCTION, "EMAIL_PROVIDER": "sendgrid", "SENDGRID_API_KEY": "SG.test",
           "ANYMAIL_WEBHOOK_SECRET": "hooks:s3cret-for-checks"}
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_secret_key_in_production_stops_start_up_with_a_clear_message():
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_a_node_started_without_debug_refuses_to_start():
    # A forgotten DEBUG must not mean development mode (and a signing key from the repo).
    env = {k: v for k, v in PRODUCTION.items() if k != "DEBUG"}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "DEBUG is not set" in result.stderr
    assert "make run" in result.stderr


def test_development_key_is_random_per_checkout_and_not_in_the_repository():
    shown = _manage("shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)",
                    env={"DEBUG": "1", "DATABASE_URL": PRODUCTION["DATABASE_URL"]})
    assert shown.returncode == 0, shown.stderr
    key = shown.stdout.strip().splitlines()[-1]  # after the shell's own "objects imported" line
    key_file = ROOT / ".dev-secret-key"
    assert key == key_file.read_text().strip()
    assert len(key) >= 50
    assert key_file.stat().st_mode & 0o077 == 0  # owner only
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", ".dev-secret-key"], cwd=ROOT,
                             capture_output=True, text=True)
    assert tracked.returncode != 0  # never committed
    assert key not in (ROOT / "myhibachi" / "settings.py").read_text()


def test_a_trusted_proxy_that_is_not_an_address_stops_start_up_with_a_clear_message():
    result = _manage("check", env={**PRODUCTION, "TRUSTED_PROXIES": "127.0.0.1,nginx"})
    assert result.returncode != 0
    assert "TRUSTED_PROXIES: 'nginx' is not an IP address" in result.stderr


POOL_PROBE = ("import myhibachi.asgi; from django.db import connection; d = connection.settings_dict; "
              "print(d['ENGINE'], d['OPTIONS'].get('pool', {}).get('max_size'))")


def _python(code, env):
    base = {k: v for k, v in os.environ.items() if k not in ("DB_POOL_SIZE", "DJANGO_SETTINGS_MODULE")}
    base.update(DJANGO_SETTINGS_MODULE="myhibachi.settings", DEBUG="1",
                DATABASE_URL="postgres://postgres@127.0.0.1:5432/unused", **env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base, capture_output=True, text=True,
                          timeout=120)


def test_a_node_pools_its_database_connections_without_being_told():
    # Settings only: nothing connects, so no PostgreSQL is needed.
    started = _python(POOL_PROBE, env={})
    assert started.returncode == 0, started.stderr
    assert started.stdout.split() == ["myhibachi.postgresql", "8"]
    sized = _python(POOL_PROBE, env={"DB_POOL_SIZE": "3"})
    assert sized.stdout.split() == ["myhibachi.postgresql", "3"]
    off = _python(POOL_PROBE, env={"DB_POOL_SIZE": "0"})
    assert off.stdout.split() == ["django.db.backends.postgresql", "None"]


def test_other_processes_keep_plain_connections():
    # Celery workers and manage.py commands run one job at a time: a pool per process
    # would only hold connections open.
    shown = _python("import django; django.setup(); from django.db import connection; "
                    "print(connection.settings_dict['ENGINE'])", env={})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["django.db.backends.postgresql"]
