"""Celery beat, exactly once in the cluster: a DatabaseScheduler that schedules only under a Redis lock.

settings.CELERY_BEAT_SCHEDULER names LockedDatabaseScheduler when REDIS_URL is set.
Every beat process (`celery -A myhibachi beat`) ticks as usual, but a tick
first takes or renews the lock BEAT_LOCK_KEY (a redis-py Lock, TTL
BEAT_LOCK_TTL seconds, renewed on every tick, and the scheduler never sleeps
longer than a third of the TTL). Only the holder sends due tasks; any other
beat sends nothing and tries again every few seconds. If the holder dies or
hangs, its lock expires after at most BEAT_LOCK_TTL seconds and the next
beat to tick takes over. A holder that loses its lock (a pause longer than
the TTL) stops sending at its next tick. A holder that stops cleanly
releases the lock at once.

Handing over without sending twice: the holder writes last_run_at to the
database after every task it sends (sync every task, not every 3 minutes),
and a beat that takes the lock reads the schedule again from the database
before it sends anything.
"""
import logging

from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler
from redis import Redis
from redis.exceptions import LockError, RedisError

logger = logging.getLogger(__name__)


class LockedDatabaseScheduler(DatabaseScheduler):
    def __init__(self, *args, **kwargs):
        # Write last_run_at after every task sent, so a successor does not send it again.
        kwargs["sync_every_tasks"] = 1
        self.lock_ttl = float(getattr(settings, "BEAT_LOCK_TTL", 30))
        self.lock_key = getattr(settings, "BEAT_LOCK_KEY", "myhibachi:celery-beat")
        self.redis = Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        self.lock = self.redis.lock(self.lock_key, timeout=self.lock_ttl, thread_local=False)
        self.holding = False
        super().__init__(*args, **kwargs)
        self.max_interval = min(self.max_interval, self.lock_ttl / 3)

    def hold_lock(self):
        """True while this beat holds the lock (renewed here, on every tick)."""
        try:
            if self.holding:
                try:
                    self.lock.reacquire()
                    return True
                except LockError:
                    logger.warning("beat: lost the lock %s; another beat schedules now", self.lock_key)
                    self.holding = False
            if self.lock.acquire(blocking=False):
                logger.info("beat: took the lock %s: this beat schedules", self.lock_key)
                self.holding = True
                self.reload_schedule()
            return self.holding
        except RedisError as exc:
            logger.warning("beat: Redis unavailable (%s): not scheduling", exc)
            self.holding = False
            return False

    def reload_schedule(self):
        """What the previous holder wrote (last_run_at), before sending anything."""
        self._dirty.clear()
        self._schedule = self.all_as_schedule()
        self._heap = None

    def tick(self, *args, **kwargs):
        if not self.hold_lock():
            return self.max_interval
        return super().tick(*args, **kwargs)

    def close(self):
        try:
            super().close()
        finally:
            if self.holding:
                self.holding = False
                try:
                    self.lock.release()
                except (LockError, RedisError):
                    pass  # expired or unreachable: it expires on its own
