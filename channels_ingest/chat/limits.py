"""Rate limits of the public chat socket: per client address and per visitor token.

Fixed one-minute windows counted in the shared cache (Redis in production, so
every node counts together): ``allow(kind, who, limit)`` adds one and says
whether the count is still within the limit. A cache that cannot count (Redis
unreachable) refuses, as the log-in limit does: the public side fails closed.
"""
import hashlib
import logging
import time
from types import SimpleNamespace

from django.core.cache import cache

from myhibachi.login_limit import client_address

logger = logging.getLogger(__name__)
WINDOW = 60


def allow(kind: str, who: str, limit: int) -> bool:
    window = int(time.time() // WINDOW)
    key = "chat-rate:%s:%s:%d" % (kind, hashlib.sha256(who.encode()).hexdigest()[:24], window)
    try:
        cache.add(key, 0, timeout=WINDOW + 5)
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=WINDOW + 5)
        count = 1
    except Exception as exc:
        logger.warning("chat rate limit could not count (%s): refusing", exc)
        return False
    return count <= limit


def socket_address(scope) -> str:
    """The client's address of a WebSocket scope, by the same rule as HTTP (TRUSTED_PROXIES, X-Real-IP)."""
    client = scope.get("client") or ("", 0)
    meta = {"REMOTE_ADDR": client[0] or ""}
    for name, value in scope.get("headers") or ():
        if name == b"x-real-ip":
            meta["HTTP_X_REAL_IP"] = value.decode("latin-1")
    return client_address(SimpleNamespace(META=meta))
