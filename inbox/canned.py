"""Canned-response bodies: a tiny, sandboxed variable language.

Only ``{{ object.attribute }}`` placeholders from the ALLOWED table are
understood. No Django template engine runs, so no tag or filter can reach the
database or the file system. Unknown variables and any ``{% ... %}`` block are
refused when a response is saved, never at send time.
"""
import re

from django.core.exceptions import ValidationError
from django.utils import formats, timezone

PLACEHOLDER = re.compile(r"{{\s*([a-zA-Z_][\w.]*)\s*}}")
ALLOWED = {
    "customer.first_name": "The customer's first name",
    "customer.last_name": "The customer's last name",
    "customer.name": "The customer's full name",
    "agent.first_name": "The replying staff member's first name",
    "agent.name": "The replying staff member's full name",
    "booking.event_date": "The date of the customer's next upcoming booking",
    "booking.event_time": "The time of the customer's next upcoming booking",
    "booking.guest_count": "Guests at the customer's next upcoming booking",
}


def validate_body(body: str) -> None:
    if "{%" in body or "%}" in body:
        raise ValidationError("Template tags ({% … %}) are not allowed; use only {{ variables }}.")
    unknown = sorted({name for name in PLACEHOLDER.findall(body) if name not in ALLOWED})
    if unknown:
        allowed = ", ".join("{{ %s }}" % name for name in ALLOWED)
        raise ValidationError(
            f"Unknown variable(s): {', '.join(unknown)}. Allowed: {allowed}.", code="unknown_variable"
        )
    leftover = PLACEHOLDER.sub("", body)
    if "{{" in leftover or "}}" in leftover:
        raise ValidationError("A {{ variable }} is not closed or not written as {{ object.attribute }}.")


def context_for(*, customer, agent, booking=None) -> dict:
    """The values a body may use. booking is the next upcoming booking, if any."""
    local = timezone.localtime(booking.event_at, timezone=_business_tz()) if booking else None
    return {
        "customer.first_name": customer.first_name,
        "customer.last_name": customer.last_name,
        "customer.name": customer.name,
        "agent.first_name": (agent.first_name or agent.get_username()) if agent else "",
        "agent.name": (agent.get_full_name() or agent.get_username()) if agent else "",
        "booking.event_date": formats.date_format(local, "N j, Y") if local else "",
        "booking.event_time": formats.time_format(local, "P") if local else "",
        "booking.guest_count": str(booking.guest_count) if booking else "",
    }


def render(body: str, context: dict) -> str:
    return PLACEHOLDER.sub(lambda m: context.get(m.group(1), ""), body)


def _business_tz():
    from zoneinfo import ZoneInfo

    from django.conf import settings

    return ZoneInfo(settings.BUSINESS_TIME_ZONE)
