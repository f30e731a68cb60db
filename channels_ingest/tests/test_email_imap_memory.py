"""Large mail and the IMAP poller's memory: a mailbox full of big attachments is
ingested by a worker that stays small, and a worker killed on a big message (as
the kernel's OOM killer would) keeps what it had stored before it."""
import base64
import hashlib
import os
import re
import subprocess
import sys

import pytest

from channels_ingest.email import ingest
from channels_ingest.email.imap import poll
from channels_ingest.models import Mailbox
from inbox.models import Message

from . import mails
from .conftest import make_mailbox

pytestmark = pytest.mark.dovecot
MB = 1024 * 1024


def emails():
    return Message.objects.filter(channel="email", direction="inbound")


def large(n: int, size: int) -> bytes:
    """A customer's email of about `size` bytes: a line of text and one base64 attachment (made cheaply)."""
    line = base64.b64encode(hashlib.sha512(b"%d" % n).digest()[:57]) + b"\r\n"  # 78 bytes, differs per email
    head = (
        f"From: Guest {n} <guest{n}@example.com>\r\nTo: {mails.BUSINESS}\r\nSubject: Photos of the venue {n}\r\n"
        f"Message-ID: <large{n}@mail.example.com>\r\nDate: Fri, 20 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="BOUNDARY"\r\n\r\n'
        "--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPhotos of the backyard attached.\r\n"
        f'--BOUNDARY\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename="venue{n}.zip"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    return head + line * max(1, (size - len(head)) // len(line)) + b"--BOUNDARY--\r\n"


@pytest.mark.parametrize("case", ["large-message", "fetch-budget"])
def test_a_worker_killed_on_big_mail_keeps_what_it_stored_before(mailbox, dovecot_server, monkeypatch, settings,
                                                                   case):
    # Small numbers stand in for the real ones (5 MB alone, 20 MB per FETCH): same rules, cheap mail.
    settings.IMAP_LARGE_MESSAGE_BYTES, settings.IMAP_FETCH_MAX_BYTES, settings.IMAP_COMMIT_EVERY = 100_000, 2_500, 25
    if case == "large-message":  # UID 3 is over IMAP_LARGE_MESSAGE_BYTES: fetched, stored, committed alone
        raws = [mails.plain(mid="<a1@mail.example.com>"), mails.plain(mid="<a2@mail.example.com>"),
                large(3, 300_000), mails.plain(mid="<a4@mail.example.com>")]
    else:  # ordinary mail, but a FETCH asks for at most 2,500 bytes of it: two of these per FETCH
        raws = [mails.plain(mid=f"<a{i}@mail.example.com>", body="x" * 600) for i in range(1, 7)]
    dovecot_server.append(mailbox.folder, *raws)
    real = ingest._metadata

    def killed_on_uid_3(parsed, **kwargs):
        if kwargs["uid"] == 3:
            raise KeyboardInterrupt("worker killed")  # like the OOM killer: nothing inside catches it
        return real(parsed, **kwargs)

    monkeypatch.setattr(ingest, "_metadata", killed_on_uid_3)
    with pytest.raises(KeyboardInterrupt):
        poll(mailbox)
    # What came before UID 3 was its own FETCH and committed with its last UID; only UID 3 is redone.
    assert emails().count() == 2
    mailbox.refresh_from_db()
    assert mailbox.last_uid == 2
    monkeypatch.setattr(ingest, "_metadata", real)
    stats = poll(mailbox)
    assert (stats.stored, stats.duplicates) == (len(raws) - 2, 0)
    assert emails().count() == len(raws)


def poll_in_a_worker(mailbox, media) -> tuple:
    """`manage.py poll_imap` in its own process, with the default limits: (exit code, output, peak RSS in MB)."""
    from django.conf import settings as django_settings
    from django.db import connection

    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
                                         f"{db['NAME']}",
           "MEDIA_ROOT": str(media), "LOG_LEVEL": "WARNING"}
    for name in ("IMAP_FETCH_BATCH", "IMAP_COMMIT_EVERY", "IMAP_FETCH_MAX_BYTES", "IMAP_LARGE_MESSAGE_BYTES",
                 "EMAIL_MAX_MESSAGE_BYTES", "EMAIL_ATTACHMENT_MAX_BYTES"):
        env.pop(name, None)  # the defaults are what is proven

    proc = subprocess.run([sys.executable, "-c", WORKER, mailbox.name], cwd=django_settings.BASE_DIR, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    output = proc.stdout.decode(errors="replace")
    peak = re.search(r"^VmHWM:\s+(\d+) kB", output, re.M)
    return proc.returncode, output, int(peak.group(1)) / 1024 if peak else float("inf")


# The worker reports its own peak (VmHWM, which starts afresh at exec). The rusage of a child counts
# the parent's memory at fork, and the test process has grown by hundreds of MB over a full run.
WORKER = """
import resource, sys
# A runaway worker fails with MemoryError instead of taking the machine with it.
resource.setrlimit(resource.RLIMIT_AS, (3 * 1024 ** 3, 3 * 1024 ** 3))
import django
django.setup()
from django.core.management import call_command
try:
    call_command("poll_imap", "--mailbox", sys.argv[1], "--quiet")
finally:
    print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")), flush=True)
"""


@pytest.mark.postgres  # the worker process and the test share one real database
@pytest.mark.django_db(transaction=True)
def test_a_mailbox_of_large_mail_is_ingested_by_a_worker_under_300_mb(dovecot_server, tmp_path):
    mailbox = make_mailbox(dovecot_server)
    sizes = [8, 16, 10, 14, 12, 16, 9, 15, 60]  # MB; 60 MB is over EMAIL_MAX_MESSAGE_BYTES: headers only
    for n, size in enumerate(sizes):
        dovecot_server.append(mailbox.folder, large(n, size * MB))
    returncode, output, peak_mb = poll_in_a_worker(mailbox, tmp_path / "media")
    print(f"poll_imap worker: peak RSS {peak_mb:.0f} MB for {sum(sizes)} MB of mail")  # shown with -s

    assert returncode == 0, output[-3000:]
    stored = Mailbox.objects.get(pk=mailbox.pk).last_poll_stats
    assert stored["stored"] == len(sizes) and stored["finished"], stored
    assert emails().count() == len(sizes)
    headers_only = emails().get(external_id="large8@mail.example.com")
    assert "only its headers were fetched" in headers_only.metadata["parse_error"]
    assert peak_mb <= 300, f"the worker peaked at {peak_mb:.0f} MB"


def blob(seed: int, size: int) -> bytes:
    """size bytes that differ per seed, made cheaply (a hashed block, repeated)."""
    block = hashlib.sha512(b"%d" % seed).digest() * 64  # 4 KiB
    return (block * (size // len(block) + 1))[:size]


def attachment(data: bytes, name: str, ctype="application/zip") -> bytes:
    return (f'Content-Type: {ctype}\r\nContent-Disposition: attachment; filename="{name}"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n").encode() + base64.encodebytes(data).replace(b"\n", b"\r\n")


def with_attachments(n: int, *parts: bytes) -> bytes:
    """A customer's email: a text, then the parts, the last ones nested in a multipart/related."""
    head = (
        f"From: Guest {n} <guest{n}@example.com>\r\nTo: {mails.BUSINESS}\r\nSubject: Videos of the venue {n}\r\n"
        f"Message-ID: <big{n}@mail.example.com>\r\nDate: Fri, 20 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="OUTER"\r\n\r\n'
        "--OUTER\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nVideos of the backyard attached.\r\n"
    ).encode()
    first, *nested = parts
    body = head + b"--OUTER\r\n" + first
    if nested:
        body += b'--OUTER\r\nContent-Type: multipart/related; boundary="INNER"\r\n\r\n'
        body += b"".join(b"--INNER\r\n" + p for p in nested) + b"--INNER--\r\n"
    return body + b"--OUTER--\r\n"


@pytest.mark.postgres  # the worker process and the test share one real database
@pytest.mark.django_db(transaction=True)
def test_mail_of_41_to_49_mb_is_ingested_under_300_mb_with_every_attachment_intact(dovecot_server, tmp_path):
    """Parsing took about 7 times a message (a 41 MB mail: a 450 MB worker); now little more than what it keeps."""
    mailbox = make_mailbox(dovecot_server)
    files = {  # Message-ID: {filename: bytes}; base64 in lines of 76 makes each mail 1.37 times its attachments
        "big1@mail.example.com": {"walkthrough.mp4": blob(1, 15 * MB), "floor.mov": blob(2, 15 * MB)},  # 41 MB
        "big2@mail.example.com": {"menu.mp4": blob(3, 24 * MB), "plan.pdf": blob(4, 12 * MB + 1)},  # 49 MB, just under EMAIL_MAX_MESSAGE_BYTES
        "big3@mail.example.com": {"drone.mov": blob(5, 30 * MB)},  # 41 MB; the video is over EMAIL_ATTACHMENT_MAX_BYTES
    }
    raws = [mails.plain(mid="<small1@mail.example.com>")]
    for n, (mid, attached) in enumerate(files.items(), start=1):
        raws += [with_attachments(n, *(attachment(data, name) for name, data in attached.items())),
                 mails.plain(mid=f"<small{n + 1}@mail.example.com>", body=f"And one more thing {n}")]
    assert [len(raw) // MB for raw in raws[1::2]] == [41, 49, 41]
    dovecot_server.append(mailbox.folder, *raws)
    del raws
    returncode, output, peak_mb = poll_in_a_worker(mailbox, tmp_path / "media")
    print(f"poll_imap worker: peak RSS {peak_mb:.0f} MB for mails of 41, 49 and 41 MB")  # shown with -s

    assert returncode == 0, output[-3000:]
    stats = Mailbox.objects.get(pk=mailbox.pk).last_poll_stats
    assert (stats["stored"], stats["flagged"], stats["finished"]) == (7, 0, True), stats
    for mid, attached in files.items():
        message = emails().get(external_id=mid)
        assert message.text == "Videos of the backyard attached."
        stored = {meta["filename"]: meta for meta in message.metadata["attachments"]}
        assert list(stored) == list(attached)
        for name, data in attached.items():
            meta = stored[name]
            assert (meta["content_type"], meta["size"]) == ("application/zip", len(data))
            if len(data) > 25 * MB:
                assert meta["too_large"] and "path" not in meta
                continue
            digest = hashlib.sha256(data).hexdigest()
            assert meta["sha256"] == digest
            assert hashlib.sha256((tmp_path / "media" / meta["path"]).read_bytes()).hexdigest() == digest
    assert peak_mb <= 300, f"the worker peaked at {peak_mb:.0f} MB"
