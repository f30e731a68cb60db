"""Polling a real Dovecot mailbox: what staff see in the inbox afterwards."""
import re
import threading

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command

from channels_ingest.email import ingest
from channels_ingest.email.imap import poll
from channels_ingest.models import Mailbox, RejectedEmail
from inbox.models import Conversation, Message

from . import mails
from .conftest import make_mailbox

pytestmark = pytest.mark.dovecot


def emails():
    return Message.objects.filter(channel="email", direction="inbound")


def test_new_mail_becomes_inbox_messages_once_and_the_server_is_left_untouched(mailbox, dovecot_server):
    dovecot_server.append(mailbox.folder, mails.plain(), mails.legacy_charset(), mails.shift_jis())

    stats = poll(mailbox)

    assert (stats.fetched, stats.stored, stats.duplicates, stats.rejected) == (3, 3, 0, 0)
    jane = emails().get(external_id="m1@mail.example.com")
    assert jane.subject == "Party for 12 guests" and "Saturday" in jane.text
    assert jane.customer.identities.get().value == "jane@example.com"
    assert jane.conversation.status == "open" and jane.conversation.is_unread
    renee = emails().get(external_id="latin@mail.example.fr")
    assert renee.subject == "Dîner à la maison" and "Crème brûlée" in renee.text
    assert renee.customer.first_name == "Renée"
    assert "十名" in emails().get(external_id="sjis@mail.example.jp").text
    # Nothing was marked read, moved or deleted on the server.
    conn = dovecot_server.client()
    conn.select(mailbox.folder, readonly=True)
    assert conn.search(None, "UNSEEN")[1][0].split() == [b"1", b"2", b"3"]
    conn.logout()
    mailbox.refresh_from_db()
    assert mailbox.last_uid == 3 and mailbox.last_poll_stats["stored"] == 3


def test_polling_again_fetches_only_new_mail(mailbox, dovecot_server):
    dovecot_server.append(mailbox.folder, mails.plain())
    poll(mailbox)
    again = poll(mailbox)
    assert (again.new, again.fetched, again.stored) == (0, 0, 0)
    dovecot_server.append(mailbox.folder, mails.plain(mid="<m2@mail.example.com>", body="One more thing"))
    third = poll(mailbox)
    assert (third.fetched, third.stored) == (1, 1)
    assert emails().count() == 2


def test_the_same_email_delivered_twice_is_stored_once(mailbox, dovecot_server):
    dovecot_server.append(mailbox.folder, mails.plain(), mails.plain())
    stats = poll(mailbox)
    assert (stats.stored, stats.duplicates) == (1, 1)
    assert emails().count() == 1


def test_missing_message_id_is_deduplicated_by_content(mailbox, dovecot_server):
    dovecot_server.append(mailbox.folder, mails.plain(mid=None), mails.plain(mid=None))
    stats = poll(mailbox)
    assert (stats.stored, stats.duplicates) == (1, 1)
    assert emails().get().external_id.startswith("sha256:")


def test_uidvalidity_change_rescans_without_duplicates(mailbox, dovecot_server):
    dovecot_server.append(mailbox.folder, mails.plain(), mails.plain(mid="<m2@mail.example.com>"))
    poll(mailbox)
    # The folder is re-created on the server: new UIDVALIDITY, UIDs start again at 1.
    conn = dovecot_server.client()
    conn.delete(mailbox.folder)
    conn.create(mailbox.folder)
    conn.logout()
    dovecot_server.append(mailbox.folder, mails.plain(), mails.plain(mid="<m3@mail.example.com>"))
    stats = poll(mailbox)
    assert stats.uidvalidity_reset and (stats.stored, stats.duplicates) == (1, 1)
    assert sorted(emails().values_list("external_id", flat=True)) == [
        "m1@mail.example.com", "m2@mail.example.com", "m3@mail.example.com"]


def test_hard_cases_are_kept_flagged_or_rejected_never_lost(mailbox, dovecot_server, settings):
    settings.EMAIL_ATTACHMENT_MAX_BYTES = 100_000
    dovecot_server.append(mailbox.folder, mails.broken_mime(), mails.with_attachment(300_000),
                          mails.with_attachment(5_000, mid="<small@mail.example.com>", filename="menu.pdf"),
                          mails.alternative(), mails.no_sender(), mails.plain(mid="<after@mail.example.com>"))
    stats = poll(mailbox)
    assert (stats.fetched, stats.stored, stats.rejected, stats.flagged) == (6, 5, 1, 1)

    broken = emails().get(external_id="broken@mail.example.com")
    assert "parse_error" in broken.metadata and "Hello from a broken mailer" in broken.text
    assert default_storage.open(broken.metadata["raw_path"]).read() == mails.broken_mime()

    [huge] = emails().get(external_id="att@mail.example.com").metadata["attachments"]
    assert huge["too_large"] and huge["size"] == 300_000 and "path" not in huge
    [small] = emails().get(external_id="small@mail.example.com").metadata["attachments"]
    assert default_storage.open(small["path"]).read().startswith(b"%PDF-1.4")

    alt = emails().get(external_id="alt@mail.example.com")
    assert "<b>vegetarian</b>" in alt.html and "<script>" not in alt.html and "onerror" not in alt.html
    assert alt.metadata["attachments"][0]["inline"]

    rejected = RejectedEmail.objects.get()
    assert "No usable sender" in rejected.reason
    assert default_storage.open(rejected.raw_path).read() == mails.no_sender()
    assert emails().filter(external_id="after@mail.example.com").exists(), "mail after a bad one is still stored"


def test_whole_message_over_the_size_limit_keeps_its_headers(mailbox, dovecot_server, settings):
    settings.EMAIL_MAX_MESSAGE_BYTES = 50_000
    dovecot_server.append(mailbox.folder, mails.with_attachment(200_000))
    stats = poll(mailbox)
    assert stats.stored == 1
    message = emails().get()
    assert message.subject == "Our backyard" and "over the 50,000-byte limit" in message.metadata["parse_error"]


def test_a_failure_storing_one_message_does_not_stop_the_rest(mailbox, dovecot_server, monkeypatch):
    dovecot_server.append(mailbox.folder, mails.plain(), mails.plain(mid="<m2@mail.example.com>"),
                          mails.plain(mid="<m3@mail.example.com>"))
    real = ingest._metadata  # every stored email passes here, on the group path and one by one

    def flaky(parsed, **kwargs):
        if kwargs["uid"] == 2:
            raise RuntimeError("disk full")
        return real(parsed, **kwargs)

    monkeypatch.setattr(ingest, "_metadata", flaky)
    stats = poll(mailbox)
    assert (stats.stored, stats.rejected) == (2, 1)
    assert "disk full" in RejectedEmail.objects.get().reason
    mailbox.refresh_from_db()
    assert mailbox.last_uid == 3


def test_a_commit_group_keeps_the_order_of_its_mail_in_a_few_queries(
        mailbox, dovecot_server, caplog, settings, django_assert_num_queries):
    group = [
        mails.plain(mid="<g1@mail.example.com>"),
        mails.plain(mid="<g2@mail.example.com>", frm="Tom <tom@example.com>"),
        # Answers g1 in the same group: threads under it once g1 is written.
        mails.reply(mid="<g3@mail.example.com>", in_reply_to="<g1@mail.example.com>", frm="Jane <jane@example.com>"),
        mails.plain(mid="<g1@mail.example.com>"),  # repeated in the same group
        mails.auto_reply(mid="<g4@mail.example.com>", frm="Ann <ann@example.com>"),  # opens nothing
        *[mails.plain(mid=f"<s{i}@mail.example.com>", frm=f"S{i} <s{i}@example.com>") for i in range(15)],
        *[mails.plain(mid=f"<t{i}@mail.example.com>", frm="Tom <tom@example.com>") for i in range(5)],
    ]
    dovecot_server.append(mailbox.folder, *group)
    # 62: the group's lookups and writes in three runs around the two messages that depend on
    # those before them (the reply, the auto-reply), each stored on its own (receive_message
    # alone takes ten queries per message, see test_services), a history insert for each run and
    # each of those two, and the poll's counted outcomes at the end. The same on PostgreSQL and
    # SQLite; what differs is the poll's lock (email/locks.py): with Redis it costs no query,
    # without Redis (the newcomer mode) it is a lease on the mailbox row, and taking it, renewing
    # it after the one batch and giving it back are three UPDATEs more.
    lock_queries = 0 if settings.REDIS_URL else 3
    with caplog.at_level("INFO"), django_assert_num_queries(62 + lock_queries):
        stats = poll(mailbox)
    assert (stats.fetched, stats.stored, stats.duplicates) == (25, 24, 1)
    assert "one by one" not in caplog.text, "the group was stored together, without falling back"
    first = emails().get(external_id="g1@mail.example.com")
    assert emails().get(external_id="g3@mail.example.com").conversation_id == first.conversation_id
    assert emails().get(external_id="g4@mail.example.com").conversation.status == "closed"
    tom = emails().get(external_id="g2@mail.example.com").conversation
    assert set(tom.messages.values_list("external_id", flat=True)) == {"g2@mail.example.com"} | {
        f"t{i}@mail.example.com" for i in range(5)}
    assert Conversation.objects.filter(status="open").count() == 17  # Jane, Tom and the fifteen


def test_a_message_stored_elsewhere_meanwhile_makes_the_group_fall_back_and_counts_it_once(
        mailbox, dovecot_server, monkeypatch, caplog):
    dovecot_server.append(mailbox.folder, mails.plain(), mails.plain(mid="<m2@mail.example.com>"))
    poll(mailbox)
    dovecot_server.append(mailbox.folder, mails.plain(mid="<m3@mail.example.com>"))
    Mailbox.objects.filter(pk=mailbox.pk).update(last_uid=0)
    # As if another worker stored m1 and m2 between our lookup and our insert: only the
    # database's unique constraint can tell, and the group must fall back, not fail or store twice.
    monkeypatch.setattr(ingest, "_stored_ids", lambda ids: set())
    with caplog.at_level("INFO"):
        stats = poll(Mailbox.objects.get(pk=mailbox.pk))
    assert "one by one after a failure (IntegrityError" in caplog.text
    assert (stats.fetched, stats.stored, stats.duplicates, stats.rejected) == (3, 1, 2, 0)
    assert sorted(emails().values_list("external_id", flat=True)) == [
        "m1@mail.example.com", "m2@mail.example.com", "m3@mail.example.com"]


def test_a_poll_killed_halfway_loses_nothing_and_duplicates_nothing(mailbox, dovecot_server, monkeypatch, settings):
    settings.IMAP_FETCH_BATCH, settings.IMAP_COMMIT_EVERY = 3, 2
    dovecot_server.append(mailbox.folder, *[mails.plain(mid=f"<k{i}@mail.example.com>", body=f"n{i}") for i in range(10)])
    real, calls = ingest._metadata, []

    def dies_after_four(parsed, **kwargs):
        calls.append(kwargs["uid"])
        if len(calls) == 5:
            raise KeyboardInterrupt("worker killed")  # not an Exception: nothing inside catches it
        return real(parsed, **kwargs)

    monkeypatch.setattr(ingest, "_metadata", dies_after_four)
    with pytest.raises(KeyboardInterrupt):
        poll(mailbox)
    # Fetch batches of 3, commits of 2: UIDs 1-2 and 3 committed; 4 was rolled back with its group.
    assert emails().count() == 3
    mailbox.refresh_from_db()
    assert mailbox.last_uid == 3
    monkeypatch.setattr(ingest, "_metadata", real)
    stats = poll(mailbox)  # the lock was released on the way out
    assert (stats.stored, stats.duplicates) == (7, 0)
    assert sorted(emails().values_list("external_id", flat=True)) == sorted(f"k{i}@mail.example.com" for i in range(10))


@pytest.mark.postgres  # SQLite's shared in-memory test database cannot take two writers at once
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lock", ["lease", pytest.param("redis", marks=pytest.mark.redis)])
def test_two_workers_at_once_store_each_email_once(dovecot_server, settings, lock):
    if lock == "lease":
        settings.REDIS_URL = None  # the database lease that guards installations without Redis
    mailbox = make_mailbox(dovecot_server)
    dovecot_server.append(mailbox.folder, *[mails.plain(mid=f"<w{i}@mail.example.com>", body=f"n{i}") for i in range(20)])
    results, barrier = [], threading.Barrier(2)

    def worker():
        from django.db import connection

        barrier.wait()
        try:
            results.append(poll(Mailbox.objects.get(pk=mailbox.pk)))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert sum(r.stored for r in results) == 20
    assert emails().count() == 20
    assert sorted(r.locked for r in results) in ([False, False], [False, True])


def test_two_pollers_without_the_lock_still_store_once(mailbox, dovecot_server, monkeypatch):
    # Even if the lock were broken, Message-ID dedupe keeps the result exact.
    dovecot_server.append(mailbox.folder, mails.plain(), mails.plain(mid="<m2@mail.example.com>"))
    poll(mailbox)
    Mailbox.objects.filter(pk=mailbox.pk).update(last_uid=0)
    stats = poll(Mailbox.objects.get(pk=mailbox.pk))
    assert (stats.fetched, stats.stored, stats.duplicates) == (2, 0, 2)
    assert emails().count() == 2


def test_a_locked_mailbox_is_skipped(mailbox, dovecot_server):
    from channels_ingest.email.locks import mailbox_lock

    dovecot_server.append(mailbox.folder, mails.plain())
    held = mailbox_lock(mailbox.pk)
    assert held.acquire()
    try:
        assert poll(mailbox).locked
        assert emails().count() == 0
    finally:
        held.release()
    assert poll(mailbox).stored == 1


def test_processed_folder_is_opt_in_and_moves_stored_mail(db, dovecot_server):
    mailbox = make_mailbox(dovecot_server, processed_folder="Processed")
    dovecot_server.append(mailbox.folder, mails.plain())
    assert poll(mailbox).stored == 1
    conn = dovecot_server.client()
    assert conn.select(mailbox.folder, readonly=True)[1][0] == b"0"
    assert conn.select("Processed", readonly=True)[1][0] != b"0"
    conn.logout()


def test_wrong_password_is_reported_not_raised(mailbox, caplog):
    from channels_ingest.email.passwords import encrypt

    mailbox.password_encrypted = encrypt("wrong")
    mailbox.save()
    stats = poll(mailbox)
    assert "Could not connect or log in" in stats.error
    mailbox.refresh_from_db()
    assert "Could not connect or log in" in mailbox.last_error
    assert "AUTHENTICATIONFAILED" not in mailbox.last_error  # the server's words are for the log
    assert "AUTHENTICATIONFAILED" in caplog.text


def test_poll_imap_command_prints_the_figures(mailbox, dovecot_server, capsys):
    dovecot_server.append(mailbox.folder, mails.plain(), mails.plain(), mails.no_sender())
    call_command("poll_imap", "--mailbox", mailbox.name)
    out = capsys.readouterr().out
    assert "fetched 3, stored 1, duplicates 1, rejected 1" in out
    assert "3/3" in out  # progress line
    call_command("channel_counts", "--source", f"imap-{mailbox.name}")
    counts = capsys.readouterr().out
    assert re.search(r"accepted\s+1\s+1", counts) and re.search(r"rejected\s+1\s+1", counts)


def test_poll_imap_command_with_a_url_remembers_where_it_stopped(db, dovecot_server, capsys):
    folder = dovecot_server.new_folder()
    dovecot_server.append(folder, mails.plain())
    url = f"imap://user%40example.test:secret@127.0.0.1:{dovecot_server.port}/{folder}"
    call_command("poll_imap", "--url", url, "--quiet")
    call_command("poll_imap", "--url", url, "--quiet")
    out = capsys.readouterr().out
    assert "fetched 1, stored 1" in out and "fetched 0, stored 0" in out
    assert emails().count() == 1
    assert not Mailbox.objects.get().active  # never picked up by the beat task by accident


def test_beat_task_polls_every_active_mailbox(mailbox, dovecot_server, db):
    from channels_ingest.tasks import poll_all_mailboxes

    dovecot_server.append(mailbox.folder, mails.plain())
    assert poll_all_mailboxes() == 1
    assert emails().count() == 1
    assert Conversation.objects.count() == 1


@pytest.mark.postgres  # the killed process and the test share one real database
@pytest.mark.django_db(transaction=True)
def test_a_poll_process_killed_mid_poll_then_polled_again_stores_everything_once(dovecot_server, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from django.conf import settings as django_settings
    from django.db import connection

    mailbox = make_mailbox(dovecot_server)
    total = 300
    dovecot_server.append(mailbox.folder, *[mails.plain(mid=f"<kill{i}@mail.example.com>", body=f"n{i}")
                                            for i in range(total)])
    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
                                         f"{db['NAME']}",
           "IMAP_LOCK_TTL_SECONDS": "2", "IMAP_FETCH_BATCH": "10", "IMAP_COMMIT_EVERY": "5",
           "MEDIA_ROOT": str(tmp_path / "media")}
    proc = subprocess.Popen([sys.executable, "manage.py", "poll_imap", "--mailbox", mailbox.name, "--progress-every", "10"],
                            cwd=django_settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for line in proc.stdout:
            if b"/300" in line and int(line.split(b"(stored ")[1].split(b",")[0]) >= 40:
                proc.send_signal(signal.SIGKILL)  # no cleanup, no lock release: a worker dying for real
                break
    finally:
        proc.wait(30)
    stored_before = emails().count()
    assert 0 < stored_before < total, "the kill should land mid-poll"
    import time

    time.sleep(2.5)  # the dead worker's lock expires after its TTL
    stats = poll(Mailbox.objects.get(pk=mailbox.pk))
    assert stats.stored + stored_before == total
    assert stats.duplicates == 0  # messages and their last UID commit together
    assert emails().count() == total
    assert set(emails().values_list("external_id", flat=True)) == {f"kill{i}@mail.example.com" for i in range(total)}
