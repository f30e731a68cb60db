"""Template helpers of the "two agents, one customer" parts of the thread (inbox/presence.py)."""
from django import template

register = template.Library()


@register.simple_tag
def seen_through(composer, items=None):
    """The reply box's seen_through: the newest message the agent has on screen. After a held
    send, the newest of the messages it showed; on a page of thread items, the newest message
    among them; otherwise empty (the page's script fills it from the thread)."""
    stale = (composer or {}).get("stale")
    if stale:
        return stale[-1].pk
    ids = [item.pk for item in items or () if item.kind == "message"]
    return max(ids) if ids else ""
