"""Remote images in customer html do not load until a person asks for them.

A remote image in an email is how senders learn that, when and from which
address it was read (a tracking pixel). So the thread writes no image source
at all: each http(s) image gets a `data-proxied-src` that points at our own
image proxy (inbox.image_proxy), signed so the proxy fetches only addresses
this server wrote, and the message gets a "Show images" button (inbox.js copies
`data-proxied-src` into `src` on click). Every other image source (relative,
cid:, anything unusual) is dropped. The page's CSP allows images from 'self'
and data: only, so the browser never talks to the sender's host, even then.

Works on html that nh3 has just cleaned: its serialiser writes every attribute
as name="value" with `"` escaped, which is what the patterns below rely on.
"""
import functools
import hashlib
import hmac
import html
import re
from urllib.parse import quote

from django.conf import settings
from django.urls import reverse
from django.utils.crypto import constant_time_compare

MAX_URL_CHARS = 2048
_SALT = "inbox.remote_images"
# An <img …> tag as nh3 writes it: quoted values may hold ">".
_IMG = re.compile(r'<img\b((?:[^>"]|"[^"]*")*)>')
_SOURCE = re.compile(r'\s(src|srcset)="([^"]*)"')
_URL_NOISE = re.compile(r"[\t\n\r]")  # browsers drop these anywhere in a URL
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
MARKER = "data-proxied-src="


@functools.lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    # salted_hmac's key derivation, done once per secret rather than per image.
    return hashlib.sha256(f"{_SALT}{secret}".encode()).digest()


def sign(url: str) -> str:
    return hmac.new(_key(settings.SECRET_KEY), url.encode(), hashlib.sha256).hexdigest()[:32]


def signature_ok(url: str, signature: str) -> bool:
    return bool(url) and len(url) <= MAX_URL_CHARS and constant_time_compare(sign(url), signature or "")


@functools.cache
def _proxy_path() -> str:
    return reverse("inbox:image")


def proxy_url(url: str) -> str:
    return f"{_proxy_path()}?url={quote(url, safe='')}&sig={sign(url)}"


def remote_url(src: str) -> str | None:
    """The http(s) URL an <img src> value (as written in html) would load, or None."""
    url = _URL_NOISE.sub("", html.unescape(src)).strip(_C0_AND_SPACE)  # as the URL parser does
    lowered = url[:8].lower()
    if url.startswith("//"):
        url = "https:" + url
    elif not (lowered.startswith("http://") or lowered.startswith("https://")):
        return None
    return url if len(url) <= MAX_URL_CHARS else None


def _rewrite(match) -> str:
    attributes = match.group(1)
    found = None
    for name, value in _SOURCE.findall(attributes):
        if name == "src":
            found = remote_url(value)
    attributes = _SOURCE.sub("", attributes)
    if found is None:
        return f"<img{attributes}>"
    return f'<img {MARKER}"{html.escape(proxy_url(found))}"{attributes}>'


def block_remote_images(cleaned: str) -> str:
    """nh3-cleaned html with no image that loads by itself (see the module doc)."""
    if "<img" not in cleaned:
        return cleaned
    return _IMG.sub(_rewrite, cleaned)
