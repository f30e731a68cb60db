"""How the dashboard writes a figure: money, counts, rates, durations; None is a dash."""
from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def figure(value, kind="count"):
    if value is None or value == "":
        return "—"
    if kind == "money":
        return f"${Decimal(value):,.2f}"
    if kind == "rate":
        return f"{float(value) * 100:.1f}%"
    if kind == "ratio":
        return f"{float(value):.2f}×"
    if kind == "duration":
        seconds = float(value)
        if seconds < 60:
            return f"{seconds:.0f} s"
        if seconds < 3600:
            return f"{seconds / 60:.1f} min"
        return f"{seconds / 3600:.1f} h"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


@register.filter
def change(value, against="previous period"):
    if value is None:
        return ""
    return f"{'+' if value >= 0 else ''}{value * 100:.1f}% vs {against}"


@register.filter
def get(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None
