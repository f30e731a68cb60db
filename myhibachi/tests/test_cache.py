"""With Redis unreachable, the cache reads as a miss and skips refills (myhibachi/cache.py),
but what must not look done when it was not (a delete, an add, a counter) still raises."""
import socket

import pytest
from redis.exceptions import ConnectionError

from myhibachi.cache import RedisCache


@pytest.fixture
def unreachable_cache():
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return RedisCache(f"redis://127.0.0.1:{port}/0", {"OPTIONS": {"socket_connect_timeout": 0.5}})


def test_reads_are_misses_and_refills_are_skipped_while_redis_is_down(unreachable_cache):
    assert unreachable_cache.get("session:abc") is None
    assert unreachable_cache.get("session:abc", "fallback") == "fallback"
    assert unreachable_cache.get_many(["a", "b"]) == {}
    assert unreachable_cache.has_key("a") is False
    unreachable_cache.set("session:abc", {"user": 1})  # what cached_db does after reading the database
    assert unreachable_cache.set_many({"a": 1, "b": 2}) == ["a", "b"]  # reported as not set


@pytest.mark.parametrize("operation, args", [("delete", ("session:abc",)), ("add", ("k", 1)), ("incr", ("k",))])
def test_what_must_not_look_done_still_fails(unreachable_cache, operation, args):
    with pytest.raises(ConnectionError):
        getattr(unreachable_cache, operation)(*args)


@pytest.mark.redis
def test_requests_share_one_redis_connection_pool(settings):
    """Django keeps a cache object per async context: each ASGI request used to open its own
    TCP connection to Redis. Forty cache objects (as forty requests have) open at most one."""
    import redis

    server = redis.Redis.from_url(settings.REDIS_URL)
    received = server.info("stats")["total_connections_received"]
    location = settings.REDIS_URL
    for n in range(40):
        cache = RedisCache(location, {})  # what each request's context gets from django.core.cache.caches
        cache.add(f"test-shared-pool-{n}", 1, timeout=5)
        assert cache.get(f"test-shared-pool-{n}") == 1
    assert server.info("stats")["total_connections_received"] - received <= 1
