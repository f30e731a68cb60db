"""Celery beat exactly once: two beats, one Redis lock, only the holder sends (myhibachi/beat.py)."""
import time
import uuid

import pytest
from django.conf import settings
from django.test import override_settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from myhibachi.beat import LockedDatabaseScheduler
from myhibachi.celery import app

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_settings_name_the_locked_scheduler_with_redis():
    assert settings.CELERY_BEAT_SCHEDULER == "myhibachi.beat:LockedDatabaseScheduler"
    assert app.conf.beat_scheduler == "myhibachi.beat:LockedDatabaseScheduler"


def test_only_the_lock_holder_sends_and_the_other_takes_over_when_it_stops_renewing():
    every_second = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    # An unregistered task name: beat sends it with send_task, which records here instead of the broker.
    PeriodicTask.objects.create(name="beat-lock-probe", task="tests.beat_lock_probe", interval=every_second)
    sent = []

    def beat(name):
        scheduler = LockedDatabaseScheduler(app=app, lazy=False)
        scheduler.send_task = lambda task, *args, **kwargs: sent.append((name, task))
        return scheduler

    with override_settings(BEAT_LOCK_KEY=f"test:beat:{uuid.uuid4().hex}", BEAT_LOCK_TTL=2):
        first, second = beat("first"), beat("second")
    try:
        assert first.max_interval <= 2 / 3  # never sleeps past a renewal
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # both tick, as two beat processes would
            first.tick()
            second.tick()
            time.sleep(0.1)
        assert first.holding and not second.holding
        probes = [who for who, name in sent if name == "tests.beat_lock_probe"]
        assert probes and set(probes) == {"first"}
        assert len(probes) <= 4  # once a second, not once per tick
        assert PeriodicTask.objects.get(name="beat-lock-probe").last_run_at is not None  # written at once

        # The holder hangs (or dies): it stops renewing. Within the TTL the other takes over.
        sent.clear()
        stopped_at = time.monotonic()
        while not second.holding:
            second.tick()
            assert time.monotonic() - stopped_at < 2 + 1, "the lock did not pass on within its TTL"
            time.sleep(0.1)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            second.tick()
            time.sleep(0.1)
        # The old holder wakes up: it has lost the lock and sends nothing.
        for _ in range(5):
            first.tick()
        assert not first.holding
        probes = [who for who, name in sent if name == "tests.beat_lock_probe"]
        assert probes and set(probes) == {"second"}
    finally:
        for scheduler in (first, second):
            scheduler.close()
            scheduler.redis.close()


def test_a_beat_that_stops_cleanly_hands_over_at_once():
    with override_settings(BEAT_LOCK_KEY=f"test:beat:{uuid.uuid4().hex}", BEAT_LOCK_TTL=30):
        first = LockedDatabaseScheduler(app=app, lazy=False)
        second = LockedDatabaseScheduler(app=app, lazy=False)
    try:
        assert first.hold_lock() and not second.hold_lock()
        first.close()
        assert second.hold_lock()
    finally:
        second.close()
        for scheduler in (first, second):
            scheduler.redis.close()
