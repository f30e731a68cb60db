"""The same-origin image proxy behind "Show images" (see inbox.remote_images).

The server fetches a customer email's remote image so the sender learns
neither the staff member's address nor their browser, and the page keeps a
CSP of img-src 'self' data:. It is a way for outside html to make this server
send requests, so it is kept narrow:

- only URLs this server wrote into a thread (HMAC-signed with SECRET_KEY) and
  only for signed-in staff;
- http and https, on port 80 or 443, no user:password@;
- the host is resolved here and every address must be public (no loopback,
  private, link-local, CGNAT, multicast or reserved ranges); the connection
  then goes to the checked address, so DNS cannot change its answer in between;
  redirects (at most MAX_REDIRECTS) are checked the same way;
- a time limit for the whole fetch and a size limit on the body;
- only raster image types (never SVG, which can carry script), answered with
  nosniff and a sandboxing CSP, and no upstream header but the type.
"""
import http.client
import ipaddress
import logging
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit

from django.http import HttpResponse
from django.views.decorators.http import require_GET

from . import remote_images
from .views import staff_screen

logger = logging.getLogger(__name__)

PORTS = {"http": 80, "https": 443}
MAX_BYTES = 5 * 1024 * 1024
TIMEOUT_SECONDS = 8  # the whole fetch: resolving aside, every connect and read together
MAX_REDIRECTS = 3
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp",
                         "image/x-icon", "image/vnd.microsoft.icon"})
USER_AGENT = "myhibachi-image-proxy"


class Refused(Exception):
    """A destination this server will not fetch from."""

    status = 403


class Failed(Exception):
    """The destination did not answer with an image we will pass on."""

    status = 502


def destination_allowed(address, port: int) -> bool:
    """Whether this server may connect to (address, port): an ipaddress object
    that is public unicast (an IPv6 address that embeds an IPv4 one is judged
    by that), on the standard http or https port."""
    embedded = getattr(address, "ipv4_mapped", None) or getattr(address, "sixtofour", None)
    if embedded is not None:
        address = embedded
    return port in PORTS.values() and address.is_global and not address.is_multicast


def _checked_address(host: str, port: int) -> str:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Failed(f"The image host {host} could not be resolved.") from exc
    addresses = [info[4][0] for info in found]
    if not addresses:
        raise Failed(f"The image host {host} has no address.")
    for address in addresses:
        if not destination_allowed(ipaddress.ip_address(address.split("%")[0]), port):
            raise Refused(f"The image host {host} is not on the public internet, or not on port 80 or 443.")
    return addresses[0]


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked, while Host says the name."""

    def __init__(self, host, port, *, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host, port, *, address, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _target(url: str):
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused("That image address is not a valid URL.") from exc
    scheme = parts.scheme.lower()
    if scheme not in PORTS or not parts.hostname:
        raise Refused("Only http and https images are fetched.")
    if parts.username is not None or parts.password is not None:
        raise Refused("Image addresses with a user name or password are not fetched.")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise Refused("That image host name is not valid.") from exc
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or PORTS[scheme], path


def _read(response, deadline: float) -> bytes:
    length = (response.getheader("Content-Length") or "").strip()
    if length and not (length.isascii() and length.isdigit()):  # "²" passes isdigit(), not int()
        raise Failed("The image host sent a length that is not a number.")
    if length and int(length) > MAX_BYTES:
        raise Failed("The image is larger than the proxy passes on.")
    chunks, size = [], 0
    while True:
        if time.monotonic() > deadline:
            raise Failed("The image took too long to arrive.")
        chunk = response.read1(64 * 1024)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BYTES:
            raise Failed("The image is larger than the proxy passes on.")
        chunks.append(chunk)


def fetch_image(url: str) -> tuple[bytes, str]:
    """(body, content type) of a remote image, or Refused / Failed."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    for _ in range(MAX_REDIRECTS + 1):
        scheme, host, port, path = _target(url)
        address = _checked_address(host, port)
        connection_class = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
        connection = connection_class(host, port, address=address,
                                      timeout=max(0.1, min(TIMEOUT_SECONDS, deadline - time.monotonic())))
        try:
            connection.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
            response = connection.getresponse()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location"))
                continue
            if response.status != 200:
                raise Failed(f"The image host answered {response.status}.")
            kind = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
            if kind not in IMAGE_TYPES:
                raise Failed("The address did not answer with an image.")
            return _read(response, deadline), kind
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, bad TLS, bad HTTP
            raise Failed(f"The image could not be fetched ({exc.__class__.__name__}).") from exc
        finally:
            connection.close()
    raise Failed("The image address redirects too often.")


@staff_screen
@require_GET
def image(request):
    url, signature = request.GET.get("url", ""), request.GET.get("sig", "")
    if not remote_images.signature_ok(url, signature):
        return HttpResponse("This image address was not written by this server.", status=403,
                            content_type="text/plain")
    try:
        body, kind = fetch_image(url)
    except (Refused, Failed) as exc:
        logger.info("image proxy: %s %s", url[:200], exc)
        return HttpResponse(str(exc), status=exc.status, content_type="text/plain")
    response = HttpResponse(body, content_type=kind)
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = 'inline; filename="image"'
    response["Cache-Control"] = "private, max-age=86400"
    return response
