"""Raw emails for the tests, including the awkward ones real mailboxes contain."""
import base64
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timezone

BUSINESS = "hello@myhibachi.test"


def plain(*, mid="<m1@mail.example.com>", frm="Jane Customer <jane@example.com>", subject="Party for 12 guests",
          body="Hi, can you do a party on Saturday?", to=BUSINESS, headers=None, date=None) -> bytes:
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime(2026, 11, 20, 18, 30, tzinfo=timezone.utc))
    if mid:
        msg["Message-ID"] = mid
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


def legacy_charset(charset="iso-8859-1", body="Crème brûlée pour 20 personnes, à 19h ?",
                   subject_encoded="=?iso-8859-1?q?D=EEner_=E0_la_maison?=", mid="<latin@mail.example.fr>") -> bytes:
    return (
        f"From: =?iso-8859-1?q?Ren=E9e_Dupr=E9?= <renee@example.fr>\r\nTo: {BUSINESS}\r\n"
        f"Subject: {subject_encoded}\r\nMessage-ID: {mid}\r\nDate: Fri, 20 Nov 2026 10:00:00 +0100\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode("ascii") + body.encode(charset) + b"\r\n"


def shift_jis(mid="<sjis@mail.example.jp>") -> bytes:
    body = "来週の土曜日に十名で予約したいです。"
    return (
        f"From: Taro <taro@example.jp>\r\nTo: {BUSINESS}\r\nSubject: {Header('予約', 'iso-2022-jp').encode()}\r\n"
        f"Message-ID: {mid}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=Shift_JIS\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + base64.encodebytes(body.encode("shift_jis")) + b"\r\n"


def alternative(mid="<alt@mail.example.com>") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jane Customer <jane@example.com>"
    msg["To"] = BUSINESS
    msg["Subject"] = "Menu question"
    msg["Message-ID"] = mid
    msg.set_content("Do you have vegetarian options?")
    msg.add_alternative('<p>Do you have <b>vegetarian</b> options?</p><script>alert("x")</script>'
                        '<img src="cid:logo123" onerror="alert(1)">', subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG\r\n\x1a\nfakepng", maintype="image", subtype="png", cid="<logo123>")
    return msg.as_bytes()


def with_attachment(size: int, mid="<att@mail.example.com>", filename="floor plan.pdf") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jane Customer <jane@example.com>"
    msg["To"] = BUSINESS
    msg["Subject"] = "Our backyard"
    msg["Message-ID"] = mid
    msg.set_content("Plan attached.")
    msg.add_attachment(b"%PDF-1.4\n" + b"x" * max(0, size - 9), maintype="application", subtype="pdf",
                       filename=filename)
    return msg.as_bytes()


def reply(*, mid, in_reply_to, references=(), frm="Jane Customer <jane@example.com>", subject="Re: Party",
          body="Saturday works.") -> bytes:
    headers = {"In-Reply-To": in_reply_to}
    if references:
        headers["References"] = " ".join(references)
    return plain(mid=mid, frm=frm, subject=subject, body=body, headers=headers)


def bounce(*, original_mid: str, recipient="gone@example.com", status="5.1.1", mid="<dsn1@mx.example.com>",
           others=()) -> bytes:
    """A delivery-status report; others: more (address, status) pairs it reports on, after recipient."""
    boundary = "dsn-boundary-42"
    blocks = "".join(
        f"\r\nFinal-Recipient: rfc822; {address}\r\nAction: {'failed' if code.startswith('5') else 'delayed'}\r\n"
        f"Status: {code}\r\nDiagnostic-Code: smtp; 550 {code} <{address}>: Recipient address rejected: User unknown\r\n"
        for address, code in [(recipient, status), *others]
    )
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\nTo: {BUSINESS}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: {mid}\r\nAuto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n"
        f"\r\n--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"I'm sorry to have to inform you that your message could not be delivered.\r\n"
        f"\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.com\r\n{blocks}"
        f"\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {BUSINESS}\r\nTo: {recipient}\r\nSubject: Re: Party\r\nMessage-ID: <{original_mid}>\r\n"
        f"\r\n--{boundary}--\r\n"
    ).encode()


def auto_reply(*, in_reply_to=None, mid="<ooo@mail.example.com>", frm="Jane Customer <jane@example.com>") -> bytes:
    headers = {"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"}
    if in_reply_to:
        headers["In-Reply-To"] = in_reply_to
    return plain(mid=mid, frm=frm, subject="Out of office", body="I am away until Monday.", headers=headers)


def list_mail(mid="<news@vendor.example.com>") -> bytes:
    return plain(mid=mid, frm="Vendor News <news@vendor.example.com>", subject="Weekly deals",
                 headers={"Precedence": "bulk", "List-Id": "<deals.vendor.example.com>"})


def broken_mime(mid="<broken@mail.example.com>") -> bytes:
    """multipart without its closing boundary, a part with invalid base64, a bogus charset."""
    return (
        f"From: Broken Sender <broken@example.com>\r\nTo: {BUSINESS}\r\nSubject: Broken\r\nMessage-ID: {mid}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n"
        "--XYZ\r\nContent-Type: text/plain; charset=x-unknown-charset\r\n\r\nHello from a broken mailer \xe9\r\n"
        "--XYZ\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "!!!not base64@@@\r\n"
    ).encode("latin-1")


def no_sender(mid="<nosender@mail.example.com>") -> bytes:
    return f"To: {BUSINESS}\r\nSubject: Who am I\r\nMessage-ID: {mid}\r\n\r\nNo From header at all.\r\n".encode()
