"""A small RingCentral REST client on httpx (docs/sms-calls.md says why not the SDK).

- Authorises with the JWT grant (``POST /restapi/oauth/token``, client id and
  secret as basic auth). The access token is kept in Django's cache (Redis
  when REDIS_URL is set), so every process and node shares one token; it is
  renewed a few minutes before it expires, and at once when RingCentral
  answers 401.
- A 429 is honoured: a short ``Retry-After`` (at most
  RINGCENTRAL_MAX_WAIT_SECONDS) is waited out once, a longer one raises
  ``RateLimited`` carrying it so the caller's task retries later.
- A 5xx or a network error raises ``Unavailable`` at once: no retry loop here;
  the Celery task retries with backoff, the next sync run catches up.
- Any other 4xx raises ``Refused`` (it will not work if tried again).
"""
import base64
import hashlib
import logging
import time

import httpx
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_PATH = "/restapi/oauth/token"
EXTENSION = "/restapi/v1.0/account/~/extension/~"
RENEW_MARGIN_SECONDS = 300  # a token this close to expiry is renewed before use


class RingCentralError(Exception):
    def __init__(self, message: str, *, status: int | None = None, code: str = ""):
        super().__init__(message)
        self.message, self.status, self.code = message, status, code


class Unavailable(RingCentralError):
    """5xx, a timeout or no connection: try again later."""


class RateLimited(Unavailable):
    def __init__(self, message: str, *, retry_after: float, status: int = 429):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class Refused(RingCentralError):
    """A 4xx other than 429: the same request will never work."""


class NotConfigured(RingCentralError):
    pass


def _cache_key() -> str:
    who = f"{settings.RINGCENTRAL_SERVER_URL}|{settings.RINGCENTRAL_CLIENT_ID}"
    return "ringcentral:token:" + hashlib.sha256(who.encode()).hexdigest()[:16]


def _error_text(response: httpx.Response) -> tuple[str, str]:
    """(message, errorCode) from RingCentral's error bodies (errorCode/message or error/error_description)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase, ""
    if not isinstance(body, dict):
        return str(body)[:200], ""
    errors = body.get("errors") if isinstance(body.get("errors"), list) else []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    message = body.get("message") or body.get("error_description") or first.get("message") or response.reason_phrase
    code = body.get("errorCode") or body.get("error") or first.get("errorCode") or ""
    return str(message)[:300], str(code)[:60]


def retry_after_seconds(response: httpx.Response, default: float = 60.0) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


class Client:
    def __init__(self, *, transport=None, sleep=time.sleep):
        if not settings.RINGCENTRAL_CONFIGURED:
            raise NotConfigured("RingCentral is not configured: set RINGCENTRAL_CLIENT_ID, RINGCENTRAL_CLIENT_SECRET "
                                "and RINGCENTRAL_JWT.")
        self.http = httpx.Client(base_url=settings.RINGCENTRAL_SERVER_URL, transport=transport,
                                 timeout=settings.RINGCENTRAL_TIMEOUT_SECONDS, follow_redirects=False)
        self.sleep = sleep

    def close(self):
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the token --------------------------------------------------------------

    def token(self, *, renew: bool = False) -> str:
        if not renew:
            cached = cache.get(_cache_key())
            if cached and cached["expires_at"] - RENEW_MARGIN_SECONDS > time.time():
                return cached["access_token"]
        basic = base64.b64encode(
            f"{settings.RINGCENTRAL_CLIENT_ID}:{settings.RINGCENTRAL_CLIENT_SECRET}".encode()).decode()
        try:
            response = self.http.post(TOKEN_PATH, data={"grant_type": JWT_GRANT, "assertion": settings.RINGCENTRAL_JWT},
                                      headers={"Authorization": f"Basic {basic}", "Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise Unavailable(f"RingCentral could not be reached for a token: {exc}") from exc
        self._raise_for(response, what="token")
        body = response.json()
        expires_in = int(body.get("expires_in") or 3600)
        cache.set(_cache_key(), {"access_token": body["access_token"], "expires_at": time.time() + expires_in},
                  timeout=max(1, expires_in - RENEW_MARGIN_SECONDS))
        return body["access_token"]

    # --- requests ---------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """One API call: the token added, renewed once on 401, a short 429 waited out once."""
        renewed = waited = False
        while True:
            headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {self.token(renew=renewed)}"}
            try:
                response = self.http.request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise Unavailable(f"RingCentral could not be reached: {exc}") from exc
            kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
            if response.status_code == 401 and not renewed:
                cache.delete(_cache_key())
                renewed = True
                continue
            if response.status_code == 429 and not waited:
                wait = retry_after_seconds(response)
                if wait <= settings.RINGCENTRAL_MAX_WAIT_SECONDS:
                    logger.info("RingCentral rate limit on %s %s; waiting %.1f s", method, path, wait)
                    self.sleep(wait)
                    waited = True
                    continue
            self._raise_for(response, what=f"{method} {path}")
            return response

    def get_json(self, path: str, params=None) -> dict:
        return self.request("GET", path, params=params).json()

    def post_json(self, path: str, body: dict) -> dict:
        return self.request("POST", path, json=body).json()

    def download(self, uri: str, *, max_bytes: int) -> tuple[bytes, str]:
        """An authorised content download (MMS attachment, recording), refused past max_bytes.

        Only URIs on our RingCentral server (or its media host) are followed,
        with our token: a URI from a payload never takes the token elsewhere."""
        url = httpx.URL(uri)
        base = httpx.URL(settings.RINGCENTRAL_SERVER_URL)
        allowed = {base.host, base.host.replace("platform.", "media.", 1)}
        if url.is_absolute_url and (url.host not in allowed or url.scheme != base.scheme
                                    or (url.host == base.host and url.port != base.port)):
            raise Refused(f"Refused to download from {url.host}: not our RingCentral server.")
        path = str(url)
        chunks, size = [], 0
        for attempt in (0, 1):
            headers = {"Authorization": f"Bearer {self.token(renew=attempt == 1)}"}
            try:
                with self.http.stream("GET", path, headers=headers) as response:
                    if response.status_code == 401 and attempt == 0:
                        cache.delete(_cache_key())
                        continue
                    if response.status_code >= 400:
                        response.read()
                        self._raise_for(response, what="download")
                    declared = int(response.headers.get("Content-Length") or 0)
                    if declared > max_bytes:
                        raise Refused(f"The content is {declared:,} bytes; the limit is {max_bytes:,}.")
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise Refused(f"The content is over the limit of {max_bytes:,} bytes.")
                        chunks.append(chunk)
                    return b"".join(chunks), response.headers.get("Content-Type", "application/octet-stream")
            except httpx.HTTPError as exc:
                raise Unavailable(f"RingCentral could not be reached: {exc}") from exc
        raise Refused("RingCentral refused our token for the download.")

    @staticmethod
    def _raise_for(response: httpx.Response, *, what: str) -> None:
        status = response.status_code
        if status < 400:
            return
        message, code = _error_text(response)
        text = f"RingCentral {what}: {status} {message}".strip()
        if status == 429:
            raise RateLimited(text, retry_after=retry_after_seconds(response))
        if status >= 500:
            raise Unavailable(text, status=status, code=code)
        raise Refused(text, status=status, code=code)


def client(**kwargs) -> Client:
    return Client(**kwargs)
