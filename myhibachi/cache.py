"""Django's Redis cache, read and refilled as a miss while Redis is unreachable.

Django's RedisCache raises on a connection error. The cache here only holds
copies (cached_db sessions, the status counts), so with Redis down a page
must still be served from PostgreSQL: cached_db's load() tolerates a failed
get but not the set() that refills the cache after reading the database, so
every signed-in page answered 500 for as long as Redis was down.

One Redis client (and so one connection pool) per process and location:
Django keeps a cache object per async context, so under ASGI every request
built a new client with a new pool and opened a new TCP connection to Redis
for its first cache call (a sixth of a webhook's CPU on a node). Django's
client also built a redis.Redis object for every cache call (0.3 ms each);
one per pool is kept instead. redis-py's pool and client are thread-safe and
the pool notices a fork, so sharing them is safe.

Only get/get_many/has_key (a miss) and set/set_many (skipped, as cached_db's
own save() already does) are tolerated. delete, add and incr still raise: a
log-out or an invalidation that could not reach the cache must not look done
(a stale session could come back with Redis), and counters (the log-in
limit) fail closed.
"""
import logging
import threading

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from django.utils.functional import cached_property
from redis.exceptions import ConnectionError, TimeoutError

logger = logging.getLogger(__name__)
UNREACHABLE = (ConnectionError, TimeoutError)
_clients = {}
_clients_lock = threading.Lock()


class SharedRedisClient(RedisCacheClient):
    """Django's client, with one redis.Redis per connection pool instead of one per call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._redis = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._redis.get(index)
        if client is None:
            client = self._redis.setdefault(index, self._client(connection_pool=self._get_connection_pool(write)))
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = SharedRedisClient

    @cached_property
    def _cache(self):
        """The process's client for this location and these options (looked up once per cache object)."""
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        with _clients_lock:
            if key not in _clients:
                _clients[key] = self._class(self._servers, **self._options)
            return _clients[key]

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
