"""Django's Redis cache, read and refilled as a miss while Redis is unreachable.

Django's RedisCache raises on a connection error. The cache here only holds
copies (cached_db sessions, the status counts), so with Redis down a page
must still be served from PostgreSQL: cached_db's load() tolerates a failed
get but not the set() that refills the cache after reading the database, so
every signed-in page answered 500 for as long as Redis was down.

Only get/get_many/has_key (a miss) and set/set_many (skipped, as cached_db's
own save() already does) are tolerated. delete, add and incr still raise: a
log-out or an invalidation that could not reach the cache must not look done
(a stale session could come back with Redis), and counters (the log-in
limit) fail closed.
"""
import logging

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from redis.exceptions import ConnectionError, TimeoutError

logger = logging.getLogger(__name__)
UNREACHABLE = (ConnectionError, TimeoutError)


class RedisCache(DjangoRedisCache):
    def _tolerate(self, operation, default, *args, **kwargs):
        try:
            return getattr(super(), operation)(*args, **kwargs)
        except UNREACHABLE as exc:
            logger.warning("cache %s skipped, Redis unreachable: %s", operation, exc)
            return default

    def get(self, key, default=None, version=None):
        return self._tolerate("get", default, key, default, version)

    def get_many(self, keys, version=None):
        return self._tolerate("get_many", {}, keys, version)

    def has_key(self, key, version=None):
        return self._tolerate("has_key", False, key, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._tolerate("set", None, key, value, timeout, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._tolerate("set_many", list(data), data, timeout, version)
