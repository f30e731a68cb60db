"""Small presentation helpers for the staff screens (no queries)."""
import functools
import re
import html
import json
from datetime import timedelta

from django import template
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import get_language

from inbox import attachments as stored_files, channels, dates, text as text_rules
from inbox.models import Conversation, Message
from inbox.remote_images import MARKER as BLOCKED_IMAGE, block_remote_images
from inbox.sanitize import CLEANER

register = template.Library()



@register.filter
def ago(moment, now=None):
    """"just now", "2 min ago", "3 h ago", "4 d ago", then the date."""
    if not moment:
        return ""
    now = now or timezone.now()
    delta = now - moment
    if delta < timedelta(minutes=1):
        return "just now"
    if delta < timedelta(hours=1):
        return f"{int(delta.total_seconds() // 60)} min ago"
    if delta < timedelta(days=1):
        return f"{int(delta.total_seconds() // 3600)} h ago"
    if delta < timedelta(days=30):
        return f"{delta.days} d ago"
    return timezone.localtime(moment).strftime("%b %-d, %Y")


@register.simple_tag
def channel_icon(channel):
    """The channel's icon (from the sprite in base.html) and its label as text."""
    return _channel_icon(channel)


@functools.lru_cache(maxsize=64)  # a handful of channels, drawn once per thread item
def _channel_icon(channel):
    try:
        spec = channels.get(channel)
        name, icon, label = spec.name, spec.icon_id, spec.label
    except ValidationError:  # a message of a channel since removed, or none
        name, icon, label = "none", "none", channel or "—"
    return format_html(
        '<span class="channel channel-{}"><svg class="icon" aria-hidden="true" focusable="false">'
        '<use href="#i-{}"></use></svg><span class="channel-label">{}</span></span>',
        name, icon, label,
    )


one_line = register.filter("one_line", text_rules.one_line)


split_quoted_text = register.filter("split_quoted_text", text_rules.split_quoted_text)


@register.filter
def split_quoted_html(html):
    """(new part, quoted history) of an email's stored html, each safe to show.

    The html was sanitised at ingest, and is cleaned again here with the same
    prebuilt nh3 Cleaner (inbox.sanitize): a row written around the services
    (SQL, the admin of old) must not reach the page as it is. Split first,
    then each half is cleaned by itself, so each is a balanced, safe fragment
    wherever the split fell, for about the cost of one clean. Remote images
    are then made inert (inbox.remote_images)."""
    html = html or ""
    at = html.lower().find("<blockquote")
    if at > 0:
        head = CLEANER.clean(html[:at])
        if head.strip():
            return (mark_safe(block_remote_images(head)),
                    mark_safe(block_remote_images(CLEANER.clean(html[at:]))))
    return mark_safe(block_remote_images(CLEANER.clean(html))), ""


@register.filter
def display_name(user):
    if not user:
        return ""
    return user.get_full_name() or user.get_username()


@register.filter
def preview(message, limit=140):
    """One line of a message for the inbox row, without quoted history."""
    if message is None:
        return ""
    return text_rules.preview(message.text, message.subject, limit)


# --- thread items ---------------------------------------------------------------
#
# A thread page shows 50 items. Written as a template, an item took ~25 nodes,
# three `date` filters and more filters: most of the page's render time. Here
# each item is one str.format() of the markup that template had, on values
# read once. Every value goes through _html() (format_html's escaping, without
# its lazy-string wrapper); the screen tests read the markup as before.

DELIVERY_LABELS = dict(Message.DeliveryStatus.choices)

NOTE_ITEM = """<li class="item note" id="n-{id}" data-at="{at}">
  <div class="item-head"><span class="kind">Internal note</span> by <strong>{author}</strong>
    <time datetime="{at}">{when}</time>{elsewhere}</div>
  <div class="body text">{body}</div>
</li>
"""
MESSAGE_ITEM = """<li class="item msg {direction}" id="m-{id}" data-at="{at}">
  <div class="item-head">{channel}
    <span class="dir">{who}</span>
    <time datetime="{at}">{when}</time>{delivery}{elsewhere}
  </div>{subject}{cc}{images}
  {body}{attachments}{media}
</li>
"""
# Stored files of any channel (email attachments, MMS files, call recordings; inbox/attachments.py),
# all served to staff by views.attachment through the conversation the message belongs to.
FILE_URL = "/inbox/{conversation}/messages/{id}/attachments/{n}"
RECORDING_URL = "/inbox/{conversation}/messages/{id}/recording"
ATTACHMENTS = """
  <ul class="attachments" aria-label="Attachments">{}</ul>"""
ATTACHED_IMAGE = '<li><a href="{url}"><img src="{url}" alt="{name}" class="attached-image" loading="lazy"></a></li>'
ATTACHED_FILE = '<li><a href="{url}" download>{name}</a> <span class="muted">{size}</span></li>'
NOT_STORED = '<li class="muted">{name} ({state})</li>'
CALL_FACTS = """
  <p class="call-facts">{direction} call · {result} · from {frm} to {to}{duration}</p>"""
RECORDING = """
  <audio controls preload="none" src="{}" class="recording">Recording</audio>"""
UNPARSED = """
  <p class="flag" role="note">The number this came from could not be read as a phone number; it is kept as given.</p>"""
CC_LINE = """
  <div class="cc muted">Cc: {}</div>"""


def _size(n) -> str:
    try:
        n = int(n)
    except (TypeError, ValueError):
        return ""
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{max(1, round(n / 1000))} KB"


def _json_list(raw) -> list:
    """A JSON list read as text out of metadata (selectors.MESSAGE_EXTRAS); [] when absent or not a list."""
    if not raw:
        return []
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return []
    return value if isinstance(value, list) else []


SENT_BY = "Sent by <strong>{}</strong>"
RECEIVED_FROM = 'Received from <strong class="sender">{}</strong>'
IMAGES_BLOCKED = """
  <p class="images-blocked">Remote images are hidden: loading them tells the sender you read this.
    <button type="button" class="show-images">Show images</button></p>"""
DELIVERY = """
    <span class="delivery delivery-{status}" title="{reason}">{label}</span>"""
FAILURE_REASON = ' <span class="reason">{}</span>'
# A failed reply: the reason, Retry, and (not an email, the customer has one) Send by email instead.
# Buttons post once (hx-disabled-elt); the services make a repeat a no-op (attempt, resent_as).
FAILED_ACTIONS = """
  <div class="failed-reply" role="group" aria-label="This reply was not delivered">
    <p class="failure"><strong>Failed:</strong> {reason}</p>
    <form method="post" action="/inbox/{conversation}/messages/{id}/retry" hx-post="/inbox/{conversation}/messages/{id}/retry"
          hx-swap="none" hx-disabled-elt="find button" class="inline retry-form">{csrf}<input type="hidden" name="attempt" value="{attempt}">
      <button type="submit" class="retry">Retry</button></form>{email}
  </div>"""
EMAIL_INSTEAD = """
    <form method="post" action="/inbox/{conversation}/messages/{id}/email-instead" hx-post="/inbox/{conversation}/messages/{id}/email-instead"
          hx-swap="none" hx-disabled-elt="find button" class="inline email-instead-form">{csrf}
      <button type="submit" class="email-instead">Send by email instead</button></form>"""
RESENT_AS = ' <span class="resent muted">· sent again by email</span>'
RESENT_FROM = ' <span class="resent muted">· resent by email after the {} failed</span>'
CSRF_FIELD = '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
ELSEWHERE = ' <span class="muted">· conversation #{}</span>'
SUBJECT = """
  <div class="subject">{}</div>"""
BODY = '<div class="body {}">{}</div>'
TRANSCRIPT = """<details class="body transcript"><summary>Chatbot conversation ({lines} lines)</summary>
  <div class="text">{text}</div></details>"""
QUOTED = """
  <details class="quoted"><summary>Show quoted history</summary><div class="{}">{}</div></details>"""


def _html(value) -> str:
    """conditional_escape(): safe strings as they are, anything else escaped."""
    return value.__html__() if hasattr(value, "__html__") else html.escape(str(value))


def _text_html(text) -> str:
    """The linebreaksbr filter on plain text: escaped, newlines (any style) as <br>."""
    return html.escape(text.replace("\r\n", "\n").replace("\r", "\n")).replace("\n", "<br>")


short_time = dates.short_time  # the thread's times, as the `date` filter writes them


class _ItemWriter:
    """Writes the items of one thread page: what is the same for all of them
    (open conversation, time zone, month names) is looked up once."""

    def __init__(self, conversation_id, csrf_token=""):
        self.conversation_id = conversation_id
        self.csrf = CSRF_FIELD.format(_html(csrf_token)) if csrf_token else ""
        self.staff_names = {}
        self.tz = timezone.get_current_timezone()
        self.words = dates.time_words(get_language())

    def common(self, row) -> dict:
        local = row["created_at"].astimezone(self.tz)  # timezone.localtime()
        elsewhere = row["conversation_id"] != self.conversation_id
        return {"id": row["id"], "at": local.isoformat(),  # the `date` filter's "c"
                "when": _html(short_time(local, self.words)),
                "elsewhere": ELSEWHERE.format(row["conversation_id"]) if elsewhere else ""}

    def failed_actions(self, row) -> str:
        ids = {"conversation": self.conversation_id, "id": row["id"], "csrf": self.csrf}
        email = EMAIL_INSTEAD.format(**ids) if row["channel"] != "email" and row.get("primary_email") else ""
        return FAILED_ACTIONS.format(**ids, reason=_html(row["status_reason"] or "The reply was not delivered."),
                                     attempt=_html(row.get("retries") or 0), email=email)

    def item(self, item) -> str:
        if item.kind == "note":
            return self.note(item.row)
        if item.kind == "activity":
            return self.activity(item.row)
        return self.message(item.row)

    def activity(self, row) -> str:
        common = self.common(row)
        return ACTIVITY_ITEM.format(**common, text=_html(activity_text(row, self.staff_names)))

    def note(self, row) -> str:
        return NOTE_ITEM.format(**self.common(row), author=_html(row["author"]["name"] if row["author"] else "someone"),
                                body=mark_mentions(_text_html(row["body"])))

    def message(self, row) -> str:
        delivery = ""
        if row["direction"] == "outbound":
            who = SENT_BY.format(_html(row["author"]["name"] if row["author"] else "myhibachi"))
            status, reason = row["delivery_status"], row["status_reason"]
            delivery = DELIVERY.format(status=_html(status), reason=_html(reason),
                                       label=_html(DELIVERY_LABELS.get(status, status)))
            if row.get("resent_as"):
                delivery += RESENT_AS
            elif status == "failed":
                delivery += self.failed_actions(row)
            if row.get("resent_from"):
                delivery += RESENT_FROM.format("earlier reply")
        else:
            who = "Received"
            # Mail filed under this customer from an address that is not their
            # primary one says so: staff must not take it for the customer's.
            sender = row.get("sender")
            if (sender and row["channel"] == "email"
                    and sender.casefold() != (row.get("primary_email") or "").casefold()):
                who = RECEIVED_FROM.format(_html(sender))
        images = ""
        if row["html"]:
            new, quoted = split_quoted_html(row["html"])  # both safe html, remote images inert
            body = BODY.format("html", new) + (QUOTED.format("html", quoted) if quoted else "")
            if BLOCKED_IMAGE in new or BLOCKED_IMAGE in quoted:
                images = IMAGES_BLOCKED
        elif row.get("item_kind") == "chatbot_transcript":
            # A chatbot session (channels_ingest/chat/chatbot.py): one item, folded.
            lines = row["text"].count("\n") + 1 if row["text"] else 0
            body = TRANSCRIPT.format(lines=lines, text=_text_html(row["text"]))
        else:
            new, quoted = split_quoted_text(row["text"])
            body = BODY.format("text", _text_html(new)) + (QUOTED.format("text", _text_html(quoted)) if quoted else "")
        cc = _json_list(row.get("cc"))
        return MESSAGE_ITEM.format(
            **self.common(row), direction=_html(row["direction"]), channel=_channel_icon(row["channel"]), who=who,
            delivery=delivery, subject=SUBJECT.format(_html(row["subject"])) if row["subject"] else "", body=body,
            images=images, media=self.call(row), attachments=self.attachments(row),
            cc=CC_LINE.format(_html(", ".join(str(a) for a in cc))) if cc else "",
        )

    def attachments(self, row) -> str:
        """The message's stored files, whatever the channel: the safe image types shown, other
        files as download links, files not stored named with the reason."""
        lines = []
        for n, meta in enumerate(_json_list(row.get("attachments"))):
            if not isinstance(meta, dict):
                continue
            name = _html(meta.get("filename") or "attachment")
            url = FILE_URL.format(conversation=row["conversation_id"], id=row["id"], n=n)
            if meta.get("path") and stored_files.is_inline_image(meta):
                lines.append(ATTACHED_IMAGE.format(url=url, name=name))
            elif meta.get("path"):
                lines.append(ATTACHED_FILE.format(url=url, name=name, size=_html(_size(meta.get("size")))))
            else:
                lines.append(NOT_STORED.format(name=name, state=_html(_not_stored(meta))))
        return ATTACHMENTS.format("".join(lines)) if lines else ""

    def call(self, row) -> str:
        """A call's facts and recording, and the flag on a phone number that could not be read."""
        parts = []
        if row.get("unparsed") in (True, "true", "1", 1):
            parts.append(UNPARSED)
        call = row.get("call")
        if isinstance(call, dict):
            minutes, seconds = divmod(int(call.get("duration") or 0), 60)
            parts.append(CALL_FACTS.format(
                direction="Incoming" if call.get("direction") == "inbound" else "Outgoing",
                result=_html(call.get("result", "")), frm=_html(call.get("from") or "unknown"),
                to=_html(call.get("to") or "unknown"), duration=f" · {minutes}:{seconds:02d}" if minutes or seconds else ""))
            if isinstance(call.get("recording"), dict) and call["recording"].get("path"):
                parts.append(RECORDING.format(RECORDING_URL.format(conversation=row["conversation_id"], id=row["id"])))
        return "".join(parts)


def _not_stored(meta) -> str:
    """Why a file has no stored copy: too large to keep, refused by the channel, or still on its way."""
    if meta.get("too_large"):
        size = _size(meta.get("size"))
        return f"{size}, too large to keep" if size else "too large to keep"
    return "not downloaded" if meta.get("refused") else "downloading…"


ACTIVITY_ITEM = """<li class="item activity" id="a-{id}" data-at="{at}">
  <span class="activity-text">{text}</span> <time datetime="{at}">{when}</time>{elsewhere}
</li>
"""
# A run of items from another conversation of the customer: a collapsible section with
# that conversation's own status (open when it is the active one).
SECTION_START = """<li class="conv-section" data-conversation="{id}"><details{open}>
  <summary><span class="section-title">{title} #{id}</span> <span class="status status-{status}">{status_label}</span>{subject}
    <a href="/inbox/{id}/">Open it</a></summary>
  <ol class="items" aria-label="Items of conversation #{id}">
"""
SECTION_END = "</ol></details></li>\n"
STATUS_LABELS = dict(Conversation.Status.choices)


def _section_start(pk, info) -> str:
    status = (info or {}).get("status", "")
    active = status in ("open", "pending")
    subject = (info or {}).get("subject") or ""
    return SECTION_START.format(
        id=pk, open=" open" if active else "", status=_html(status),
        status_label=_html(STATUS_LABELS.get(status, status or "unknown")),
        title="Active conversation" if active else "Earlier conversation",
        subject=f' <span class="subject">{_html(subject)}</span>' if subject else "")


@register.simple_tag(takes_context=True)
def thread_items(context, items, conversation_id):
    """The <li> of each selectors.ThreadItem, oldest first; conversation_id is the
    open conversation. The items of each of the customer's other conversations on this
    page are one section, marked with its number and status, where its first item falls."""
    writer = _ItemWriter(conversation_id, context.get("csrf_token") or "")
    conversations = context.get("thread_conversations") or {}
    writer.staff_names = {str(member.pk): display_name(member) for member in (context.get("staff") or [])}
    others = {}
    for item in items:
        owner = item.row["conversation_id"]
        if owner != conversation_id:
            others.setdefault(owner, []).append(item)
    parts = []
    for item in items:
        owner = item.row["conversation_id"]
        if owner == conversation_id:
            parts.append(writer.item(item))
        elif owner in others:
            parts.append(_section_start(owner, conversations.get(owner)))
            parts.extend(writer.item(inner) for inner in others.pop(owner))
            parts.append(SECTION_END)
    return mark_safe("".join(parts))


# --- the conversation's history (its header) -------------------------------------------

def _person(first, last, username) -> str:
    return f"{first} {last}".strip() or username


def activity_text(row, names) -> str:
    """One status or assignment change in words: who did what. names: staff id (str) -> name."""
    who = _person(row["actor__first_name"], row["actor__last_name"], row["actor__username"]) \
        if row["actor__username"] else "A routing rule"
    kind = row["kind"]
    if kind == "status_changed":
        return f"{who} set it to {STATUS_LABELS.get(row['to_value'], row['to_value'])}"
    if kind == "assigned":
        target = names.get(row["to_value"], "a former staff member") if row["to_value"] else None
        return f"{who} assigned it to {target}" if target else f"{who} unassigned it"
    if kind == "reopened":
        label = channels.get(row["channel"]).label if row["channel"] else "a message"
        return f"The customer wrote again ({label}) and reopened it"
    if kind == "merged":
        return (f"{who if row['actor__username'] else 'The website chat'} merged customer #{row['from_value']} "
                f"into customer #{row['to_value']}")
    if kind == "tagged":
        return f"{who} tagged it {row['to_value']}"
    if kind == "untagged":
        return f"{who} removed the tag {row['from_value']}"
    return "The chatbot handed it over"


def history_lines(rows, staff) -> list[dict]:
    """selectors.conversation_history rows as lines a person reads: who did what, and when."""
    names = {str(member.pk): display_name(member) for member in staff}
    words = dates.time_words(get_language())
    tz = timezone.get_current_timezone()
    lines = []
    for row in rows:
        local = row["at"].astimezone(tz)
        lines.append({"text": activity_text(row, names), "at": local.isoformat(),
                      "when": dates.short_time(local, words)})
    return lines


# --- the list's counts and a note's mentions -------------------------------------------

@register.filter
def count_label(count):
    """A tab's count: "1000+" past the cap the filtered counts stop at (selectors.COUNT_CAP)."""
    from inbox.selectors import COUNT_CAP

    return f"{COUNT_CAP}+" if count > COUNT_CAP else str(count)


MENTION_HTML = re.compile(r"(?<![\w@&#])@([\w+-]+(?:\.[\w+-]+)*)")


def mark_mentions(escaped: str) -> str:
    """@username in a note's escaped text, wrapped so it stands out (the same names services.MENTION reads)."""
    return MENTION_HTML.sub(r'<span class="mention">@\1</span>', escaped)
