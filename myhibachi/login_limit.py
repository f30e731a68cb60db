"""The limit on log-in attempts: per username and per client address.

Every password check goes through StaffBackend.authenticate (myhibachi/auth.py),
whichever page asked for it (/login/, /admin/login/, an API token request), so
the limit is kept there, once for every way in.

An attempt is counted *before* the password is checked, with one atomic
increment per counter (Redis INCR in a script that also sets the expiry;
LocMemCache increments under its lock). The increment decides: attempt n is
checked only if n is within the limit, so twenty attempts sent at once get at
most LOGIN_MAX_FAILURES password checks between them, on any number of nodes.
A successful log-in takes its attempt back: the username's count is cleared
and the address count is lowered by one. A refused attempt raises
PermissionDenied in the backend and leaves a Lockout on the request; the
log-in forms turn it into a message saying how long to wait, and
LoginLockoutMiddleware answers 429 with Retry-After.

We do not use django-axes: it checks the count before the password check and
records the failure after it (AxesBackend.authenticate, then its
user_login_failed handler), so parallel attempts all read the same count and
all check the password, whichever handler stores it.

Addresses: REMOTE_ADDR, unless it belongs to TRUSTED_PROXIES (addresses or
networks); then X-Real-IP, which nginx sets, when it holds a valid address.
"""
import dataclasses
import functools
import hashlib
import ipaddress
import logging
import time

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger(__name__)

LOGIN_MAX_FAILURES = 5  # per username
LOGIN_MAX_FAILURES_PER_ADDRESS = 20  # per client address, whatever the usernames (an office shares one)
LOGIN_FAILURE_WINDOW = 15 * 60  # seconds, from the first counted attempt


def _setting(name, default):
    return getattr(settings, name, default)


@functools.lru_cache(maxsize=8)
def _networks(proxies: tuple) -> tuple:
    return tuple(ipaddress.ip_network(item, strict=False) for item in proxies)


def _address(text):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(request) -> str:
    """The client's address: X-Real-IP only when the connection comes from a trusted proxy."""
    meta = getattr(request, "META", None) or {}
    remote = _address(meta.get("REMOTE_ADDR") or "")
    if remote is None:
        return "unknown"
    proxies = _networks(tuple(_setting("TRUSTED_PROXIES", ())))
    if any(remote in network for network in proxies):
        forwarded = _address(meta.get("HTTP_X_REAL_IP") or "")
        if forwarded is not None:
            return str(forwarded)
    return str(remote)


def _key(kind: str, value: str) -> str:
    return "login-attempts:%s:%s" % (kind, hashlib.sha256(value.encode()).hexdigest()[:32])


# INCR and EXPIRE in one step: a counter can never be left without its expiry.
_HIT = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""
# DECR only an existing counter (one that expired meanwhile stays gone).
_UNHIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
"""


def _redis_client(cache, key):
    """(raw client, stored key) when the cache is Redis, else (None, None)."""
    if not isinstance(cache, RedisCache):
        return None, None
    real_key = cache.make_and_validate_key(key)
    return cache._cache.get_client(real_key, write=True), real_key


def _hit(key: str, window: int) -> tuple[int, int]:
    """Count one attempt; return (attempts in this window, seconds until it ends)."""
    cache = caches[DEFAULT_CACHE_ALIAS]
    client, real_key = _redis_client(cache, key)
    if client is not None:
        count, ttl = client.eval(_HIT, 1, real_key, window)
        return int(count), max(1, int(ttl))
    now = time.time()
    for _ in range(3):
        cache.add(key + ":until", now + window, window)
        cache.add(key, 0, window)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: start the window again
            continue
        until = cache.get(key + ":until") or now + window
        return count, max(1, int(until - now))
    raise RuntimeError(f"could not count a log-in attempt in the cache ({key})")


def _unhit(key: str) -> None:
    cache = caches[DEFAULT_CACHE_ALIAS]
    client, real_key = _redis_client(cache, key)
    if client is not None:
        client.eval(_UNHIT, 1, real_key)
        return
    try:
        cache.decr(key)
    except ValueError:
        logger.debug("log-in counter %s had already expired", key)


@dataclasses.dataclass
class Lockout:
    wait: int  # seconds
    by_address: bool

    @property
    def message(self) -> str:
        minutes = (self.wait + 59) // 60
        whom = "from this address" if self.by_address else "for this username"
        return (f"Too many failed log-in attempts {whom}. Wait {minutes} minute{'s' if minutes != 1 else ''} "
                f"and try again, or ask a manager to send you a password-reset email.")


@dataclasses.dataclass
class Attempt:
    username_key: str
    address_key: str | None

    def succeeded(self) -> None:
        cache = caches[DEFAULT_CACHE_ALIAS]
        cache.delete(self.username_key)
        cache.delete(self.username_key + ":until")
        if self.address_key:
            _unhit(self.address_key)


def forget(username: str) -> None:
    """Clear the username's count (its password was just reset)."""
    Attempt(_key("user", str(username).strip().lower()), None).succeeded()


def begin(request, username: str) -> Attempt | Lockout:
    """Count one log-in attempt for username from the request's address.

    Returns the Attempt to report success on, or the Lockout that refuses it
    (its password must then not be checked).
    """
    window = int(_setting("LOGIN_FAILURE_WINDOW", LOGIN_FAILURE_WINDOW))
    username_key = _key("user", str(username).strip().lower())
    count, wait = _hit(username_key, window)
    if count > int(_setting("LOGIN_MAX_FAILURES", LOGIN_MAX_FAILURES)):
        return Lockout(wait=wait, by_address=False)
    if request is None:  # no address to count (authenticate() called outside a request)
        return Attempt(username_key, None)
    address_key = _key("address", client_address(request))
    count, wait = _hit(address_key, window)
    if count > int(_setting("LOGIN_MAX_FAILURES_PER_ADDRESS", LOGIN_MAX_FAILURES_PER_ADDRESS)):
        _unhit(username_key)  # refused for the address: the username's count is not used up
        return Lockout(wait=wait, by_address=True)
    return Attempt(username_key, address_key)


LOCKOUT_ATTRIBUTE = "myhibachi_login_lockout"


def mark_locked_out(request, lockout: Lockout) -> None:
    # A DRF Request passes attribute reads to the Django request but keeps writes: write there.
    setattr(getattr(request, "_request", request), LOCKOUT_ATTRIBUTE, lockout)


def lockout_of(request) -> Lockout | None:
    return getattr(getattr(request, "_request", request), LOCKOUT_ATTRIBUTE, None)


class LoginLockoutMiddleware:
    """A response to a refused log-in attempt is 429 with Retry-After, on every log-in page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        lockout = lockout_of(request)
        if lockout is not None and response.status_code < 400:
            response.status_code = 429
            response["Retry-After"] = str(lockout.wait)
        return response
