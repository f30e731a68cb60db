"""Test-suite wiring: skip tests whose real service is absent, and with
STRICT_SKIPS=1 turn any skip into a failed run (CI's full mode)."""
import os
import shutil

import pytest
from django.conf import settings


def _local_services_allowed():
    # TEST_LOCAL_SERVICES=none makes a machine that has nginx, Dovecot or
    # Chromium installed behave like a newcomer's (CI's first run uses it).
    return os.environ.get("TEST_LOCAL_SERVICES", "auto") != "none"


def _service_reason(marker_name):
    if marker_name in ("nginx", "dovecot", "browser") and not _local_services_allowed():
        return f"local {marker_name} disabled by TEST_LOCAL_SERVICES=none"
    if marker_name == "postgres":
        if settings.DATABASES["default"]["ENGINE"] not in ("django.db.backends.postgresql", "myhibachi.postgresql"):
            return "needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
    elif marker_name == "redis":
        if not settings.REDIS_URL:
            return "needs Redis: set REDIS_URL=redis://127.0.0.1:6379/0"
    elif marker_name == "nginx":
        if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
            return "needs nginx: apt-get install nginx-light"
    elif marker_name == "dovecot":
        if not (shutil.which("dovecot") or os.path.exists("/usr/sbin/dovecot")):
            return "needs Dovecot: apt-get install dovecot-imapd"
    elif marker_name == "browser":
        if not os.path.exists(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")):
            return "needs Chromium: apt-get install chromium"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker in ("postgres", "redis", "nginx", "dovecot", "browser"):
            if item.get_closest_marker(marker):
                reason = _service_reason(marker)
                if reason:
                    item.add_marker(pytest.mark.skip(reason=reason))


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("STRICT_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line(f"STRICT_SKIPS=1: {len(skipped)} test(s) skipped; every service must be present.",
                            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def agent(db):
    from tests.factories import make_user

    return make_user("alice", role="Agent", first_name="Alice")


@pytest.fixture
def manager(db):
    from tests.factories import make_user

    return make_user("morgan", role="Manager", first_name="Morgan")


@pytest.fixture
def agent_client(client, agent):
    client.force_login(agent)
    return client


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Cached values (status counts) must not leak from one test's database into the next."""
    _clear_our_cache_keys()
    yield
    _clear_our_cache_keys()


def _clear_our_cache_keys():
    """Delete only this project's cache keys.

    RedisCache.clear() is FLUSHDB, which would also wipe the channel layer's
    groups and Celery's queues that share the Redis database with the cache;
    a test running beside a live server then loses its socket subscriptions.
    """
    from django.conf import settings
    from django.core.cache import cache

    config = settings.CACHES["default"]
    if not config["BACKEND"].endswith("RedisCache"):
        cache.clear()
        return
    client = cache._cache.get_client(write=True)
    pattern = f"{config.get('KEY_PREFIX', '')}:*"
    keys = list(client.scan_iter(match=pattern, count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _celery_eager():
    """Tasks run in the test's own process. With REDIS_URL set nothing else
    would run them: the suite starts no Celery worker."""
    from myhibachi.celery import app

    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = previous
