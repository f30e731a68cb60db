"""Every read of the inbox used by the API and the staff screens.

Each returns rows with their related objects already loaded, so the number of
queries does not grow with the page size.
"""
import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.db.models.fields.json import KT, KeyTransform
from django.utils.dateparse import parse_datetime

from crm import identity
from crm.models import Booking, Customer, CustomerIdentity
from myhibachi.ids import parse_id

from . import channels, rows, search, sql
from .errors import BadCursor  # noqa: F401  (selectors.BadCursor is what callers catch)
from .sql import table
from .models import Conversation, ConversationActivity, InboxEvent, Message, Note, Tag

Status = Conversation.Status
STATUS_COUNTS_KEY = "inbox:status-counts"
SEARCH_CANDIDATES = 500  # most recent matching rows (per kind) ranked per search
SEARCH_RECENT_ROWS = 10_000  # newest rows scanned directly before the GIN index is asked (_newest_matches)




# --- cursors ---------------------------------------------------------------

def encode_cursor(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


MAX_CURSOR_LENGTH = 300  # the cursors this server gives out are under 100 characters


def decode_cursor(raw: str) -> dict:
    if len(raw) > MAX_CURSOR_LENGTH:
        raise BadCursor("The cursor is not one this server gave out.")
    try:
        padded = raw + "=" * (-len(raw) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise BadCursor("The cursor is not one this server gave out.")
    if not isinstance(data, dict):
        raise BadCursor("The cursor is not one this server gave out.")
    return data


def _cursor_time(data, key="t") -> datetime:
    """The cursor's time (aware, representable in UTC) after checking its row id."""
    try:
        parse_id(data.get("id"))
        value = parse_datetime(str(data.get(key, "")))  # ValueError: "2026-02-31T00:00:00" matches but is no date
        if value is None or value.tzinfo is None:
            raise ValueError("not an aware date and time")
        value.astimezone(dt_timezone.utc)  # OverflowError: year 1 at +05:00 is before year 1 in UTC
    except (ValueError, OverflowError):
        raise BadCursor("The cursor is not one this server gave out.")
    return value


# --- the inbox list ----------------------------------------------------------

def conversations_for_list():
    """The conversations a list shows (filter with filter_conversations, read with the page readers)."""
    return Conversation.objects.all()


def list_row(pk: int) -> rows.ConversationRow:
    """One row of the list, loaded as the list loads it (Conversation.DoesNotExist if unknown)."""
    found = rows.load(Conversation.objects.filter(pk=pk))
    if not found:
        raise Conversation.DoesNotExist(f"No conversation {pk}.")
    return found[0]


def filter_conversations(qs, *, user, status=None, channel=None, assignee=None, customer=None, tag=None,
                         created_after=None, created_before=None, active_after=None, active_before=None):
    if status and status != "all":
        qs = qs.filter(status=status)
    if channel:
        qs = qs.filter(Exists(Message.objects.filter(conversation=OuterRef("pk"), channel=channel)))
    if assignee == "me":
        qs = qs.filter(assignee=user)
    elif assignee == "unassigned":
        qs = qs.filter(assignee__isnull=True)
    elif assignee:
        qs = qs.filter(assignee_id=assignee)
    if customer:
        qs = qs.filter(customer_id=customer)
    if tag:
        qs = qs.filter(tags__name=tag)
    if created_after:
        qs = qs.filter(created_at__gte=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    if active_after:
        qs = qs.filter(last_activity_at__gte=active_after)
    if active_before:
        qs = qs.filter(last_activity_at__lt=active_before)
    return qs


@dataclass
class Page:
    rows: list  # of rows.ConversationRow
    next_cursor: str | None


def _older_than(field: str, at, pk: int) -> Q:
    """Rows before (at, pk) in (field, id) order, newest first.

    The first condition repeats what the other two imply: it is the bound
    PostgreSQL can start an index scan at. Without it the OR is only a
    filter, and page N of a keyset walk read every row of pages 1..N again
    (100,000 rows deep: 11 ms of scanning for 25 rows).
    """
    return Q(**{f"{field}__lte": at}) & (Q(**{f"{field}__lt": at}) | Q(**{field: at, "id__lt": pk}))


def page_by_activity(qs, *, size: int, cursor: str | None = None) -> Page:
    """Keyset pagination, newest activity first: constant cost on any page."""
    qs = qs.order_by("-last_activity_at", "-id")
    if cursor:
        data = decode_cursor(cursor)
        at = _cursor_time(data)
        qs = qs.filter(_older_than("last_activity_at", at, data["id"]))
    found = rows.load(qs[: size + 1])
    next_cursor = None
    if len(found) > size:
        found = found[:size]
        last = found[-1]
        next_cursor = encode_cursor({"t": last.last_activity_at.isoformat(), "id": last.pk})
    return Page(found, next_cursor)


def status_counts(cached=None) -> dict:
    """Conversations per status (the "Inbox (12 Open)" badge).

    Cached briefly and dropped by every write that changes a status, so it
    stays exact while a 200,000-row count is not paid on every page view.
    cached: what the caller already read from the cache under STATUS_COUNTS_KEY.
    """
    counts = cached if cached is not None else cache.get(STATUS_COUNTS_KEY)
    if counts is None:
        counts = {s: 0 for s in Status.values}
        for row in Conversation.objects.order_by().values("status").annotate(n=Count("id")):
            counts[row["status"]] = row["n"]
        counts["all"] = sum(counts[s] for s in Status.values)
        cache.set(STATUS_COUNTS_KEY, counts, timeout=60)
    return counts


COUNT_CAP = 1000  # a narrowed list counts each status up to this, then shows "1000+"


COUNTS_GENERATION_KEY = "inbox:counts-generation"  # bumped by every status change: drops filtered counts
FILTERED_COUNTS_SECONDS = 10


def list_counts(qs, *, search_ids: list | None = None, cache_key: str = "") -> dict:
    """Conversations per status (and "all") among qs: the list's filters without
    its status, so the tabs are facets of what is filtered and searched.

    With search_ids (a search's hits, at most a few hundred) the counts are
    exact; otherwise each status is counted up to COUNT_CAP + 1 rows, in one
    statement that stops reading there ("all" is capped when any status is). A
    status with fewer matches is read in full: 30-50 ms for a channel filter at
    36,000 conversations (docs/benchmarks.md). The unfiltered list uses
    status_counts() instead.

    With cache_key (the filters, and the user for "mine") they are kept
    FILTERED_COUNTS_SECONDS and shared by every agent with those filters: a
    live event makes each open list ask for its counts. A status change drops
    them at once; an assignment or a new message shows within those seconds.
    """
    if search_ids is not None:
        counts = {s: 0 for s in Status.values}
        for row in qs.filter(pk__in=search_ids).order_by().values("status").annotate(n=Count("id")):
            counts[row["status"]] = row["n"]
        counts["all"] = sum(counts[s] for s in Status.values)
        return counts
    key = None
    if cache_key:
        key = f"inbox:filtered-counts:{cache.get_or_set(COUNTS_GENERATION_KEY, 0)}:{cache_key}"
        counts = cache.get(key)
        if counts is not None:
            return counts
    counts = sql.capped_counts({s: qs.filter(status=s) for s in Status.values}, cap=COUNT_CAP)
    total = sum(counts[s] for s in Status.values)
    counts["all"] = COUNT_CAP + 1 if any(counts[s] > COUNT_CAP for s in Status.values) else total
    if key:
        cache.set(key, counts, timeout=FILTERED_COUNTS_SECONDS)
    return counts


def forget_status_counts() -> None:
    cache.delete(STATUS_COUNTS_KEY)
    try:
        cache.incr(COUNTS_GENERATION_KEY)
    except ValueError:  # not set yet: nothing cached under it
        pass


def status_counts_changed() -> None:
    """A write changed a status count: drop the cached counts now, so this
    request sees its own change, and again on commit, so a reader that cached
    the old counts mid-transaction cannot keep them."""
    forget_status_counts()
    transaction.on_commit(forget_status_counts)


# --- full-text search --------------------------------------------------------

WORD = re.compile(r"\w+", re.UNICODE)


def to_tsquery(text: str) -> str:
    """User text -> a safe raw tsquery: words AND-ed, "quoted phrases" as
    phrases, a trailing * as a prefix. Only word characters pass through, so
    nothing the user types can break the query syntax."""
    parts = []
    for token in re.findall(r'"[^"]*"|\S+', text):
        if token.startswith('"'):
            words = WORD.findall(token)
            if words:
                parts.append("(" + " <-> ".join(words) + ")")
            continue
        words = WORD.findall(token)
        if not words:
            continue
        term = " & ".join(words)
        if token.endswith("*"):
            term = " & ".join(words[:-1] + [words[-1] + ":*"])
        parts.append(term)
    return " & ".join(parts)


def _identity_matches(text: str):
    text = text.strip()
    if "@" in text:
        return CustomerIdentity.objects.filter(kind="email", value__startswith=text.lower())
    digits = re.sub(r"\D", "", text)
    if len(digits) >= 4 and re.fullmatch(r"[\d\s()+.\-]+", text):
        try:
            return CustomerIdentity.objects.filter(kind="phone", value=identity.normalize_phone(text))
        except ValidationError:  # not a whole number: look for the digits inside stored numbers
            return CustomerIdentity.objects.filter(kind="phone", value__contains=digits)
    return None


def search_conversation_ids(text: str, *, limit: int = 200) -> list[int]:
    """Conversation ids matching the text, best first.

    Looks in message text and subjects, notes, customer names, emails and
    phone numbers. On PostgreSQL it uses the stored search vectors (GIN) and
    ranks the most recent matches; on SQLite it falls back to simple
    substring matching, newest first.
    """
    text = (text or "").strip()[:200]
    if not text:
        return []
    scores: dict[int, float] = {}
    identities = _identity_matches(text)
    if identities is not None:
        customer_ids = identities.values("customer_id")
        for conv_id in (Conversation.objects.filter(customer_id__in=customer_ids)
                        .order_by("-last_activity_at").values_list("id", flat=True)[:limit]):
            scores[conv_id] = 10.0
    if connection.vendor == "postgresql":
        _search_postgres(text, scores)
    else:
        _search_simple(text, scores, limit)
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    return [conv_id for conv_id, _ in ranked[:limit]]


def _search_postgres(text, scores):
    raw = to_tsquery(text)
    if not raw:
        return
    with connection.cursor() as cursor:
        for model in (Message, Note):
            for conv_id, rank in _newest_matches(cursor, model, raw):
                scores[conv_id] = max(scores.get(conv_id, 0.0), rank)
        cursor.execute(_CUSTOMER_CONVERSATIONS_SQL.format(
            conversation=table(Conversation), customer=table(Customer)),
            {"query": raw, "limit": SEARCH_CANDIDATES})
        for (conv_id,) in cursor.fetchall():
            scores[conv_id] = max(scores.get(conv_id, 0.0), 1.0)


# The search statements are written out because each steers the planner in a
# way the ORM cannot say; every one was checked with EXPLAIN ANALYZE at one
# million messages (bench/bench_inbox.py).
#
# The newest SEARCH_RECENT_ROWS rows, read newest first, the text test applied
# to each: a common word or phrase fills the candidates within a few thousand
# rows. OFFSET 0 keeps the inner scan planned on its own, so the planner cannot
# turn the text test into a GIN bitmap of every posting of a common word
# (tens of thousands at a million messages, each rechecked for a phrase:
# ~0.8 s instead of ~5 ms).
_NEWEST_SQL = """
SELECT recent.conversation_id, ts_rank(recent.search_vector, query)
FROM (SELECT id, conversation_id, search_vector FROM {table}
      WHERE id > (SELECT MAX(id) FROM {table}) - %(recent)s
      ORDER BY id DESC
      OFFSET 0) AS recent,
     to_tsquery('english', %(query)s) AS query
WHERE recent.search_vector @@ query
ORDER BY recent.id DESC
LIMIT %(limit)s
"""
# Older rows, asked only when the newest did not fill the candidates, which
# means the words are rare: then the GIN index is the cheap way in. Ordering
# by "id + 0" keeps the planner from walking the primary key backwards
# instead (which would read every older row for a word that barely occurs).
_OLDER_SQL = """
SELECT t.conversation_id, ts_rank(t.search_vector, query)
FROM (SELECT id FROM {table}, to_tsquery('english', %(query)s) AS query
      WHERE search_vector @@ query AND id <= (SELECT MAX(id) FROM {table}) - %(recent)s
      ORDER BY id + 0 DESC
      LIMIT %(limit)s) AS found
JOIN {table} AS t ON t.id = found.id,
     to_tsquery('english', %(query)s) AS query
ORDER BY found.id DESC
"""
# Names, emails and phones match few customers: again through the GIN index
# ("id + 0"; with a bare LIMIT the planner scans the table hoping to stop early).
# Their conversations are then sorted, not found by walking the activity index
# (the "+ interval" hides it): when the planner over-guesses the matches, as it
# does before ANALYZE has seen a bulk import, that walk reads every conversation
# when none or few match (3.9 s for "smith" at 200,000 conversations; 27 ms sorted).
_CUSTOMER_CONVERSATIONS_SQL = """
SELECT c.id FROM {conversation} AS c
WHERE c.customer_id IN (
    SELECT id FROM {customer}, to_tsquery('simple', %(query)s) AS query
    WHERE search_vector @@ query
    ORDER BY id + 0
    LIMIT %(limit)s)
ORDER BY c.last_activity_at + interval '0 seconds' DESC
LIMIT %(limit)s
"""


def _newest_matches(cursor, model, raw) -> list:
    """(conversation id, rank) of the SEARCH_CANDIDATES newest rows of model matching raw."""
    params = {"query": raw, "recent": SEARCH_RECENT_ROWS, "limit": SEARCH_CANDIDATES}
    cursor.execute(_NEWEST_SQL.format(table=table(model)), params)
    found = cursor.fetchall()
    if len(found) < SEARCH_CANDIDATES:
        cursor.execute(_OLDER_SQL.format(table=table(model)), {**params, "limit": SEARCH_CANDIDATES - len(found)})
        found += cursor.fetchall()
    return found


def _search_simple(text, scores, limit):
    words = [w.strip('"*') for w in text.split() if w.strip('"*')]
    if not words:
        return
    message_q, note_q, customer_q = Q(), Q(), Q()
    for word in words:
        message_q &= Q(text__icontains=word) | Q(subject__icontains=word)
        note_q &= Q(body__icontains=word)
        customer_q &= Q(first_name__icontains=word) | Q(last_name__icontains=word)
    found = list(Message.objects.filter(message_q).order_by("-id").values_list("conversation_id", flat=True)[:limit])
    found += list(Note.objects.filter(note_q).order_by("-id").values_list("conversation_id", flat=True)[:limit])
    found += list(Conversation.objects.filter(customer__in=Customer.objects.filter(customer_q))
                  .order_by("-last_activity_at").values_list("id", flat=True)[:limit])
    for position, conv_id in enumerate(found):
        scores.setdefault(conv_id, 1.0 / (position + 2))


def page_of_search(qs, text: str, *, size: int, cursor: str | None = None, ids: list | None = None,
                   with_hits: bool = False) -> Page:
    """Ranked search results, paginated by position in the ranking.

    ids: search_conversation_ids(text) when the caller has them already (the
    screen counts the same hits per status). with_hits: each row carries the
    message or note that matched, words marked (inbox/search.py), for its preview.
    """
    offset = 0
    if cursor:
        data = decode_cursor(cursor)
        try:
            offset = parse_id(data.get("o"), minimum=0)
        except ValueError:
            raise BadCursor("The cursor is not one this server gave out.")
    if ids is None:
        ids = search_conversation_ids(text)
    allowed = set(qs.filter(pk__in=ids).values_list("pk", flat=True))
    ordered = [pk for pk in ids if pk in allowed]
    window = ordered[offset:offset + size]
    next_cursor = encode_cursor({"o": offset + size}) if len(ordered) > offset + size else None
    found = rows.load(qs.filter(pk__in=window).order_by(), order=window)
    if with_hits and found:
        hits = search.hits_for(window, text)
        for row in found:
            row.hit = hits.get(row.id)
    return Page(found, next_cursor)


# --- one conversation and the customer's whole thread ------------------------

def conversation_detail(conversation_id: int) -> Conversation:
    """One conversation with its customer and assignee: what every action on it
    reads. The screens that show identities or tags add them (with_identities)."""
    return Conversation.objects.select_related("customer", "assignee").get(pk=conversation_id)


def with_identities(conversation: Conversation, *, tags: bool = False) -> Conversation:
    """Give the customer `identity_list` (primary first) and, with tags=True, the
    conversation `tag_names`: the attributes list rows carry, read by the
    serializers and templates before the related managers. Flat queries:
    prefetch_related's machinery cost more than both of them."""
    conversation.customer.identity_list = list(
        CustomerIdentity.objects.filter(customer_id=conversation.customer_id)
        .order_by("-is_primary", "kind", "id").only("customer_id", *channels.IDENTITY_FIELDS))
    if tags:
        tag_names(conversation)
    return conversation


PROFILE_CONVERSATIONS = 10  # past conversations listed in the profile panel
PROFILE_NOTES = 10  # newest customer notes shown (the admin has them all)
UPCOMING = [Booking.Status.INQUIRY, Booking.Status.QUOTED, Booking.Status.CONFIRMED]


def tag_names(conversation: Conversation) -> Conversation:
    """Give the conversation `tag_names` (one query; with_identities(tags=True) calls this)."""
    conversation.tag_names = list(Conversation.tags.through.objects.filter(conversation_id=conversation.pk)
                                  .order_by("tag__name").values_list("tag__name", flat=True))
    return conversation


def all_tag_names() -> list[str]:
    """Every tag, for the list's tag filter and the thread's "add tag" suggestions."""
    return list(Tag.objects.order_by("name").values_list("name", flat=True))


def staff_names(*, prefix: str = "", limit: int = 10) -> list[dict]:
    """Active staff members ({"id", "username", "name"}) whose username, first or
    last name starts with prefix: what "@" in a note suggests."""
    users = _active_staff()
    prefix = prefix.strip()
    if prefix:
        users = users.filter(Q(username__istartswith=prefix) | Q(first_name__istartswith=prefix)
                             | Q(last_name__istartswith=prefix))
    found = (users.distinct().order_by("first_name", "last_name", "username")
             .values_list("id", "username", "first_name", "last_name")[:limit])
    return [{"id": pk, "username": username, "name": rows.full_name(first, last, username)}
            for pk, username, first, last in found]


def unknown_mentions(usernames) -> list[str]:
    """The @names of a note that are no active staff member's username: nobody would be told (the composer flags them)."""
    usernames = {name for name in usernames if name}
    if not usernames:
        return []
    known = set(_active_staff().filter(username__in=usernames).values_list("username", flat=True))
    return sorted(usernames - known)


def _active_staff():
    from django.contrib.auth import get_user_model

    from myhibachi.roles import AGENT, MANAGER

    return (get_user_model().objects.filter(is_active=True)
            .filter(Q(groups__name__in=[AGENT, MANAGER]) | Q(is_superuser=True)))


def customer_profile(customer: Customer, *, conversation_id=None, panel: bool = True) -> dict:
    """What the thread's profile panel states about a customer, in four queries
    whatever their history: booking counts, the next booking, their other
    conversations (newest first, at most PROFILE_CONVERSATIONS) and the newest
    staff notes about them (at most PROFILE_NOTES, with their authors).
    panel=False: the booking facts only (two queries), as the API returns them."""
    from django.utils import timezone

    from crm.models import CustomerNote, loyalty_tier

    now = timezone.now()
    upcoming = Q(event_at__gte=now, status__in=UPCOMING)
    counts = Booking.objects.filter(customer=customer).aggregate(
        completed=Count("pk", filter=Q(status=Booking.Status.COMPLETED)),
        upcoming=Count("pk", filter=upcoming),
        cancelled=Count("pk", filter=Q(status=Booking.Status.CANCELLED)),
        total=Count("pk"),
    )
    next_booking = Booking.objects.filter(upcoming, customer=customer).order_by("event_at", "pk").first()
    profile = {
        "previous_bookings": counts["completed"],
        "bookings_total": counts["total"],
        "bookings": counts,
        "bookings_summary": bookings_summary(counts),
        "loyalty_tier": loyalty_tier(counts["completed"]),
        "preferred_channel": customer.preferred_channel,
        "next_booking": next_booking,
    }
    if panel:
        others = (Conversation.objects.filter(customer=customer).exclude(pk=conversation_id)
                  .order_by("-last_activity_at", "-pk")
                  .values("id", "status", "subject", "last_activity_at", "created_at")[:PROFILE_CONVERSATIONS])
        notes = (CustomerNote.objects.filter(customer=customer).order_by("-created_at", "-pk")
                 .values("id", "body", "created_at", *AUTHOR_COLUMNS)[:PROFILE_NOTES])
        profile.update(other_conversations=list(others), notes=_with_authors(list(notes), {}))
    return profile


def bookings_summary(counts: dict) -> str:
    """"3 completed, 1 upcoming" — the parts that are not zero; "None yet" when all are."""
    parts = [f"{counts[key]} {key}" for key in ("completed", "upcoming", "cancelled") if counts[key]]
    other = counts["total"] - counts["completed"] - counts["upcoming"] - counts["cancelled"]
    if other:
        parts.append(f"{other} past, not completed")
    return ", ".join(parts) or "None yet"


# The columns a thread page shows. Messages and notes are read as plain rows
# (values()), not model instances: at 50 items building the instances and their
# authors cost more than the queries, and neither the search vector nor the
# author's password hash and dates need to leave the database.
MESSAGE_COLUMNS = ("id", "conversation_id", "channel", "direction", "subject", "text", "html",
                   "delivery_status", "status_reason", "created_at")
# Beside them, read in the same query: "sender", the normalised address an
# inbound message came from (metadata["from"]), and "primary_email", the
# customer's primary email identity (None without one): the thread names the
# sender whenever the two differ.
# What the thread shows of a failed reply's second chances (services.retry_reply,
# send_by_email_instead), read out of the metadata in the same query.
MESSAGE_EXTRAS = {"retries": KT("metadata__retries"), "resent_as": KT("metadata__resent_as"),
                  "resent_from": KT("metadata__resent_from"), "cc": KT("metadata__cc")}
# (its "attachments" is read with MEDIA_COLUMNS below, as JSON)
NOTE_COLUMNS = ("id", "conversation_id", "body", "created_at")
# And what the thread shows of SMS/MMS and calls (channels_ingest/ringcentral): "attachments"
# (stored MMS files), "call" (direction, numbers, duration, result, recording) and "unparsed"
# (a number that could not be read), None when absent.
MEDIA_COLUMNS = {"attachments": KeyTransform("attachments", "metadata"), "call": KeyTransform("call", "metadata"),
                 "unparsed": KT("metadata__unparsed_number")}
AUTHOR_COLUMNS = ("author_id", "author__username", "author__first_name", "author__last_name")


@dataclass(slots=True)
class ThreadItem:
    """One message or note of a customer's thread.

    `row` holds the MESSAGE_COLUMNS or NOTE_COLUMNS (messages also "sender"
    and "primary_email", and "metadata" when asked for) and "author": None or
    {"id", "username", "name"}, one dict per author shared by their items.
    """

    kind: str  # "message" or "note"
    row: dict

    @property
    def pk(self):
        return self.row["id"]

    @property
    def created_at(self):
        return self.row["created_at"]

    @property
    def key(self):
        return (self.row["created_at"], KIND_RANK[self.kind], self.row["id"])


KIND_RANK = {"message": 0, "note": 1, "activity": 2}


def _with_authors(found, authors: dict) -> list:
    """Replace the author__* columns of each row by one shared author dict."""
    for row in found:
        author_id = row.pop("author_id")
        username, first, last = row.pop("author__username"), row.pop("author__first_name"), row.pop("author__last_name")
        if author_id is None:
            row["author"] = None
            continue
        author = authors.get(author_id)
        if author is None:
            author = authors[author_id] = {"id": author_id, "username": username,
                                           "name": rows.full_name(first, last, username)}
        row["author"] = author
    return found


def customer_thread(customer_id: int, *, size: int = 50, before: str | None = None, with_metadata: bool = False):
    """The customer's messages and notes across all channels and conversations.

    Newest page first; items within the page in time order. Returns
    (items, cursor for the older page or None). Messages carry their
    metadata only with with_metadata=True (the API shows it; the screens do not).
    """
    messages = Message.objects.filter(customer_id=customer_id)
    notes = Note.objects.filter(customer_id=customer_id)
    if before:
        data = decode_cursor(before)
        at = _cursor_time(data)
        kind_rank = data.get("k")
        if kind_rank not in (0, 1):
            raise BadCursor("The cursor is not one this server gave out.")
        # Items strictly older than the cursor in (time, kind, id) order.
        messages = messages.filter(_older_than("created_at", at, data["id"]) if kind_rank == 0
                                   else Q(created_at__lte=at))
        notes = notes.filter(_older_than("created_at", at, data["id"]) if kind_rank == 1
                             else Q(created_at__lt=at))
    message_columns = MESSAGE_COLUMNS + ("metadata",) if with_metadata else MESSAGE_COLUMNS
    authors = {}
    primary_email = (CustomerIdentity.objects.filter(customer_id=customer_id, kind=CustomerIdentity.Kind.EMAIL,
                                                     is_primary=True).order_by("id").values("value")[:1])
    newest_messages = _with_authors(messages.order_by("-created_at", "-id")
                                    .values(*message_columns, *AUTHOR_COLUMNS, sender=KT("metadata__from"),
                                            item_kind=KT("metadata__kind"), primary_email=Subquery(primary_email),
                                            **MEDIA_COLUMNS, **MESSAGE_EXTRAS)[: size + 1],
                                    authors)
    newest_notes = _with_authors(notes.order_by("-created_at", "-id")
                                 .values(*NOTE_COLUMNS, *AUTHOR_COLUMNS)[: size + 1], authors)
    items = [ThreadItem("message", m) for m in newest_messages] + [ThreadItem("note", n) for n in newest_notes]
    items.sort(key=lambda item: item.key, reverse=True)
    older = None
    if len(items) > size:
        items = items[:size]
        oldest = items[-1]
        older = encode_cursor({"t": oldest.created_at.isoformat(), "k": 0 if oldest.kind == "message" else 1,
                               "id": oldest.pk})
    items.reverse()
    return items, older


def customer_conversations(customer_id: int) -> list[dict]:
    """Every conversation of the customer (id, status, subject, is_unread), newest first: the
    thread's sections and its live updates' list. One query."""
    return list(Conversation.objects.filter(customer_id=customer_id).order_by("-last_activity_at", "-id")
                .values("id", "status", "subject", "is_unread"))


TIMELINE_KINDS = (ConversationActivity.Kind.STATUS_CHANGED, ConversationActivity.Kind.ASSIGNED,
                  ConversationActivity.Kind.REOPENED)


def with_timeline(items, *, conversation_ids, older, before=None, limit: int = 200) -> list:
    """The thread page's items with the status and assignment changes of the customer's
    conversations that fall among them (one query), as ThreadItem("activity", row) where
    row has "created_at" (the change's time), "conversation_id" and history columns.
    The window: from the page's oldest item (or the start when the page reaches it) to
    the cursor of an older page (or now)."""
    qs = ConversationActivity.objects.filter(conversation_id__in=conversation_ids, kind__in=TIMELINE_KINDS)
    if older is not None and items:
        qs = qs.filter(at__gte=items[0].created_at)
    if before:
        qs = qs.filter(at__lt=_cursor_time(decode_cursor(before)))
    found = [ThreadItem("activity", {**row, "created_at": row["at"]}) for row in
             qs.order_by("-at", "-id").values("id", "conversation_id", "kind", "from_value", "to_value", "channel",
                                             "at", "actor__username", "actor__first_name",
                                             "actor__last_name")[:limit]]
    return sorted(items + found, key=lambda item: item.key)


# --- events (catch-up for live screens) ---------------------------------------

def events_after(*, user, after: int, limit: int = 500):
    return list(
        InboxEvent.objects.filter(id__gt=after).filter(Q(recipient__isnull=True) | Q(recipient=user))
        .order_by("id")[:limit]
    )


def latest_event_id() -> int:
    # Read on every list and thread request: plain SQL, no queryset to build.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MAX(id) FROM {table(InboxEvent)}")
        return cursor.fetchone()[0] or 0


# --- a conversation's history ---------------------------------------------------

HISTORY_KINDS = (ConversationActivity.Kind.STATUS_CHANGED, ConversationActivity.Kind.ASSIGNED,
                 ConversationActivity.Kind.REOPENED, ConversationActivity.Kind.BOT_HANDOFF,
                 ConversationActivity.Kind.MERGED, ConversationActivity.Kind.TAGGED,
                 ConversationActivity.Kind.UNTAGGED)


def conversation_history(conversation_id: int, *, limit: int = 10) -> list[dict]:
    """The newest status and assignment changes of a conversation (who, what, when), newest first; one query."""
    return list(
        ConversationActivity.objects.filter(conversation_id=conversation_id, kind__in=HISTORY_KINDS)
        .order_by("-at", "-id")
        .values("kind", "from_value", "to_value", "channel", "at", "actor__username", "actor__first_name",
                "actor__last_name")[:limit]
    )
