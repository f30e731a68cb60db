"""Small presentation helpers for the staff screens (no queries)."""
import re
from datetime import timedelta

import nh3
from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from inbox.sanitize import ALLOWED_SCHEMES
from inbox.api.serializers import identities_of

register = template.Library()

CHANNEL_LABELS = {"email": "Email", "sms": "SMS", "chat": "Chat", "call": "Call"}


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
    label = CHANNEL_LABELS.get(channel, channel or "—")
    return format_html(
        '<span class="channel channel-{}"><svg class="icon" aria-hidden="true" focusable="false">'
        '<use href="#i-{}"></use></svg><span class="channel-label">{}</span></span>',
        channel or "none", channel or "none", label,
    )


@register.filter
def contact_points(customer):
    """The first email and the first phone of a customer, from already loaded identities."""
    found = {}
    for item in identities_of(customer):
        found.setdefault(item.kind, item.value)
    return [found[k] for k in ("email", "phone") if k in found]


@register.filter
def one_line(text, limit=140):
    return " ".join((text or "").split())[: int(limit)]


QUOTE_HEADER = re.compile(r"^\s*(On .{3,300} wrote:|-{2,}\s*Original Message\s*-{2,}|From: .+)\s*$",
                          re.IGNORECASE)


@register.filter
def split_quoted_text(text):
    """(new part, quoted history) of a plain-text email. Quoted history starts at
    an "On … wrote:" line, an "Original Message" line or a run of "> " lines that
    lasts to the end of the message."""
    lines = (text or "").splitlines()
    for index, line in enumerate(lines):
        rest = [x for x in lines[index + 1:] if x.strip()]
        if QUOTE_HEADER.match(line) and (not rest or rest[0].lstrip().startswith(">") or index > 0):
            return "\n".join(lines[:index]).rstrip(), "\n".join(lines[index:])
        if line.lstrip().startswith(">") and all(x.lstrip().startswith(">") for x in rest):
            return "\n".join(lines[:index]).rstrip(), "\n".join(lines[index:])
    return text or "", ""


@register.filter
def split_quoted_html(html):
    """(new part, quoted history) of an email's html, which was sanitised with nh3
    at ingest. Each half is cleaned again so both are balanced fragments."""
    html = html or ""
    at = html.lower().find("<blockquote")
    if at <= 0:
        return mark_safe(html), ""
    head = nh3.clean(html[:at], url_schemes=ALLOWED_SCHEMES, link_rel="noopener noreferrer nofollow")
    tail = nh3.clean(html[at:], url_schemes=ALLOWED_SCHEMES, link_rel="noopener noreferrer nofollow")
    if not head.strip():
        return mark_safe(html), ""
    return mark_safe(head), mark_safe(tail)


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
    text = split_quoted_text(message.text)[0] or message.text or message.subject
    return one_line(text, limit)
