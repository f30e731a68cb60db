"""The parser on its own: the awkward emails real mailboxes contain."""
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
