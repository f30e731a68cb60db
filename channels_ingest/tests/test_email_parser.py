"""The parser on its own: the awkward emails real mailboxes contain."""
import base64
import hashlib
import tracemalloc

import pytest

from channels_ingest.email import parser
from channels_ingest.email.parser import message_ids, normalize_message_id, parse_email

from . import mails


def test_message_id_is_normalised_without_brackets_or_spaces():
    assert normalize_message_id(" <abc.123@Host.Example > ") == "abc.123@Host.Example"
    assert message_ids("<a@x> <b@y>\r\n <c@z>") == ["a@x", "b@y", "c@z"]
    assert parse_email(mails.plain(mid=" < m1@mail.example.com >")).message_id == "m1@mail.example.com"


def test_latin1_body_and_encoded_headers_are_decoded():
    parsed = parse_email(mails.legacy_charset())
    assert parsed.subject == "Dîner à la maison"
    assert parsed.from_name == "Renée Dupré" and parsed.from_addr == "renee@example.fr"
    assert "Crème brûlée pour 20 personnes" in parsed.text
    assert parsed.errors == []


def test_shift_jis_and_iso_2022_jp_are_decoded():
    parsed = parse_email(mails.shift_jis())
    assert "十名で予約したい" in parsed.text
    assert parsed.subject == "予約"


def test_undeclared_8bit_text_is_guessed_not_garbled():
    raw = mails.legacy_charset(charset="iso-8859-1").replace(b"; charset=iso-8859-1", b"")
    assert "Crème brûlée" in parse_email(raw).text


def test_missing_message_id_gets_a_stable_hash():
    first = parse_email(mails.plain(mid=None))
    again = parse_email(mails.plain(mid=None))
    other = parse_email(mails.plain(mid=None, body="Something else"))
    assert first.message_id.startswith("sha256:") and first.message_id_missing
    assert first.message_id == again.message_id != other.message_id


def test_alternative_prefers_text_and_keeps_html_and_inline_image():
    parsed = parse_email(mails.alternative())
    assert parsed.text.strip() == "Do you have vegetarian options?"
    assert "<b>vegetarian</b>" in parsed.html
    [image] = parsed.attachments
    assert image.inline and image.content_id == "logo123" and image.content_type == "image/png"


def test_oversize_attachment_keeps_metadata_only():
    parsed = parse_email(mails.with_attachment(50_000), max_attachment_bytes=10_000)
    [attachment] = parsed.attachments
    assert attachment.filename == "floor plan.pdf" and attachment.size == 50_000 and attachment.data is None


def test_bounce_is_recognised_with_the_original_message_and_recipient():
    parsed = parse_email(mails.bounce(original_mid="c1.m2.abcdef0123@myhibachi.test"))
    assert parsed.kind == "bounce"
    assert parsed.bounce.original_message_ids == ["c1.m2.abcdef0123@myhibachi.test"]
    assert parsed.bounce.recipients[0]["email"] == "gone@example.com"
    assert parsed.bounce.permanent and "5.1.1" in parsed.bounce.reason


def test_auto_replies_and_list_mail_are_recognised():
    assert parse_email(mails.auto_reply()).kind == "auto_reply"
    assert parse_email(mails.list_mail()).kind == "list"
    assert parse_email(mails.plain()).kind == ""
    assert parse_email(mails.plain(headers={"Auto-Submitted": "no"})).kind == ""


def test_broken_mime_is_flagged_but_its_text_is_kept():
    parsed = parse_email(mails.broken_mime())
    assert parsed.errors, "a broken message must be flagged"
    assert "Hello from a broken mailer" in parsed.text
    assert parsed.message_id == "broken@mail.example.com" and parsed.from_addr == "broken@example.com"


def test_garbage_never_raises():
    for raw in (b"", b"\x00\xff" * 100, b"Content-Type: multipart/mixed\r\n\r\n--", b"From: <<<>>>\r\n\r\nx"):
        parsed = parse_email(raw)
        assert parsed.message_id


PLAIN_FROM = [
    "Jane Customer <jane@example.com>", "jane@example.com", "<Jane@Example.com>", "  Jane   Customer  <j@x.example>",
    "Jane\tCustomer <j@x.example>", "a@x.example, B <b@y.example>,c@z.example", "o'brien+tag@mail.example.co.uk",
    "Mail Delivery System <MAILER-DAEMON@mx.example.com>", "first.last@example.com", "J <first.last@example.com>",
]


@pytest.mark.parametrize("value", [
    *PLAIN_FROM,
    *[pytest.param(v, id=f"stdlib-{i}") for i, v in enumerate([  # not plain: left to the stdlib
        '"Doe, Jane" <jane@example.com>', "John Q. Public <jqp@example.com>", "=?utf-8?q?Ren=C3=A9e?= <r@example.fr>",
        "jane@example.com (Jane)", "Team: a@x.example, b@y.example;", "<jane@example.com", "a..b@example.com",
        "jane@example.com,", "Jane <jane@localhost>", "x=y@example.com", "Jane\r\n Customer <j@x.example>", "",
    ])],
])
def test_plain_address_headers_read_as_the_stdlib_reads_them(value, monkeypatch):
    raw = f"From: {value}\r\nTo: hello@myhibachi.test\r\nSubject: hi\r\n\r\nbody\r\n".encode()
    fast = parse_email(raw)
    plain = parser._plain_addresses(parser.BytesParser(policy=parser.policy.default).parsebytes(raw), "From")
    assert (plain is not None) == (value in PLAIN_FROM), "the plain forms take the quick path, the rest do not"
    monkeypatch.setattr(parser, "_plain_addresses", lambda msg, name: None)  # the stdlib alone
    slow = parse_email(raw)
    assert (fast.from_name, fast.from_addr, fast.to, fast.errors) == (slow.from_name, slow.from_addr, slow.to, slow.errors)


# Large mail: big base64 bodies are decoded straight from the raw bytes (see parser.LARGE_MESSAGE_BYTES).
def b64_body(data: bytes, width=76, nl=b"\r\n") -> bytes:
    text = base64.b64encode(data)
    return b"".join(text[i:i + width] + nl for i in range(0, len(text), width))


def blob(seed: int, size: int) -> bytes:
    """size bytes that differ per seed, made cheaply (a hashed block, repeated)."""
    block = hashlib.sha512(b"%d" % seed).digest() * 64  # 4 KiB
    return (block * (size // len(block) + 1))[:size]


def mime(*parts, boundary="B1", head=b"", preamble=b"", nl=b"\r\n", ctype=b"multipart/mixed") -> bytes:
    out = [b"From: Guest <guest@example.com>", b"To: hello@myhibachi.test", b"Subject: Photos",
           b"Message-ID: <big@mail.example.com>", b"MIME-Version: 1.0",
           b'Content-Type: ' + ctype + b'; boundary="' + boundary.encode() + b'"']
    out = nl.join(out) + nl + head + nl + preamble
    for part in parts:
        out += b"--" + boundary.encode() + nl + part
    return out + b"--" + boundary.encode() + b"--" + nl


def part(body: bytes, ctype=b"application/zip", name=b"photos.zip", cte=b"base64", nl=b"\r\n", blank=True) -> bytes:
    head = [b"Content-Type: " + ctype]
    if name:
        head.append(b'Content-Disposition: attachment; filename="' + name + b'"')
    if cte:
        head.append(b"Content-Transfer-Encoding: " + cte)
    return nl.join(head) + nl + (nl if blank else b"") + body


TEXT = part(b"Photos of the backyard attached.\r\n", ctype=b"text/plain; charset=utf-8", name=b"", cte=b"")
DATA = blob(1, 30_000)  # 40,000 characters of base64: a "long run" once MIN_RUN_BYTES is lowered

LARGE_CASES = {  # name: (raw, the run is decoded from the raw bytes (else: parsed the plain way))
    "padded": (mime(TEXT, part(b64_body(DATA + b"x"))), True),
    "two-and-nested": (mime(TEXT, part(b64_body(blob(2, 20_000)), name=b"a.zip"),
                            b'Content-Type: multipart/related; boundary="B2"\r\n\r\n'
                            + b"--B2\r\n" + part(b64_body(blob(3, 20_001)), ctype=b"image/png", name=b"") +
                            b"--B2\r\n" + part(b64_body(blob(4, 20_002), nl=b"\n"), name=b"b.bin") + b"--B2--\r\n"), True),
    "lf-only": (mime(TEXT.replace(b"\r\n", b"\n"),
                     part(b64_body(DATA, nl=b"\n"), nl=b"\n"), nl=b"\n"), True),
    "single-part": (b"From: g@example.com\r\nMessage-ID: <one@x.example>\r\nContent-Type: application/pdf\r\n"
                    b"Content-Transfer-Encoding: base64\r\n\r\n" + b64_body(DATA + b"yz"), True),
    "odd-line-length": (mime(TEXT, part(b64_body(DATA + b"x", width=77))), True),
    "html-in-base64": (mime(part(b64_body(("<p>Caf\u00e9 " * 9000 + "</p>").encode()), ctype=b"text/html; charset=utf-8",
                                 name=b"")), True),
    "no-padding-no-newline": (mime(TEXT, part(b64_body(DATA + b"x").replace(b"==\r\n", b""))), True),
    "padding-missing": (mime(TEXT, part(b64_body(DATA + b"x").replace(b"==\r\n", b"\r\n"))), True),
    "bad-characters-in-tail": (mime(TEXT, part(b64_body(DATA + b"x") + b"QU*JD\r\n")), True),
    "one-too-many-characters": (mime(TEXT, part(b64_body(DATA) + b"QUJDR\r\n")), False),
    "space-in-the-middle": (mime(TEXT, part(b64_body(DATA)[:20_000] + b"QUJD QUJD\r\n" + b64_body(DATA))), False),
    "no-blank-line": (mime(TEXT, part(b64_body(DATA), blank=False)), True),
    "upper-case-encoding": (mime(TEXT, part(b64_body(DATA), cte=b"BASE64")), True),
    "headers-in-base64": (mime(TEXT, part(b64_body(DATA), ctype=b"text/rfc822-headers", name=b"")), True),
    "headers-in-base64-undecodable": (mime(TEXT, part(b64_body(DATA) + b"QUJDR\r\n", ctype=b"text/rfc822-headers")),
                                      False),
    "forwarded": (mime(TEXT, b"Content-Type: message/rfc822\r\n\r\n" + mime(part(b64_body(DATA)), boundary="IN")), False),
    "quoted-printable": (mime(TEXT, part(b"QUJD" * 19 + b"\r\n" * 1 + b64_body(DATA), cte=b"quoted-printable")), False),
    "in-the-preamble": (mime(TEXT, preamble=b64_body(DATA)), False),
    "unclosed": (mime(TEXT, part(b64_body(DATA)))[:-len(b"--B1--\r\n")], True),
}


@pytest.mark.parametrize("max_bytes", [25 * 1024 * 1024, 35_000])  # 35,000: some attachments are metadata only
@pytest.mark.parametrize("case", LARGE_CASES)
def test_large_mail_parses_as_the_stdlib_parses_it(case, max_bytes, monkeypatch):
    raw, from_raw = LARGE_CASES[case]
    monkeypatch.setattr(parser, "LARGE_MESSAGE_BYTES", 10 ** 12)  # the plain stdlib parse, as before
    expected = parse_email(raw, max_attachment_bytes=max_bytes)
    monkeypatch.setattr(parser, "LARGE_MESSAGE_BYTES", 0)  # these small messages are "large"...
    monkeypatch.setattr(parser, "MIN_RUN_BYTES", 10_000)  # ...and their attachments long runs
    decoded, real = [], parser._run_payload

    def run_payload(*args):
        result = real(*args)  # raises when a marker cannot stand in for its run: parsed the plain way
        decoded.append(args)
        return result

    monkeypatch.setattr(parser, "_run_payload", run_payload)
    assert parse_email(raw, max_attachment_bytes=max_bytes) == expected
    assert bool(decoded) == from_raw, "decoded from the raw bytes" if decoded else "parsed the plain way"


def test_a_40_mb_message_is_parsed_in_little_more_memory_than_its_attachments():
    """Was about 7 times the message (a 40 MB mail: 310 MB); now the kept attachments and little else."""
    stored, oversize = blob(5, 12 * 1024 * 1024), blob(6, 18 * 1024 * 1024)
    raw = mime(TEXT, part(b64_body(stored), name=b"menu.pdf"), part(b64_body(oversize), name=b"video.mov"))
    assert len(raw) > 40 * 1024 * 1024
    tracemalloc.start()
    try:
        parsed = parse_email(raw, max_attachment_bytes=15 * 1024 * 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert parsed.text == "Photos of the backyard attached." and parsed.errors == []
    first, second = parsed.attachments
    assert (first.filename, first.size, hashlib.sha256(first.data).digest()) == (
        "menu.pdf", len(stored), hashlib.sha256(stored).digest())
    assert (second.filename, second.size, second.data) == ("video.mov", len(oversize), None)
    assert peak < len(stored) + 8 * 1024 * 1024, f"parsing peaked at {peak / 1024 / 1024:.0f} MB above the raw mail"
