"""Large mail and the IMAP poller's memory: a mailbox full of big attachments is
ingested by a worker that stays small, and a worker killed on a big message (as
the kernel's OOM killer would) keeps what it had stored before it."""
import base64
import hashlib
import os
import resource
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


@pytest.mark.postgres  # the worker process and the test share one real database
@pytest.mark.django_db(transaction=True)
def test_a_mailbox_of_large_mail_is_ingested_by_a_worker_under_300_mb(dovecot_server, tmp_path):
    from django.conf import settings as django_settings
    from django.db import connection

    mailbox = make_mailbox(dovecot_server)
    sizes = [8, 16, 10, 14, 12, 16, 9, 15, 60]  # MB; 60 MB is over EMAIL_MAX_MESSAGE_BYTES: headers only
    for n, size in enumerate(sizes):
        dovecot_server.append(mailbox.folder, large(n, size * MB))
    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
                                         f"{db['NAME']}",
           "MEDIA_ROOT": str(tmp_path / "media"), "LOG_LEVEL": "WARNING"}
    for name in ("IMAP_FETCH_BATCH", "IMAP_COMMIT_EVERY", "IMAP_FETCH_MAX_BYTES", "IMAP_LARGE_MESSAGE_BYTES",
                 "EMAIL_MAX_MESSAGE_BYTES", "EMAIL_ATTACHMENT_MAX_BYTES"):
        env.pop(name, None)  # the defaults are what is proven

    def guard():  # a runaway worker fails with MemoryError instead of taking the machine with it
        resource.setrlimit(resource.RLIMIT_AS, (3 * 1024 * MB, 3 * 1024 * MB))

    proc = subprocess.Popen([sys.executable, "manage.py", "poll_imap", "--mailbox", mailbox.name, "--quiet"],
                            cwd=django_settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=guard)
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    print(f"poll_imap worker: peak RSS {peak_mb:.0f} MB for {sum(sizes)} MB of mail")  # shown with -s

    assert proc.returncode == 0, output[-3000:]
    stored = Mailbox.objects.get(pk=mailbox.pk).last_poll_stats
    assert stored["stored"] == len(sizes) and stored["finished"], stored
    assert emails().count() == len(sizes)
    headers_only = emails().get(external_id="large8@mail.example.com")
    assert "only its headers were fetched" in headers_only.metadata["parse_error"]
    assert peak_mb <= 300, f"the worker peaked at {peak_mb:.0f} MB"
