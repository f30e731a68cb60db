"""How staff screens write a moment: the one formatter of the rows, the thread and their titles.

The screens write times without the template `date` filter (it cost more than
the rest of a row); these read exactly as the filter writes them, with the
same translated month names and AM/PM, and its rule for a wall time that
happens twice or never (no zone name then). Tests hold the two equal across
daylight-saving changes.
"""
import functools

from django.utils.dates import MONTHS_3
from django.utils.translation import get_language
from django.utils.translation import gettext as _


@functools.lru_cache(maxsize=16)
def time_words(language):
    """The `date` filter's month abbreviations and AM/PM in this language."""
    return [str(month).title() for month in MONTHS_3.values()], _("AM"), _("PM")


def short_time(local, words=None) -> str:
    """A local time as |date:"M j, g:i A T" writes it ("Jan 15, 12:30 PM EST")."""
    return _written(local, words, with_year=False)


def long_time(local, words=None) -> str:
    """A local time as |date:"M j, Y, g:i A T" writes it ("Jan 15, 2026, 12:30 PM EST")."""
    return _written(local, words, with_year=True)


def _written(local, words, *, with_year) -> str:
    months, am, pm = words or time_words(get_language())
    certain = local.utcoffset() == local.replace(fold=1 - local.fold).utcoffset()
    year = f" {local.year}," if with_year else ""
    return (f"{months[local.month - 1]} {local.day},{year} {local.hour % 12 or 12}:{local.minute:02d} "
            f"{pm if local.hour > 11 else am} {local.tzname() if certain else ''}")
