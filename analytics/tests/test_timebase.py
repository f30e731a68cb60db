"""Dates in the business time zone, ranges and business hours, worked out by hand."""
from datetime import date

import pytest

from analytics import timebase
from analytics.tests.helpers import local


@pytest.fixture(autouse=True)
def la(settings):
    settings.BUSINESS_TIME_ZONE = "America/Los_Angeles"
    settings.BUSINESS_HOLIDAYS = frozenset()


def test_weeks_start_monday_and_months_on_the_first():
    rng = timebase.Range(date(2026, 3, 4), date(2026, 3, 18), "week")  # a Wednesday to a Wednesday
    assert rng.buckets() == [date(2026, 3, 2), date(2026, 3, 9), date(2026, 3, 16)]
    assert timebase.Range(date(2026, 1, 31), date(2026, 3, 1), "month").buckets() == [
        date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]


def test_half_past_eleven_at_night_on_a_months_last_day_is_that_months_date():
    # 23:30 on 31 January in Los Angeles is already 1 February in UTC.
    moment = local(2026, 1, 31, 23, 30)
    assert moment.astimezone(timebase.dt_timezone.utc).date() == date(2026, 2, 1)
    assert timebase.local_date(moment) == date(2026, 1, 31)


def test_a_range_covers_whole_local_days_even_across_a_clock_change():
    rng = timebase.Range(date(2026, 3, 8), date(2026, 3, 8))  # the spring-forward day: 23 hours long
    assert (rng.until - rng.since).total_seconds() == 23 * 3600
    assert rng.since == local(2026, 3, 8, 0, 0)


@pytest.mark.parametrize("params, message", [
    ({"start": "2026-02-30"}, "'start' must be a date written YYYY-MM-DD"),
    ({"end": "yesterday"}, "'end' must be a date"),
    ({"start": "2026-03-02", "end": "2026-03-01"}, "'start' is after 'end'"),
    ({"start": "2010-01-01", "end": "2026-01-01"}, "longer than 10 years"),
    ({"interval": "year"}, "'interval' must be one of day, week, month"),
])
def test_bad_ranges_say_what_is_wrong(params, message):
    with pytest.raises(timebase.BadRange, match=message):
        timebase.parse_range(params, today=date(2026, 6, 1))


def test_default_range_is_the_last_thirty_days():
    rng = timebase.parse_range({}, today=date(2026, 6, 30))
    assert (rng.start, rng.end, rng.interval) == (date(2026, 6, 1), date(2026, 6, 30), "day")


def test_business_seconds_skip_a_weekend_and_a_holiday(settings):
    settings.BUSINESS_HOURS = {d: ("09:00", "17:00") for d in ("mon", "tue", "wed", "thu", "fri")}
    settings.BUSINESS_HOLIDAYS = frozenset({"2026-12-25"})  # a Friday
    # Thursday 24 Dec 16:00 -> Monday 28 Dec 10:00: Thu 16-17 (1 h), Fri holiday, Sat+Sun closed, Mon 9-10 (1 h).
    assert timebase.business_seconds(local(2026, 12, 24, 16), local(2026, 12, 28, 10)) == 2 * 3600
    # Without the holiday the Friday's 8 hours count too.
    settings.BUSINESS_HOLIDAYS = frozenset()
    assert timebase.business_seconds(local(2026, 12, 24, 16), local(2026, 12, 28, 10)) == 10 * 3600


def test_business_seconds_with_a_lunch_break(settings):
    settings.BUSINESS_HOURS = {"mon": [("09:00", "12:00"), ("13:00", "17:00")]}
    # Monday 11:00 -> 14:00: 11-12 and 13-14.
    assert timebase.business_seconds(local(2026, 6, 1, 11), local(2026, 6, 1, 14)) == 2 * 3600


def test_business_and_wall_seconds_across_the_spring_forward_weekend(settings):
    settings.BUSINESS_HOURS = {"sat": ("10:00", "22:00"), "sun": ("01:00", "20:00"), "mon": ("09:00", "21:00")}
    start, end = local(2026, 3, 7, 20), local(2026, 3, 9, 10)
    # Wall: Saturday 20:00 PST (04:00 UTC Sunday) to Monday 10:00 PDT (17:00 UTC Monday) = 37 h, not 38.
    assert (end - start).total_seconds() == 38 * 3600  # Python's same-zone subtraction ignores the change...
    assert (end.astimezone(timebase.dt_timezone.utc) - start.astimezone(timebase.dt_timezone.utc)
            ).total_seconds() == 37 * 3600  # ...which is why durations are taken between UTC instants.
    # Business: Sat 20-22 (2 h) + Sun 01:00-20:00 minus the skipped hour 02:00-03:00 (18 h) + Mon 9-10 (1 h).
    assert timebase.business_seconds(start, end) == 21 * 3600


def test_no_business_hours_means_no_business_figure(settings):
    settings.BUSINESS_HOURS = {}
    assert timebase.business_seconds(local(2026, 6, 1, 9), local(2026, 6, 1, 10)) is None


def test_business_hours_from_the_environment():
    from django.core.exceptions import ImproperlyConfigured

    from myhibachi.settings import _business_hours

    assert _business_hours("mon=09:00-12:00/13:00-21:00; sat=10:00-22:00") == {
        "mon": [("09:00", "12:00"), ("13:00", "21:00")], "sat": [("10:00", "22:00")]}
    assert _business_hours("off") == {}
    for bad in ("funday=09:00-17:00", "mon=17:00-09:00", "mon=9-5"):
        with pytest.raises(ImproperlyConfigured, match="BUSINESS_HOURS"):
            _business_hours(bad)
