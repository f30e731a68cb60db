"""Raw RFC 5322 bytes -> one ParsedEmail, with the standard library's modern policy.

parse_email() never raises: whatever it cannot read is listed in ``errors``
(the caller keeps the raw source and flags the message for staff) and the
rest is still extracted as well as possible.
"""
import binascii
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from email import errors as email_errors
from email import headerregistry, policy
from email._encoded_words import decode_b  # what Message.get_payload(decode=True) decodes base64 with
from email.feedparser import BytesFeedParser
from email.header import decode_header, make_header
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr

logger = logging.getLogger(__name__)

ID_IN_BRACKETS = re.compile(r"<([^<>]+)>")
EMAIL_LIKE = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
EMBEDDED_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*<([^<>\r\n]+)>")
BOUNCE_SENDERS = {"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"}
AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-reply", "x-autoresponder")


@dataclass
class Attachment:
    filename: str
    content_type: str
    size: int
    data: bytes | None  # None when over the size limit: metadata only
    content_id: str = ""
    inline: bool = False


@dataclass
class Bounce:
    original_message_ids: list = field(default_factory=list)
    recipients: list = field(default_factory=list)  # dicts: email, action, status, diagnostic
    permanent: bool = False
    reason: str = ""


@dataclass
class ParsedEmail:
    message_id: str
    message_id_missing: bool = False
    from_addr: str = ""
    from_name: str = ""
    to: list = field(default_factory=list)
    cc: list = field(default_factory=list)
    subject: str = ""
    text: str = ""
    html: str = ""
    date: datetime | None = None
    in_reply_to: list = field(default_factory=list)
    references: list = field(default_factory=list)
    attachments: list = field(default_factory=list)
    kind: str = ""  # "", "auto_reply", "bounce" or "list"
    bounce: Bounce | None = None
    errors: list = field(default_factory=list)


def normalize_message_id(value: str) -> str:
    """'<Abc@Host >' -> 'Abc@Host': no brackets, no whitespace (case is kept: ids are case-sensitive)."""
    return re.sub(r"\s+", "", (value or "")).strip("<>")


def message_ids(value: str) -> list:
    """All ids in an In-Reply-To/References header, in order."""
    value = value or ""
    found = [normalize_message_id(v) for v in ID_IN_BRACKETS.findall(value)]
    if not found and value.strip() and " " not in value.strip():
        found = [normalize_message_id(value)]
    return [v for v in found if v and len(v) <= 255]


def dedupe_key(message_id: str, raw: bytes) -> tuple:
    """(key, missing): the Message-ID, or a stable hash of headers and body when it is missing or too long."""
    if message_id and len(message_id) <= 255:
        return message_id, False
    return "sha256:" + hashlib.sha256(raw).hexdigest(), not message_id


def raw_header(msg, name: str) -> str:
    """A header as text without structured parsing (used when parsing it failed, and for cheap flags)."""
    for key, value in msg.raw_items():
        if key.lower() == name.lower():
            try:
                return str(make_header(decode_header(str(value)))).strip()
            except (email_errors.HeaderParseError, LookupError, UnicodeError, ValueError):
                return str(value).strip()
    return ""


def _header(msg, name: str, errors: list) -> str:
    try:
        value = msg.get(name)
        return "" if value is None else str(value).strip()
    except Exception as exc:  # the stdlib header parser has edge-case bugs; keep the raw text
        errors.append(f"unreadable {name} header ({type(exc).__name__})")
        return raw_header(msg, name)


# The stdlib's structured address parser was a third of the parse time of ordinary mail. Headers
# in the plainest form - ASCII words and an address, no quotes, comments, encoded words, groups,
# dots in names or folded lines - are read with these patterns instead, which give the same
# answer (test_plain_address_headers_read_as_the_stdlib_reads_them); anything else goes to it.
_WORD = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+"  # atext without = and ? (no encoded words)
_ADDR_SPEC = rf"{_WORD}(?:\.{_WORD})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
PLAIN_ADDRESS = re.compile(
    rf"[ \t]*(?:((?:{_WORD}[ \t]+)*{_WORD})?[ \t]*<({_ADDR_SPEC})>|({_ADDR_SPEC}))[ \t]*")


def _plain_addresses(msg, name: str) -> list | None:
    """[(display name, address)] for a plain header; [] when absent; None: let the stdlib parse it."""
    raw = next((value for key, value in msg.raw_items() if key.lower() == name.lower()), None)
    if raw is None:
        return []
    if not isinstance(raw, str):
        return None
    found = []
    for part in raw.split(","):
        match = PLAIN_ADDRESS.fullmatch(part)
        if match is None:
            return None
        display, address, bare = match.groups()
        found.append((" ".join((display or "").split()), (address or bare).lower()))
    return found


def _addresses(msg, name: str, errors: list) -> list:
    plain = _plain_addresses(msg, name)
    if plain is not None:
        return plain
    try:
        header = msg.get(name)
        if header is None:
            return []
        return [(a.display_name, a.addr_spec.lower()) for a in header.addresses if a.addr_spec and "@" in a.addr_spec]
    except Exception:
        raw = raw_header(msg, name)
        return [(n, a.lower()) for n, a in getaddresses([raw]) if "@" in a]


def decode_text(payload: bytes, declared: str | None, errors: list) -> str:
    """Bytes in any charset -> str. Declared charset first; unknown or wrong ones are guessed and noted."""
    if declared:
        try:
            return payload.decode(declared)
        except LookupError:
            errors.append(f"unknown charset {declared!r}")
        except UnicodeDecodeError:
            pass
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Undeclared or wrong: trust detection for non-Latin scripts (Shift_JIS, KOI8-R, GB2312...);
    # for Latin-looking text, windows-1252 is what unlabelled western mail almost always is.
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(payload[:65536]).best()
        if best is not None and not re.match(r"(cp125|windows|iso8859|latin|mac_|ascii)", best.encoding):
            return payload.decode(best.encoding, errors="replace")
    except Exception as exc:  # detection is a best effort
        logger.debug("charset detection failed: %s", exc)
    return payload.decode("cp1252", errors="replace")


# Large mail (a security finding: "large mail can crash the IMAP poller, forever"). The stdlib
# parser holds a message's body as a list of line strings, then as one str, and
# get_payload(decode=True) copies it three times more: about 7 times the message in memory. So a
# message of LARGE_MESSAGE_BYTES or more is fed to the parser in chunks, and every long run of
# base64 lines (the body of a big attachment) is replaced by one marker line: the parser sees
# the same structure, and the run is decoded later straight from the raw bytes, only if the
# attachment is kept (an oversize one only needs its size, which is arithmetic). The result is
# the stdlib's to the byte, defects included (test_large_mail_parses_as_the_stdlib_parses_it);
# wherever a marker would land outside the base64 body of a plain MIME part (inside a
# message/rfc822, a preamble, a quoted-printable part...), the message is parsed again without
# markers, as before.
LARGE_MESSAGE_BYTES = 1024 * 1024
FEED_CHUNK_BYTES = 64 * 1024
MIN_RUN_BYTES = 64 * 1024
BASE64_RUN = re.compile(rb"(?m)^(?:[A-Za-z0-9+/]++\r?\n)++")  # whole lines of the base64 alphabet, no padding
# (possessive: a plain "+" keeps a backtracking entry per line, 90 MB for a 40 MB run)


class _NotMarkable(Exception):
    """A marker landed where it cannot stand in for its run: parse the message again without markers."""


def _alphabet_count(raw: bytes, start: int, end: int) -> int:
    return end - start - raw.count(b"\r", start, end) - raw.count(b"\n", start, end)


def _runs(raw: bytes):
    """(start, end) of each long run of base64 lines holding a whole number of 4-character groups."""
    for match in BASE64_RUN.finditer(raw):
        start, end = match.span()
        if end - start < MIN_RUN_BYTES:
            continue
        count = _alphabet_count(raw, start, end)
        while count % 4 and end > start:  # odd line lengths: the last lines go to the tail
            line_start = raw.rfind(b"\n", start, end - 1) + 1
            count -= _alphabet_count(raw, max(line_start, start), end)
            end = max(line_start, start)
        if end - start >= MIN_RUN_BYTES:
            yield start, end


def _feed(feeder, raw: bytes, start: int, end: int):
    for at in range(start, end, FEED_CHUNK_BYTES):
        feeder.feed(raw[at:min(at + FEED_CHUNK_BYTES, end)])


def _read(raw: bytes, markers: bool):
    """The parsed message, {marker: (start, end)} of the runs it stands in for, and the markers' prefix."""
    if len(raw) < LARGE_MESSAGE_BYTES:
        return BytesParser(policy=_ParseOncePolicy()).parsebytes(raw), {}, ""
    feeder = BytesFeedParser(policy=_ParseOncePolicy())
    # Markers are lines of the base64 alphabet too (so they parse as their run would); the
    # random token keeps a message from containing one. Each ends with "X" (not in the token).
    runs, done, prefix = {}, 0, f"LargeBase64Run{secrets.token_hex(16)}N"
    for start, end in (_runs(raw) if markers else ()):
        marker = f"{prefix}{len(runs)}X"
        _feed(feeder, raw, done, start)
        feeder.feed(marker.encode("ascii") + (b"\r\n" if raw[end - 2:end] == b"\r\n" else b"\n"))
        runs[marker], done = (start, end), end
    _feed(feeder, raw, done, len(raw))
    return feeder.close(), runs, prefix


def _joined(text: str) -> bytes:
    """What get_payload(decode=True) hands to the base64 decoder: the bytes without line breaks."""
    return b"".join(text.encode("ascii", "surrogateescape").splitlines())


def _place_runs(msg, runs: dict, prefix: str) -> dict:
    """{id(part): (start, end, tail)} for the MIME part each marker stands in, or _NotMarkable.

    A marker may only be the start of the body of a leaf part in base64 (so its part's
    decoded bytes are the run's, then the tail's), outside any message/* part (which is
    written back out with as_bytes()); each marker exactly once.
    """
    placed = {}

    def visit(part, in_message):
        payload = part._payload  # what get_payload() reads; get_payload() itself may alter it
        if isinstance(payload, list):
            if prefix in (part.preamble or "") or prefix in (part.epilogue or ""):
                raise _NotMarkable("preamble/epilogue")
            for child in payload:
                visit(child, in_message or part.get_content_maintype() == "message")
            return
        if not isinstance(payload, str) or prefix not in payload:
            return
        at = payload.find(prefix)
        end = payload.find("X", at + len(prefix))
        marker = payload[at:end + 1]
        tail = payload[end + 1:]
        if (in_message or marker not in runs or _joined(payload[:at]) or prefix in tail
                or str(part.get("content-transfer-encoding", "")).lower() != "base64"):
            raise _NotMarkable(marker)
        placed[id(part)] = (*runs[marker], tail)

    visit(msg, False)
    if len(placed) != len(runs):
        raise _NotMarkable("markers not found")
    return placed


def _run_payload(part, raw: bytes, run: tuple, max_bytes: int | None):
    """(bytes or None when over max_bytes, size): part.get_payload(decode=True) for a part whose body is a run.

    The body is run + tail, the run whole 4-character groups of the base64 alphabet, so the
    stdlib's decode_b gives a2b(run) followed by the tail's bytes, and the tail decides its
    defects. The tail is decoded by decode_b itself, after the run's last group (a group in
    front keeps the tail from being "leading" padding).
    """
    start, end, tail = run
    last = b"".join(raw[max(start, end - 12):end].splitlines())[-4:]
    value, defects = decode_b(last + _joined(tail))
    head = binascii.a2b_base64(last)
    if any(isinstance(d, email_errors.InvalidBase64LengthDefect) for d in defects) or value[:3] != head:
        raise _NotMarkable("undecodable tail")  # decode_b hands back the encoded text: not worth a shortcut
    for defect in defects:
        part.policy.handle_defect(part, defect)
    size = _alphabet_count(raw, start, end) // 4 * 3 + len(value) - 3
    if max_bytes is not None and size > max_bytes:
        return None, size
    data = binascii.a2b_base64(memoryview(raw)[start:end])
    return (data + value[3:] if len(value) > 3 else data), size


def _part_text(part, errors: list, payload=None) -> str:
    if payload is None:
        payload = part.get_payload(decode=True) or b""
    return decode_text(payload, part.get_content_charset(), errors)


def _filename(part) -> str:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    return (name or "").strip()


class _Walker:
    def __init__(self, max_attachment_bytes: int, errors: list, raw: bytes = b"", runs: dict | None = None):
        self.max_bytes = max_attachment_bytes
        self.errors = errors
        self.raw, self.runs = raw, runs or {}
        self.text, self.html, self.attachments = [], [], []
        self.delivery_status, self.original_headers = [], []

    def walk(self, part, depth=0):
        if depth > 40:
            self.errors.append("MIME nesting deeper than 40 levels; the rest is kept only in the raw source")
            return
        ctype = part.get_content_type()
        if ctype.startswith("multipart/") and part.is_multipart():
            # multipart/alternative too: the plain text becomes the text and the html is kept beside it.
            for child in part.get_payload():
                self.walk(child, depth + 1)
            return
        disposition = part.get_content_disposition()
        filename = _filename(part)
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            (self.text if ctype == "text/plain" else self.html).append(
                _part_text(part, self.errors, self._decoded(part)[0]))
        elif ctype == "message/delivery-status":
            self.delivery_status.append(part)
        elif ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            self._embedded(part)
            self._attach(part, filename or "message.eml")
        else:
            self._attach(part, filename)

    def _embedded(self, part):
        try:
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                self.original_headers.append(inner[0].get("Message-ID", ""))
            else:
                data = self._decoded(part)[0]
                self.original_headers += [m.decode("ascii", "replace") for m in EMBEDDED_MESSAGE_ID.findall(data)]
        except _NotMarkable:
            raise  # not this part's fault: parse_email parses the message again without markers
        except Exception as exc:
            self.errors.append(f"unreadable embedded message ({type(exc).__name__})")

    def _decoded(self, part, max_bytes: int | None = None):
        """(part.get_payload(decode=True) or b"", its size); the bytes are None when over max_bytes."""
        run = self.runs.get(id(part))
        if run is not None:
            return _run_payload(part, self.raw, run, max_bytes)
        data = part.get_payload(decode=True) or b""
        return data, len(data)

    def _attach(self, part, filename):
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            data = inner[0].as_bytes() if isinstance(inner, list) and inner else b""
            size = len(data)
        else:
            data, size = self._decoded(part, self.max_bytes)
        cid = normalize_message_id(str(part.get("Content-ID", "") or ""))
        inline = part.get_content_disposition() == "inline" or (bool(cid) and part.get_content_disposition() is None)
        self.attachments.append(Attachment(
            filename=filename or f"attachment-{len(self.attachments) + 1}", content_type=part.get_content_type(),
            size=size, data=data if size <= self.max_bytes else None, content_id=cid, inline=inline,
        ))


def _defects(msg) -> list:
    found = []
    for part in msg.walk():
        for defect in getattr(part, "defects", []):
            if not isinstance(defect, email_errors.HeaderDefect):
                found.append(type(defect).__name__)
    return sorted(set(found))


def classify(msg, from_addr: str, ctype: str) -> str:
    local = from_addr.split("@")[0].lower()
    if ctype == "multipart/report" and (msg.get_param("report-type") or "").lower() == "delivery-status":
        return "bounce"
    if local in BOUNCE_SENDERS:
        return "bounce"
    auto_submitted = raw_header(msg, "Auto-Submitted").lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return "auto_reply"
    if any(raw_header(msg, name) for name in AUTO_REPLY_HEADERS):
        return "auto_reply"
    precedence = raw_header(msg, "Precedence").lower()
    if precedence in ("auto_reply", "auto-reply"):
        return "auto_reply"
    if precedence in ("bulk", "list", "junk") or raw_header(msg, "List-Id"):
        return "list"
    if raw_header(msg, "Return-Path").strip() == "<>":
        return "auto_reply"
    return ""


def _bounce(walker: _Walker, raw: bytes, errors: list) -> Bounce:
    bounce = Bounce()
    for part in walker.delivery_status:
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            errors.append("unreadable delivery-status report")
            continue
        for block in blocks[1:] or blocks:
            recipient = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
            if not recipient:
                continue
            bounce.recipients.append({
                "email": recipient.split(";", 1)[-1].strip().strip("<>").lower(),
                "action": str(block.get("Action", "")).strip().lower(),
                "status": str(block.get("Status", "")).strip(),
                "diagnostic": str(block.get("Diagnostic-Code", "")).split(";", 1)[-1].strip()[:300],
            })
    body = raw.split(b"\r\n\r\n", 1)[-1] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[-1]
    ids = [normalize_message_id(h) for h in walker.original_headers if h]
    ids += [normalize_message_id(m.decode("ascii", "replace")) for m in EMBEDDED_MESSAGE_ID.findall(body)]
    bounce.original_message_ids = list(dict.fromkeys(i for i in ids if i))
    failed = [r for r in bounce.recipients if r["action"] == "failed" or r["status"].startswith("5")]
    bounce.permanent = bool(failed) or not bounce.recipients
    first = (failed or bounce.recipients or [{}])[0]
    bounce.reason = " ".join(filter(None, [first.get("status", ""), first.get("diagnostic", "")])) or "Undeliverable"
    if bounce.recipients and not failed:
        bounce.reason = "Delayed: " + bounce.reason
    return bounce


def _to_utc(value):
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt_timezone.utc)
    return value.astimezone(dt_timezone.utc)


class _HeaderClasses(headerregistry.HeaderRegistry):
    """The stdlib's header registry, except that each header's class is built once.

    HeaderRegistry.__getitem__ creates a new class with type() on every header
    it parses, which cost more than parsing most headers. The classes it makes
    for one name are all alike, so one is kept per name (we never re-map a
    name to another type, the only way they could differ).
    """

    def __init__(self):
        super().__init__()
        self._classes = {}

    def __getitem__(self, name):
        key = name.lower()
        found = self._classes.get(key)
        if found is None:
            found = self._classes[key] = super().__getitem__(name)
        return found


_HEADER_CLASSES = _HeaderClasses()


class _ParseOncePolicy(policy.EmailPolicy):
    """policy.default, except that each header of one message is parsed once.

    The stdlib builds a new structured header object on every read (``get``,
    ``get_content_type``, ``get_filename``...), and reading the same few
    headers again and again was most of the parse time. Header objects are
    immutable, so handing out the same one is safe. One instance per message:
    the cache lives and dies with it.
    """

    def __init__(self, **kw):
        kw.setdefault("header_factory", _HEADER_CLASSES)
        super().__init__(**kw)
        object.__setattr__(self, "_parsed", {})

    def header_fetch_parse(self, name, value):
        if hasattr(value, "name"):
            return value
        key = (name, value)
        found = self._parsed.get(key)
        if found is None:
            found = self._parsed[key] = super().header_fetch_parse(name, value)
        return found


def parse_email(raw: bytes, *, max_attachment_bytes: int = 25 * 1024 * 1024) -> ParsedEmail:
    errors = []
    try:
        try:
            return _parse(raw, max_attachment_bytes, errors)
        except _NotMarkable:  # see LARGE_MESSAGE_BYTES: the same message, parsed the plain way
            errors = []
            return _parse(raw, max_attachment_bytes, errors, markers=False)
    except Exception as exc:  # any failure: keep what we can; the raw source is stored by the caller
        logger.warning("email could not be parsed (%s); keeping it raw", exc)
        return _fallback(raw, errors + [f"could not parse the message ({type(exc).__name__}: {exc})"])


def _parse(raw: bytes, max_attachment_bytes: int, errors: list, markers: bool = True) -> ParsedEmail:
    msg, runs, prefix = _read(raw, markers)
    placed = _place_runs(msg, runs, prefix) if runs else {}
    message_id, missing = dedupe_key(normalize_message_id(_header(msg, "Message-ID", errors)), raw)
    senders = _addresses(msg, "From", errors) or _addresses(msg, "Sender", errors)
    if not senders:
        found = EMAIL_LIKE.search(raw_header(msg, "From") or raw_header(msg, "Return-Path"))
        senders = [("", found.group(0).lower())] if found else [("", "")]
    from_name, from_addr = senders[0]
    parsed = ParsedEmail(message_id=message_id, message_id_missing=missing, from_addr=from_addr,
                         from_name=from_name, errors=errors)
    parsed.to = [a for _, a in _addresses(msg, "To", errors)]
    parsed.cc = [a for _, a in _addresses(msg, "Cc", errors)]
    parsed.subject = _header(msg, "Subject", errors).replace("\r", "").replace("\n", " ")
    parsed.in_reply_to = message_ids(_header(msg, "In-Reply-To", errors))
    parsed.references = message_ids(_header(msg, "References", errors))
    try:
        date = msg.get("Date")
        parsed.date = _to_utc(date.datetime) if date is not None and getattr(date, "datetime", None) else None
    except Exception:
        parsed.date = None
    walker = _Walker(max_attachment_bytes, errors, raw, placed)
    walker.walk(msg)
    parsed.text = "\n\n".join(t for t in walker.text if t.strip())
    parsed.html = "\n".join(walker.html)
    parsed.attachments = walker.attachments
    defects = _defects(msg)
    if defects:
        errors.append("broken MIME: " + ", ".join(defects))
        if not parsed.text and not parsed.html:
            parsed.text = _body_as_text(raw)
    parsed.kind = classify(msg, from_addr, msg.get_content_type())
    if parsed.kind == "bounce":
        parsed.bounce = _bounce(walker, raw, errors)
    return parsed


def _body_as_text(raw: bytes) -> str:
    body = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[-1]
    return decode_text(body[:200_000], None, [])


def _fallback(raw: bytes, errors: list) -> ParsedEmail:
    head = raw[:64 * 1024]
    mid = re.search(rb"(?im)^message-id:[ \t]*(.+)$", head)
    message_id, missing = dedupe_key(normalize_message_id(mid.group(1).decode("ascii", "replace")) if mid else "", raw)
    frm = re.search(rb"(?im)^from:[ \t]*(.+)$", head)
    name, addr = parseaddr(frm.group(1).decode("utf-8", "replace")) if frm else ("", "")
    subject = re.search(rb"(?im)^subject:[ \t]*(.+)$", head)
    return ParsedEmail(message_id=message_id, message_id_missing=missing, from_addr=addr.lower(), from_name=name,
                       subject=subject.group(1).decode("utf-8", "replace").strip() if subject else "",
                       text=_body_as_text(raw), errors=errors)
