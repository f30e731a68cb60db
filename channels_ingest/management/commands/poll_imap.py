"""Run one IMAP poll now and print what happened."""
import sys
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.management.base import BaseCommand, CommandError

from channels_ingest.email import passwords
from channels_ingest.email.imap import poll
from channels_ingest.models import Mailbox


def mailbox_from_url(url: str) -> Mailbox:
    """imap[s]://user:pass@host:port/FOLDER[?tls=starttls] -> a saved, inactive Mailbox that keeps its own UID state."""
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
        raise CommandError("Use --url imaps://user:password@host:993/INBOX (imap:// for plain or ?tls=starttls).")
    tls = Mailbox.Tls.IMPLICIT if parts.scheme == "imaps" else Mailbox.Tls.NONE
    if parse_qs(parts.query).get("tls") == ["starttls"]:
        tls = Mailbox.Tls.STARTTLS
    port = parts.port or (993 if tls == Mailbox.Tls.IMPLICIT else 143)
    username, folder = unquote(parts.username), unquote(parts.path.lstrip("/")) or "INBOX"
    name = f"url-{username}-{parts.hostname}-{port}-{folder}".replace("@", "-at-")
    name = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:80]
    mailbox, _ = Mailbox.objects.update_or_create(
        name=name,
        defaults={"host": parts.hostname, "port": port, "tls": tls, "username": username, "folder": folder,
                  "password_env": "", "password_encrypted": passwords.encrypt(unquote(parts.password or "")),
                  "active": False},
    )
    return mailbox


class Command(BaseCommand):
    help = (
        "Poll IMAP now: every active mailbox, one by --mailbox NAME, or an ad-hoc one by --url "
        "imaps://user:pass@host:993/INBOX (remembered, inactive, so a second run fetches only new mail). "
        "Prints fetched / stored / duplicates / rejected. Safe to run while Celery polls: the mailbox lock "
        "makes one of them wait for the next round. A failure prints the same short error staff see in the "
        "admin; its details (the server's words, the exception) are in the log lines on stderr. imap:// "
        "(no TLS) logs in only with DEBUG=1 or IMAP_ALLOW_PLAINTEXT=1."
    )

    def add_arguments(self, parser):
        parser.add_argument("--mailbox", help="Name of a Mailbox (see the admin).")
        parser.add_argument("--url", help="imap[s]://user:pass@host:port/FOLDER")
        parser.add_argument("--quiet", action="store_true", help="No progress lines, only the summary.")
        parser.add_argument("--progress-every", type=int, default=100, metavar="N",
                            help="Print a progress line every N messages (default 100).")

    def handle(self, *args, **options):
        if options["url"]:
            mailboxes = [mailbox_from_url(options["url"])]
        elif options["mailbox"]:
            mailbox = Mailbox.objects.filter(name=options["mailbox"]).first()
            if mailbox is None:
                names = ", ".join(Mailbox.objects.values_list("name", flat=True)) or "none yet"
                raise CommandError(f"No mailbox named {options['mailbox']!r} (known: {names}).")
            mailboxes = [mailbox]
        else:
            mailboxes = list(Mailbox.objects.filter(active=True))
            if not mailboxes:
                raise CommandError("No active mailboxes. Add one in the admin, or use --mailbox/--url.")
        self.every = max(1, options["progress_every"])
        failed = False
        for mailbox in mailboxes:
            stats = poll(mailbox, progress=None if options["quiet"] else self._progress)
            failed |= self._summary(stats)
        if failed:
            sys.exit(1)

    def _progress(self, stats):
        done = stats.fetched + stats.vanished
        if done % self.every == 0 or done == stats.new:
            self.stdout.write(f"  {stats.mailbox}: {done}/{stats.new} (stored {stats.stored}, "
                              f"duplicates {stats.duplicates}, rejected {stats.rejected})")
            self.stdout.flush()

    def _summary(self, stats) -> bool:
        if stats.locked:
            self.stdout.write(self.style.WARNING(f"{stats.mailbox}: being polled by another worker; skipped."))
            return False
        line = (f"{stats.mailbox}: fetched {stats.fetched}, stored {stats.stored}, duplicates {stats.duplicates}, "
                f"rejected {stats.rejected}, flagged {stats.flagged} in {stats.seconds:.1f}s; last UID {stats.last_uid}")
        self.stdout.write(self.style.SUCCESS(line) if not stats.error else line)
        for reason in stats.rejected_reasons:
            self.stdout.write(f"  rejected {reason}")
        if stats.uidvalidity_reset:
            self.stdout.write(self.style.WARNING("  UIDVALIDITY changed: the folder was re-scanned (no duplicates)."))
        if stats.error:
            self.stderr.write(self.style.ERROR(f"  error: {stats.error}"))
            return True
        return False
