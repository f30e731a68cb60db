"""Polling one IMAP mailbox: only messages with a UID above the last stored one.

Never relies on \\Seen or dates (others read the same mailbox; outages last
days). Fetches with BODY.PEEK[] from a folder opened read-only (EXAMINE), so
no flag changes, no deletes; moving to a processed folder is an opt-in. The
last UID advances only after a message's database commit, so a poll killed at
any point loses nothing, and Message-ID dedupe makes the repeat exact. (Messages
are committed in groups of IMAP_COMMIT_EVERY together with the last UID: one
commit per group, not per message, and never one without the other. A group is
first stored in one go (ingest.store_emails: a few statements for the whole
group, no savepoint per message); if anything in it fails, it is rolled back
and stored again message by message, each in a savepoint, so only the failing
one is rejected.) A
UIDVALIDITY change re-scans the folder from the start (dedupe keeps it exact).

Memory is bounded by bytes, not by message counts: a FETCH asks for at most
IMAP_FETCH_MAX_BYTES of mail (by RFC822.SIZE, asked first), a message over
IMAP_LARGE_MESSAGE_BYTES is fetched, stored and committed on its own, and raw
bytes are dropped as soon as their group is committed. (Counts alone let one
FETCH of 100 messages of 50 MB each, parsed 25 at a time, get the worker
OOM-killed before the commit, on every poll again.)

What staff see of a failure (Mailbox.last_error, the admin's "Poll now"
message, the poll figures) is our own text, never the server's words or an
exception: a mailbox can point at any host and port, and those texts would
show what answers there. The details go to the log.
"""
import imaplib
import logging
import re
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inbox import services

from ..base import count
from .models import Mailbox
from .ingest import DUPLICATE, REJECTED, STORED, reject, store_email, store_emails
from .locks import mailbox_lock
from .parser import parse_email
from .passwords import PLAIN_TEXT_REFUSED, PasswordUnavailable, password_for, plain_text_allowed

logger = logging.getLogger(__name__)

UID_RE = re.compile(rb"UID (\d+)")
SIZE_RE = re.compile(rb"RFC822\.SIZE (\d+)")


CONNECT_FAILED = "Could not connect or log in to the mailbox server; the server log has the details."
SERVER_FAILED = "The mailbox server failed during the poll; the server log has the details."


class PollError(Exception):
    """str() is what staff see: our own words, never the server's (log the details where it is raised)."""


@dataclass
class PollStats:
    mailbox: str = ""
    new: int = 0
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    flagged: int = 0
    vanished: int = 0
    locked: bool = False
    uidvalidity_reset: bool = False
    finished: bool = False
    error: str = ""
    seconds: float = 0.0
    last_uid: int = 0
    rejected_reasons: list = field(default_factory=list)

    def as_dict(self):
        return asdict(self)


def quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def connect(mailbox: Mailbox) -> imaplib.IMAP4:
    """A logged-in connection. Nothing is sent anywhere before the password and the TLS mode pass."""
    if mailbox.tls == Mailbox.Tls.NONE and not plain_text_allowed():
        raise PollError(PLAIN_TEXT_REFUSED)
    try:
        password = password_for(mailbox)
    except PasswordUnavailable as exc:
        raise PollError(str(exc))
    timeout = settings.IMAP_TIMEOUT_SECONDS
    conn = None
    try:
        if mailbox.tls == Mailbox.Tls.IMPLICIT:
            conn = imaplib.IMAP4_SSL(mailbox.host, mailbox.port, ssl_context=ssl.create_default_context(),
                                     timeout=timeout)
        else:
            conn = imaplib.IMAP4(mailbox.host, mailbox.port, timeout=timeout)
            if mailbox.tls == Mailbox.Tls.STARTTLS:
                conn.starttls(ssl_context=ssl.create_default_context())
        conn.login(mailbox.username, password)
    except (imaplib.IMAP4.error, OSError, ssl.SSLError, UnicodeError) as exc:
        # UnicodeError: imaplib sends the username and password as ASCII; its text would quote a character.
        detail = "non-ASCII username or password" if isinstance(exc, UnicodeError) else exc
        logger.warning("mailbox %s: cannot connect or log in to %s:%s as %s: %s: %s", mailbox.name, mailbox.host,
                       mailbox.port, mailbox.username, type(exc).__name__, detail)
        if conn is not None:
            _close(conn)
        raise PollError(CONNECT_FAILED) from None
    return conn


def _close(conn) -> None:
    try:
        conn.shutdown()
    except (imaplib.IMAP4.error, OSError):
        logger.debug("closing the IMAP connection failed; dropped")


def _fetch(conn, uids, what: str) -> dict:
    """UID FETCH for a set of UIDs -> {uid: bytes literal or the response line}."""
    typ, data = conn.uid("FETCH", ",".join(str(u) for u in uids), what)
    if typ != "OK":
        logger.warning("UID FETCH %s failed: %r", what, data)
        raise PollError(SERVER_FAILED)
    found = {}
    for index, item in enumerate(data):
        head, body = (item[0], item[1]) if isinstance(item, tuple) else (item, None)
        match = UID_RE.search(head or b"")
        if match is None and body is not None and index + 1 < len(data) and isinstance(data[index + 1], bytes):
            match = UID_RE.search(data[index + 1])  # servers may send UID after the literal
        if match:
            found[int(match.group(1))] = body if body is not None else head
    return found


def poll(mailbox: Mailbox, *, progress=None, max_seconds: float | None = None) -> PollStats:
    """Poll once. Returns figures; never raises for server or message problems (they are in .error)."""
    stats = PollStats(mailbox=mailbox.name)
    lock = mailbox_lock(mailbox.pk)
    if not lock.acquire():
        stats.locked = True
        logger.info("mailbox %s is being polled by another worker; skipped", mailbox.name)
        return stats
    started = time.monotonic()
    try:
        _poll(mailbox, lock, stats, progress, None if max_seconds is None else started + max_seconds)
    except PollError as exc:
        stats.error = str(exc)
        logger.error("polling mailbox %s failed: %s", mailbox.name, exc)
    finally:
        stats.seconds = round(time.monotonic() - started, 3)
        lock.release()
        Mailbox.objects.filter(pk=mailbox.pk).update(
            last_polled_at=timezone.now(), last_poll_stats=stats.as_dict(), last_error=stats.error,
        )
        _count_outcomes(mailbox, stats)
    return stats


def _count_outcomes(mailbox, stats) -> None:
    """This poll's outcomes in the shared counts (manage.py channel_counts), per mailbox."""
    source = f"imap-{mailbox.name}"
    for outcome, n in (("accepted", stats.stored), ("duplicates", stats.duplicates),
                       ("rejected", stats.rejected), ("flagged", stats.flagged)):
        count(source, outcome, n)
    if stats.error:
        count(source, "failed_polls")


def _poll(mailbox, lock, stats, progress, deadline):
    conn = connect(mailbox)
    try:
        readonly = not mailbox.processed_folder
        if not readonly:
            conn.create(quote(mailbox.processed_folder))  # NO when it exists: fine
        typ, data = conn.select(quote(mailbox.folder), readonly=readonly)
        if typ != "OK":
            logger.warning("mailbox %s: cannot open folder %r: %r", mailbox.name, mailbox.folder, data)
            raise PollError(f"Cannot open the folder {mailbox.folder!r} on the mailbox server; "
                            "the server log has the details.")
        uidvalidity = _number(conn.response("UIDVALIDITY")[1], mailbox, "UIDVALIDITY")
        mailbox.refresh_from_db(fields=["uidvalidity", "last_uid"])
        if mailbox.uidvalidity != uidvalidity:
            if mailbox.uidvalidity is not None:
                stats.uidvalidity_reset = True
                logger.warning("mailbox %s: UIDVALIDITY changed (%s -> %s); re-scanning the folder",
                               mailbox.name, mailbox.uidvalidity, uidvalidity)
            Mailbox.objects.filter(pk=mailbox.pk).update(uidvalidity=uidvalidity, last_uid=0)
            mailbox.uidvalidity, mailbox.last_uid = uidvalidity, 0
        # "n:*" always includes the highest UID, even when it is not new: filter ourselves.
        typ, data = conn.uid("SEARCH", None, f"UID {mailbox.last_uid + 1}:*")
        if typ != "OK":
            logger.warning("mailbox %s: UID SEARCH failed: %r", mailbox.name, data)
            raise PollError(SERVER_FAILED)
        found = [_number([x], mailbox, "UID SEARCH") for x in (data[0] or b"").split()]
        uids = sorted(u for u in found if u > mailbox.last_uid)
        stats.new, stats.last_uid = len(uids), mailbox.last_uid
        move = _mover(conn, mailbox.processed_folder) if mailbox.processed_folder else None
        batch = max(1, settings.IMAP_FETCH_BATCH)
        for start in range(0, len(uids), batch):
            part = uids[start:start + batch]
            sizes = {uid: int(m.group(1)) for uid, line in _fetch(conn, part, "(UID RFC822.SIZE)").items()
                     if (m := SIZE_RE.search(line))}
            for chunk in fetch_chunks(part, sizes):
                _batch(conn, mailbox, uidvalidity, chunk, sizes, stats, move, progress)
                if not lock.renew():
                    raise PollError("lost the mailbox lock (the poll took longer than IMAP_LOCK_TTL_SECONDS); "
                                    "stopping")
                if deadline is not None and time.monotonic() > deadline:
                    logger.info("mailbox %s: time budget used; the next poll continues at UID %s",
                                mailbox.name, stats.last_uid + 1)
                    return
        stats.finished = True
    except (imaplib.IMAP4.error, OSError) as exc:
        logger.warning("mailbox %s: IMAP error on %s:%s: %s: %s", mailbox.name, mailbox.host, mailbox.port,
                       type(exc).__name__, exc)
        raise PollError(SERVER_FAILED) from None
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError, socket.error):
            logger.debug("logout from %s failed; connection dropped", mailbox.host)


def _number(values, mailbox, what) -> int:
    """The server's number (UIDVALIDITY, a UID); a server sending something else is a server failure."""
    try:
        return int(values[0])
    except (TypeError, ValueError, IndexError):
        logger.warning("mailbox %s: the server sent %r as %s", mailbox.name, values, what)
        raise PollError(SERVER_FAILED) from None


def fetch_chunks(uids, sizes):
    """Cut UIDs (in order) into the UID sets of one FETCH each, by their RFC822.SIZE.

    A chunk's sizes sum to at most IMAP_FETCH_MAX_BYTES; a message over
    IMAP_LARGE_MESSAGE_BYTES (or over the fetch budget) is a chunk of its own.
    A message over EMAIL_MAX_MESSAGE_BYTES costs nothing here: only its
    headers are fetched. A UID without a size (expunged meanwhile) costs nothing.
    """
    limit = settings.EMAIL_MAX_MESSAGE_BYTES
    budget = max(1, settings.IMAP_FETCH_MAX_BYTES)
    alone = min(settings.IMAP_LARGE_MESSAGE_BYTES, budget)
    chunk, total = [], 0
    for uid in uids:
        size = sizes.get(uid, 0)
        cost = 0 if size > limit else size
        if cost > alone:
            if chunk:
                yield chunk
            yield [uid]
            chunk, total = [], 0
            continue
        if chunk and total + cost > budget:
            yield chunk
            chunk, total = [], 0
        chunk.append(uid)
        total += cost
    if chunk:
        yield chunk


def _batch(conn, mailbox, uidvalidity, uids, sizes, stats, move, progress):
    """Fetch one chunk (see fetch_chunks) and store it in commit groups; its raw bytes go as each group commits."""
    limit = settings.EMAIL_MAX_MESSAGE_BYTES
    normal = [u for u in uids if sizes.get(u, 0) <= limit and u in sizes]
    huge = {u for u in uids if sizes.get(u, 0) > limit}
    bodies = _fetch(conn, normal, "(UID BODY.PEEK[])") if normal else {}
    if huge:
        bodies.update(_fetch(conn, sorted(huge), "(UID BODY.PEEK[HEADER])"))
    every = max(1, settings.IMAP_COMMIT_EVERY)
    for start in range(0, len(uids), every):
        group = uids[start:start + every]
        raws = {uid: bodies.pop(uid, None) for uid in group}
        oversize = {uid: sizes[uid] for uid in group if uid in huge}
        try:
            results = _commit_group(mailbox, uidvalidity, group, raws, oversize, isolated=False)
        except Exception as exc:
            # Something in the group failed and took the transaction with it (also another
            # worker storing the same message meanwhile): store the group again, each message
            # in a savepoint, so only the failing one is rejected and a duplicate is counted.
            logger.info("mailbox %s: storing UIDs %s-%s one by one after a failure (%s: %s)", mailbox.name,
                        group[0], group[-1], type(exc).__name__, exc)
            results = None
        if results is None:  # outside the except block: the failed attempt's parsed mail is freed first
            results = _commit_group(mailbox, uidvalidity, group, raws, oversize, isolated=True)
        raws.clear()  # stored and committed: the raw bytes can go before the next group is parsed
        stats.last_uid = group[-1]
        for uid, result in results:
            _count(stats, uid, result)
            if progress is not None:
                progress(stats)
        if move is not None:
            for uid, result in results:  # only after the commit
                if result is not None:
                    move(uid)


def _commit_group(mailbox, uidvalidity, group, raws, oversize, *, isolated) -> list:
    """Store a group and advance the last UID in one transaction; [(uid, IngestResult or None if vanished)].

    The messages and the last UID commit together: a crash before the commit
    keeps neither, so the next poll fetches exactly what is missing. Routing
    rules are read once per group; its events are published together after
    the commit.
    """
    present = [uid for uid in group if raws[uid] is not None]  # None: expunged between SEARCH and FETCH
    with services.receiving_in_bulk(), transaction.atomic():
        if isolated:
            stored = {uid: _store_one(raws[uid], mailbox, uid, oversize=oversize.get(uid)) for uid in present}
        else:
            # Fast path: the group in a handful of statements (see ingest.store_emails).
            emails = [(raws[uid], uid, oversize.get(uid)) for uid in present]
            stored = dict(zip(present, store_emails(emails, source="imap", mailbox=mailbox), strict=True))
        results = [(uid, stored.get(uid)) for uid in group]
        Mailbox.objects.filter(pk=mailbox.pk, uidvalidity=uidvalidity, last_uid__lt=group[-1]).update(
            last_uid=group[-1])
    return results


def _store_one(raw, mailbox, uid, *, oversize):
    try:
        with transaction.atomic():  # a savepoint: a failure undoes only this message
            return store_email(raw, source="imap", mailbox=mailbox, uid=uid, oversize=oversize)
    except Exception as exc:
        # One message's failure never stops the others: keep it raw and count it.
        # If even that fails (database down), the poll stops here without moving past it.
        logger.exception("mailbox %s UID %s could not be stored; keeping it as rejected", mailbox.name, uid)
        return reject(raw, parse_email(raw), source="imap", mailbox=mailbox, uid=uid,
                      reason=f"Could not be stored: {type(exc).__name__}: {exc}"[:1000])


def _count(stats, uid, result):
    if result is None:
        stats.vanished += 1
        return
    stats.fetched += 1
    if result.status == STORED:
        stats.stored += 1
        stats.flagged += int(result.flagged)
    elif result.status == DUPLICATE:
        stats.duplicates += 1
    elif result.status == REJECTED:
        stats.rejected += 1
        if len(stats.rejected_reasons) < 20:
            stats.rejected_reasons.append(f"UID {uid}: {result.reason}")


def _mover(conn, folder):
    # The greeting's list is pre-login; ask again now that we are logged in.
    typ, data = conn.capability()
    capabilities = {c.upper() for c in (data[0].decode().split() if typ == "OK" and data and data[0] else [])}

    def move(uid):
        if "MOVE" in capabilities:
            typ, data = conn.uid("MOVE", str(uid), quote(folder))
        else:
            typ, data = conn.uid("COPY", str(uid), quote(folder))
            if typ == "OK":
                conn.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
                if "UIDPLUS" in capabilities:
                    conn.uid("EXPUNGE", str(uid))
        if typ != "OK":
            logger.warning("could not move UID %s to %s: %r", uid, folder, data)

    return move
