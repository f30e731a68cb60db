"""Why a search result matched: the matching message or note, with the words marked.

The search itself (selectors.search_conversation_ids) ranks conversations;
this module reads, for the few on one page, the newest message or note that
matched and writes it as the row's preview. Highlighting is done on text that
is escaped first: only the <mark> tags this module writes are markup, so
whatever a customer typed stays text.
"""
import html
import re
from dataclasses import dataclass

from django.contrib.postgres.search import SearchQuery
from django.db import connection
from django.db.models import Q
from markupsafe import Markup

from . import channels
from .models import Message, Note

WORD = re.compile(r"\w+", re.UNICODE)
SNIPPET_CHARS = 160
LEAD_CHARS = 40  # text shown before the first match
SCAN_CHARS = 20_000  # how much of a long message is looked at for the words
SUFFIXES = ("ing", "ies", "es", "ed", "s", "y", "e")  # what English stemming drops, roughly


@dataclass(slots=True)
class Hit:
    kind: str  # "message" or "note"
    id: int
    label: str  # "Note", "Email", "SMS"… shown before the text
    html: Markup  # the snippet, escaped, matched words in <mark>


def terms(text: str) -> list[str]:
    """The query's words as lowercase stems: "parties" and "party" both find "parti"."""
    found = []
    for word in WORD.findall(text or ""):
        stem = word.lower()
        for suffix in SUFFIXES:
            if stem.endswith(suffix) and len(stem) - len(suffix) >= 3:
                stem = stem[: -len(suffix)]
                break
        if stem not in found:
            found.append(stem)
    return found


def _matches(token: str, stems: list[str]) -> bool:
    token = token.lower()
    return any(token.startswith(stem) for stem in stems)


def highlight(text: str, stems: list[str], *, limit: int = SNIPPET_CHARS) -> Markup:
    """One line of text around the first matching word, escaped, each matching word in <mark>."""
    line = " ".join((text or "")[:SCAN_CHARS].split())
    words = list(WORD.finditer(line))
    first = next((m for m in words if _matches(m.group(), stems)), None)
    start = 0
    if first is not None and first.start() > LEAD_CHARS:
        start = line.rfind(" ", 0, first.start() - LEAD_CHARS) + 1
    end = min(len(line), start + limit)
    if end < len(line) and " " in line[start:end]:
        end = line.rfind(" ", start, end)
    out, at = [], start
    for m in words:
        if m.start() < start or m.end() > end:
            continue
        if _matches(m.group(), stems):
            out.append(html.escape(line[at:m.start()]))
            out.append("<mark>" + html.escape(m.group()) + "</mark>")
            at = m.end()
    out.append(html.escape(line[at:end]))
    return Markup(("…" if start else "") + "".join(out) + ("…" if end < len(line) else ""))


def _channel_label(name: str) -> str:
    try:
        return channels.get(name).label
    except Exception:  # a channel since removed
        return name


def hits_for(conversation_ids: list[int], text: str) -> dict[int, Hit]:
    """For each conversation, the newest message or note matching text (if one does): two queries."""
    stems = terms(text)
    if not conversation_ids or not stems:
        return {}
    if connection.vendor == "postgresql":
        from .selectors import to_tsquery

        raw = to_tsquery(text)
        if not raw:
            return {}
        query = SearchQuery(raw, search_type="raw", config="english")
        messages = Message.objects.filter(conversation_id__in=conversation_ids, search_vector=query)
        notes = Note.objects.filter(conversation_id__in=conversation_ids, search_vector=query)
    else:  # SQLite (newcomer mode): the same words the simple search matched
        message_q, note_q = Q(), Q()
        for word in [w.strip('"*') for w in text.split() if w.strip('"*')]:
            message_q &= Q(text__icontains=word) | Q(subject__icontains=word)
            note_q &= Q(body__icontains=word)
        messages = Message.objects.filter(message_q, conversation_id__in=conversation_ids)
        notes = Note.objects.filter(note_q, conversation_id__in=conversation_ids)
    newest = {}  # conversation id -> (created_at, Hit)
    if connection.vendor == "postgresql":
        messages = messages.order_by("conversation_id", "-created_at", "-id").distinct("conversation_id")
        notes = notes.order_by("conversation_id", "-created_at", "-id").distinct("conversation_id")
    else:
        limit = 20 * len(conversation_ids)
        messages, notes = messages.order_by("-created_at", "-id")[:limit], notes.order_by("-created_at", "-id")[:limit]
    for row in messages.values("id", "conversation_id", "channel", "direction", "text", "subject", "created_at"):
        if row["conversation_id"] not in newest:
            label = _channel_label(row["channel"]) + (" reply" if row["direction"] == "outbound" else "")
            body = row["text"] if _has_match(row["text"], stems) else row["subject"] or row["text"]
            newest[row["conversation_id"]] = (row["created_at"], Hit("message", row["id"], label,
                                                                      highlight(body, stems)))
    for row in notes.values("id", "conversation_id", "body", "created_at"):
        current = newest.get(row["conversation_id"])
        if current is None or current[0] < row["created_at"]:
            newest[row["conversation_id"]] = (row["created_at"], Hit("note", row["id"], "Note",
                                                                     highlight(row["body"], stems)))
    return {pk: hit for pk, (_, hit) in newest.items()}


def _has_match(text: str, stems: list[str]) -> bool:
    return any(_matches(m.group(), stems) for m in WORD.finditer((text or "")[:SCAN_CHARS]))
