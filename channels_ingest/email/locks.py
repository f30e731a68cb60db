"""One poller per mailbox at a time.

With REDIS_URL: a Redis lock (SET NX with a TTL, released only by its owner).
Without it: a lease on the mailbox row, taken by one conditional UPDATE, so the
guarantee also holds on PostgreSQL or SQLite alone. Both expire after the TTL,
so a killed worker blocks the mailbox for at most that long; a long poll renews
its lease after every batch and stops if it was lost.
"""
import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .models import Mailbox

logger = logging.getLogger(__name__)


class RedisLock:
    def __init__(self, mailbox_id: int, ttl: int):
        import redis

        self.ttl = ttl
        client = redis.Redis.from_url(settings.REDIS_URL)
        # The database name keeps two installations (or test runs) sharing one Redis apart.
        database = settings.DATABASES["default"]["NAME"]
        self._lock = client.lock(f"myhibachi:email:imap-poll:{database}:{mailbox_id}", timeout=ttl, blocking=False)

    def acquire(self) -> bool:
        return bool(self._lock.acquire())

    def renew(self) -> bool:
        from redis.exceptions import LockError

        try:
            return bool(self._lock.extend(self.ttl, replace_ttl=True))
        except LockError:
            # Our key is gone (expired, or Redis was flushed, e.g. by cache.clear()). If nobody
            # else took the mailbox meanwhile we simply take it again; otherwise we stop.
            logger.warning("IMAP poll lock vanished; taking it again if it is free")
            return bool(self._lock.acquire())

    def release(self) -> None:
        from redis.exceptions import LockError, LockNotOwnedError

        try:
            self._lock.release()
        except LockNotOwnedError:
            logger.warning("IMAP poll lock had expired before release; another worker may have taken over")
        except LockError as exc:
            logger.warning("IMAP poll lock release: %s", exc)


class LeaseLock:
    def __init__(self, mailbox_id: int, ttl: int):
        self.mailbox_id, self.ttl = mailbox_id, ttl
        self.owner = uuid.uuid4().hex

    def _until(self):
        return timezone.now() + timedelta(seconds=self.ttl)

    def acquire(self) -> bool:
        free = Q(lease_until__isnull=True) | Q(lease_until__lt=timezone.now()) | Q(lease_owner="")
        taken = Mailbox.objects.filter(free, pk=self.mailbox_id).update(lease_owner=self.owner, lease_until=self._until())
        return taken == 1

    def renew(self) -> bool:
        return Mailbox.objects.filter(pk=self.mailbox_id, lease_owner=self.owner).update(lease_until=self._until()) == 1

    def release(self) -> None:
        Mailbox.objects.filter(pk=self.mailbox_id, lease_owner=self.owner).update(lease_owner="", lease_until=None)


def mailbox_lock(mailbox_id: int):
    ttl = settings.IMAP_LOCK_TTL_SECONDS
    return RedisLock(mailbox_id, ttl) if settings.REDIS_URL else LeaseLock(mailbox_id, ttl)
