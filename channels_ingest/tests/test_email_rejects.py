"""An email we cannot store is kept raw exactly once, however often and
however concurrently it is fetched or posted (RejectedEmail's constraints)."""
import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from channels_ingest.email import ingest
from channels_ingest.email import services as email_services
from channels_ingest.email.parser import parse_email
from channels_ingest.models import Mailbox, RejectedEmail
from tests.concurrency import race

from . import mails


def _mailbox(name="sales"):
    return Mailbox.objects.create(name=name, host="imap.example.com", username="sales@myhibachi.test")


def _reject(raw, mailbox, reason="No usable sender"):
    source = "imap" if mailbox else "sendgrid-inbound"
    return ingest.reject(raw, parse_email(raw), source=source, mailbox=mailbox, uid=7 if mailbox else None,
                         reason=reason)


@pytest.mark.django_db
@pytest.mark.parametrize("with_mailbox", [True, False], ids=["imap", "webhook"])
def test_an_email_rejected_again_keeps_its_first_row(with_mailbox):
    mailbox = _mailbox() if with_mailbox else None
    raw = mails.no_sender()
    first = _reject(raw, mailbox)
    again = _reject(raw, mailbox, reason="fetched again")
    assert first.status == again.status == ingest.REJECTED
    kept = RejectedEmail.objects.get()
    assert (kept.reason, kept.mailbox, kept.size) == ("No usable sender", mailbox, len(raw))
    assert default_storage.open(kept.raw_path).read() == raw


@pytest.mark.django_db
def test_the_same_email_in_two_mailboxes_is_kept_for_each():
    raw = mails.no_sender()
    _reject(raw, _mailbox("sales"))
    _reject(raw, _mailbox("events"))
    assert RejectedEmail.objects.count() == 2


@pytest.mark.django_db
def test_a_row_written_by_another_worker_between_check_and_insert_is_not_doubled(monkeypatch):
    """The window the old read-then-write left open: the other worker commits first."""
    raw, mailbox = mails.no_sender(), _mailbox()
    real_save = email_services.save_raw

    def other_worker_wins(data):
        RejectedEmail.objects.create(source="imap", mailbox=mailbox, message_id=parse_email(raw).message_id,
                                     reason="by the other worker")
        return real_save(data)

    monkeypatch.setattr(email_services, "save_raw", other_worker_wins)
    result = _reject(raw, mailbox)
    assert result.status == ingest.REJECTED
    assert list(RejectedEmail.objects.values_list("reason", flat=True)) == ["by the other worker"]


@pytest.mark.postgres  # real concurrent connections
@pytest.mark.django_db(transaction=True)
def test_six_workers_rejecting_one_email_at_once_keep_one_row():
    mailbox, raw = _mailbox(), mails.no_sender()
    results = race(6, lambda i: _reject(raw, mailbox))
    assert {r.status for r in results} == {ingest.REJECTED}
    assert RejectedEmail.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_oldest_of_rows_already_doubled():
    executor = MigrationExecutor(connection)
    before = [("channels_ingest", "0001_initial")]
    executor.migrate(before)
    try:
        apps = executor.loader.project_state(before).apps
        Old = apps.get_model("channels_ingest", "RejectedEmail")
        OldMailbox = apps.get_model("channels_ingest", "Mailbox")
        box = OldMailbox.objects.create(name="sales", host="imap.example.com", username="s")
        first = Old.objects.create(source="imap", mailbox=box, message_id="<a@x>", reason="first")
        Old.objects.create(source="imap", mailbox=box, message_id="<a@x>", reason="second")
        hook = Old.objects.create(source="sendgrid-inbound", message_id="<b@x>", reason="first")
        Old.objects.create(source="sendgrid-inbound", message_id="<b@x>", reason="second")
        orphan = Old.objects.create(source="imap", mailbox=None, message_id="<a@x>", reason="deleted mailbox")
    finally:
        # Forward through 0002 (the migration under test) to the newest state: stopping at 0002 would
        # leave the tables of every later migration missing for the tests that run after this one.
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert set(RejectedEmail.objects.values_list("pk", flat=True)) == {first.pk, hook.pk, orphan.pk}
