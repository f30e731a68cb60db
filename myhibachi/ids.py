"""The one parser for ids and whole numbers that come from a request.

``str.isdigit()`` is true for "²" (which ``int()`` refuses) and for
Arabic-Indic "١٢" (which ``int()`` reads as 12); ``int()`` also accepts
" 1 ", "+1" and "1_000", and a number as large as 2**70 fits no database
integer column. So every id or count read from a query string, a form, a
JSON body or a URL goes through ``parse_id``: ASCII digits 0-9 only (or a
JSON integer), within [minimum, maximum], else ``BadId``.
"""
import re

MAX_ID = 2**63 - 1  # the largest value of a PostgreSQL bigint / SQLite INTEGER

_DIGITS = re.compile(r"[0-9]{1,19}")  # [0-9], not \d: \d matches any Unicode decimal digit


class BadId(ValueError):
    pass


def parse_id(raw, *, minimum: int = 1, maximum: int = MAX_ID) -> int:
    """``raw`` as an int when it is a plain whole number in [minimum, maximum].

    Accepts a str of ASCII digits or a JSON integer (not a bool, not a float);
    raises BadId (a ValueError) for anything else.
    """
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and _DIGITS.fullmatch(raw):
        value = int(raw)
    else:
        raise BadId(f"{raw!r} is not a whole number made of the digits 0-9.")
    if not minimum <= value <= maximum:
        raise BadId(f"{value} is outside {minimum}–{maximum}.")
    return value
