"""Time in analytics: the business time zone, periods, business hours.

Every date a manager sees is a date in settings.BUSINESS_TIME_ZONE (a named
zone, never a fixed offset): timestamps are converted to that zone and only
then truncated to a day, week (starting Monday, ISO) or month. A range
start..end is inclusive of both local dates.
"""
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone as dt_timezone
from zoneinfo import ZoneInfo

from django.conf import settings

from inbox.routing import business_intervals

INTERVALS = ("day", "week", "month")
MAX_RANGE_DAYS = 3653  # ten years


class BadRange(ValueError):
    """The request's start/end/interval cannot be used; the message says why."""


def zone() -> ZoneInfo:
    return ZoneInfo(settings.BUSINESS_TIME_ZONE)


def local_midnight(day: date) -> datetime:
    """The aware UTC instant a local day begins."""
    return datetime.combine(day, time.min, tzinfo=zone()).astimezone(dt_timezone.utc)


def local_date(moment: datetime) -> date:
    return moment.astimezone(zone()).date()


def bucket(day: date, interval: str) -> date:
    """The first local date of the period holding this day."""
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def next_bucket(start: date, interval: str) -> date:
    if interval == "week":
        return start + timedelta(days=7)
    if interval == "month":
        return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start + timedelta(days=1)


def shift_year(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


@dataclass(frozen=True)
class Range:
    start: date
    end: date  # inclusive
    interval: str = "day"

    @property
    def since(self) -> datetime:
        return local_midnight(self.start)

    @property
    def until(self) -> datetime:
        """Exclusive upper bound: the local midnight after the last day."""
        return local_midnight(self.end + timedelta(days=1))

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def buckets(self) -> list:
        """Every period start from the period holding start to the one holding end: empty ones included."""
        out, current = [], bucket(self.start, self.interval)
        while current <= self.end:
            out.append(current)
            current = next_bucket(current, self.interval)
        return out

    def spans(self) -> list:
        """[(period start, since, until)]: each period as the instants it covers, clipped to the range."""
        return [(b, max(local_midnight(b), self.since), min(local_midnight(next_bucket(b, self.interval)), self.until))
                for b in self.buckets()]

    def previous(self) -> "Range":
        """The same number of days just before."""
        return Range(self.start - timedelta(days=self.days), self.start - timedelta(days=1), self.interval)

    def last_year(self) -> "Range":
        return Range(shift_year(self.start, -1), shift_year(self.end, -1), self.interval)


def parse_range(params, *, today: date | None = None) -> Range:
    """start/end (YYYY-MM-DD, default: the last 30 days to today) and interval (day|week|month)."""
    today = today or local_date(datetime.now(dt_timezone.utc))
    values = {}
    for name, default in (("start", today - timedelta(days=29)), ("end", today)):
        raw = params.get(name)
        if raw in (None, ""):
            values[name] = default
            continue
        try:
            values[name] = date.fromisoformat(raw) if len(raw) == 10 else None
        except ValueError:
            values[name] = None
        if values[name] is None:
            raise BadRange(f"'{name}' must be a date written YYYY-MM-DD, got {raw[:40]!r}.")
    interval = params.get("interval") or "day"
    if interval not in INTERVALS:
        raise BadRange(f"'interval' must be one of day, week, month, got {interval[:40]!r}.")
    if values["start"] > values["end"]:
        raise BadRange("'start' is after 'end'.")
    if (values["end"] - values["start"]).days + 1 > MAX_RANGE_DAYS:
        raise BadRange("The range is longer than 10 years.")
    return Range(values["start"], values["end"], interval)


# --- the dashboard's presets -----------------------------------------------------------------
PRESETS = [("this_month", "This month"), ("last_month", "Last month"), ("quarter", "This quarter"),
           ("ytd", "Year to date"), ("last_12_months", "Last 12 months"), ("custom", "Custom")]


def preset_range(name: str, today: date) -> tuple[date, date]:
    """The local dates a preset covers, today included where it is in them."""
    month = today.replace(day=1)
    if name == "last_month":
        end = month - timedelta(days=1)
        return end.replace(day=1), end
    if name == "quarter":
        return month.replace(month=(today.month - 1) // 3 * 3 + 1), today
    if name == "ytd":
        return today.replace(month=1, day=1), today
    if name == "last_12_months":
        return _months_back(month, 11), today
    return month, today


def _months_back(first: date, n: int) -> date:
    for _ in range(n):
        first = (first - timedelta(days=1)).replace(day=1)
    return first


def auto_interval(rng_days: int) -> str:
    return "day" if rng_days <= 62 else "week" if rng_days <= 190 else "month"


def chosen_range(params, today):
    """(Range, preset, error message or None) from the page's query string."""
    preset = params.get("preset") or "this_month"
    if preset not in dict(PRESETS):
        preset = "this_month"
    if preset == "custom":
        try:
            rng = parse_range(params, today=today)
        except BadRange as exc:
            start, end = preset_range("this_month", today)
            return Range(start, end, "day"), preset, str(exc)
    else:
        start, end = preset_range(preset, today)
        rng = Range(start, end)
    interval = params.get("interval")
    if interval not in INTERVALS:
        interval = auto_interval(rng.days)
    return Range(rng.start, rng.end, interval), preset, None


def preset_ranges(today: date) -> list:
    """The ranges the presets show today (custom aside), with the page's interval for each."""
    return [chosen_range({"preset": name}, today)[0] for name, _ in PRESETS if name != "custom"]


def business_seconds(start: datetime, end: datetime) -> float | None:
    """Seconds between two instants that fall inside business hours (None: no BUSINESS_HOURS set).

    Each local date from start to end contributes the overlap of its opening
    intervals (none on holidays and closed days); overlaps are measured between
    UTC instants, so a daylight-saving night counts its real length.
    """
    known = getattr(_remembered, "days", None) is not None  # inside remembered_hours(): settings read once
    if not (_remembered.hours if known else settings.BUSINESS_HOURS):
        return None
    if end <= start:
        return 0.0
    tz = _remembered.tz if known else zone()
    start, end = start.astimezone(dt_timezone.utc), end.astimezone(dt_timezone.utc)
    total, day, last = 0.0, start.astimezone(tz).date(), end.astimezone(tz).date()
    while day <= last:
        for opens, closes in _open_instants(day, tz):
            lo, hi = max(start, opens), min(end, closes)
            if hi > lo:
                total += (hi - lo).total_seconds()
        day += timedelta(days=1)
    return total


_remembered = threading.local()


@contextmanager
def remembered_hours():
    """Within it, each local day's opening instants are worked out once (a refresh times thousands of
    waits over the same days; the settings do not change during one)."""
    _remembered.days, _remembered.tz, _remembered.hours = {}, zone(), bool(settings.BUSINESS_HOURS)
    try:
        yield
    finally:
        _remembered.days = None


def _open_instants(day: date, tz) -> list:
    """[(opens, closes)] of a local day as UTC instants."""
    cache = getattr(_remembered, "days", None)
    if cache is not None and day in cache:
        return cache[day]
    found = [(datetime.combine(day, opens, tzinfo=tz).astimezone(dt_timezone.utc),
              datetime.combine(day, closes, tzinfo=tz).astimezone(dt_timezone.utc))
             for opens, closes in business_intervals(day)]
    if cache is not None:
        cache[day] = found
    return found
