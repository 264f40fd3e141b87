"""Statutory periods (xinfang_shared.periods): Civil Code arts. 200–204 counting on the 调休 calendar.

Dates below are read from shared/src/xinfang_shared/data/holidays.toml:
- Spring Festival 2026: days off 02-15 (Sun) .. 02-23 (Mon); working Saturdays 02-14 and 02-28.
- Mid-autumn 2026: days off 09-25 (Fri) .. 09-27 (Sun); National Day 2026: days off 10-01 (Thu) .. 10-07 (Wed);
  working Sunday 09-20 and working Saturday 10-10.
- Spring Festival 2027 (provisional): days off 02-05 (Fri) .. 02-12 (Fri); working 01-31 (Sun) and 02-20 (Sat).
"""

import doctest
from datetime import UTC, date, datetime, time, timedelta, timezone
from importlib import resources
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xinfang_shared import periods
from xinfang_shared.periods import (
    china_date,
    china_today,
    end_of_day,
    extend_period,
    period_end,
    period_last_day,
    working_period_end,
)
from xinfang_shared.workdays import CHINA, WorkingCalendar

# The packaged calendar itself, whatever XINFANG_HOLIDAY_CALENDAR says in the environment running the tests.
CALENDAR = WorkingCalendar.loads(
    resources.files("xinfang_shared").joinpath("data/holidays.toml").read_text(encoding="utf-8"),
    origin="packaged",
)
BEIJING = timezone(timedelta(hours=8))


def _ends_on(last_day: date) -> datetime:
    """24:00 Beijing on `last_day`, written out by hand: 16:00 UTC that same date."""
    return datetime(last_day.year, last_day.month, last_day.day, 16, tzinfo=UTC)


def _end(start: date, days: int) -> datetime:
    return period_end(datetime.combine(start, time(10), tzinfo=CHINA), days, calendar=CALENDAR)


def _working_end(start: date, days: int) -> datetime:
    return working_period_end(datetime.combine(start, time(10), tzinfo=CHINA), days, calendar=CALENDAR)


# --- the basic rule ----------------------------------------------------------------------------------------------


def test_the_domain_example_tuesday_morning_plus_15_days_ends_at_24_00_on_the_wednesday_two_weeks_later() -> None:
    # By hand: Tue 2026-03-03 is not counted; day 1 is Wed 03-04, day 8 Wed 03-11, day 15 Wed 03-18 (an ordinary
    # working Wednesday, no holiday in March 2026). 24:00 on 03-18 Beijing = 03-19 00:00 +08:00 = 03-18 16:00 UTC.
    start = datetime(2026, 3, 3, 9, 30, tzinfo=CHINA)
    end = period_end(start, 15, calendar=CALENDAR)
    assert start.weekday() == 1  # Tuesday
    assert end == datetime(2026, 3, 18, 16, tzinfo=UTC)
    assert end.tzinfo is UTC
    assert end.astimezone(CHINA) == datetime(2026, 3, 19, 0, 0, tzinfo=CHINA)
    assert period_last_day(end) == date(2026, 3, 18)
    assert period_last_day(end).weekday() == 2  # Wednesday
    # Not the old "start + 15 × 24 h", which would end at 09:30 on the last day.
    assert end > start + timedelta(days=15)


def test_the_module_docstring_example_holds() -> None:
    result = doctest.testmod(periods, verbose=False)
    assert result.attempted >= 1
    assert result.failed == 0


def test_a_start_late_in_the_evening_beijing_counts_from_the_next_beijing_day() -> None:
    # 23:30 +08:00 on Tue 03-03 is 15:30 UTC on 03-03: still Tuesday in Beijing, so the same end as the morning.
    evening = datetime(2026, 3, 3, 23, 30, tzinfo=BEIJING)
    assert evening.astimezone(UTC) == datetime(2026, 3, 3, 15, 30, tzinfo=UTC)
    assert china_date(evening) == date(2026, 3, 3)
    assert period_end(evening, 15, calendar=CALENDAR) == _ends_on(date(2026, 3, 18))
    assert period_end(evening.astimezone(UTC), 15, calendar=CALENDAR) == _ends_on(date(2026, 3, 18))


def test_a_start_just_after_midnight_beijing_is_already_the_next_day_even_if_utc_says_otherwise() -> None:
    # 00:10 +08:00 on Wed 03-04 is 16:10 UTC on Tue 03-03: Wednesday in Beijing, so day 15 is Thu 03-19.
    after_midnight = datetime(2026, 3, 3, 16, 10, tzinfo=UTC)
    assert china_date(after_midnight) == date(2026, 3, 4)
    assert period_end(after_midnight, 15, calendar=CALENDAR) == _ends_on(date(2026, 3, 19))
    # Exactly midnight Beijing belongs to the new day; one microsecond before it to the old one.
    midnight = datetime(2026, 3, 4, 0, 0, tzinfo=CHINA)
    assert period_end(midnight, 15, calendar=CALENDAR) == _ends_on(date(2026, 3, 19))
    assert period_end(midnight - timedelta(microseconds=1), 15, calendar=CALENDAR) == _ends_on(date(2026, 3, 18))


def test_start_in_another_time_zone_is_counted_on_its_beijing_date() -> None:
    # 20:00 in New York on 03-03 (EST, -05:00) is 09:00 in Beijing on 03-04.
    new_york = datetime(2026, 3, 3, 20, tzinfo=ZoneInfo("America/New_York"))
    assert china_date(new_york) == date(2026, 3, 4)
    assert period_end(new_york, 15, calendar=CALENDAR) == _ends_on(date(2026, 3, 19))


def test_length_zero_ends_at_24_00_of_the_start_day_even_on_a_rest_day() -> None:
    assert _end(date(2026, 3, 3), 0) == _ends_on(date(2026, 3, 3))
    assert _end(date(2026, 10, 3), 0) == _ends_on(date(2026, 10, 3))  # National Day, a Saturday: not moved
    assert _working_end(date(2026, 10, 3), 0) == _ends_on(date(2026, 10, 3))
    assert extend_period(_ends_on(date(2026, 3, 18)), 0, calendar=CALENDAR) == _ends_on(date(2026, 3, 18))


def test_one_day_period_ends_at_24_00_of_the_next_day() -> None:
    assert _end(date(2026, 3, 3), 1) == _ends_on(date(2026, 3, 4))
    assert _working_end(date(2026, 3, 3), 1) == _ends_on(date(2026, 3, 4))


# --- a last day on a rest day --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days", "last_day"),
    [
        # By hand: 09-16 + 15 = 10-01 (Thu), National Day; 10-02 .. 10-07 are off too, 10-08 (Thu) is a working
        # day, so the last day is 10-08 and the period ends 10-09 00:00 +08:00 = 10-08 16:00 UTC.
        (date(2026, 9, 16), 15, date(2026, 10, 8)),
        (date(2026, 9, 22), 15, date(2026, 10, 8)),  # 10-07, the last day of the holiday
        (date(2026, 9, 25), 15, date(2026, 10, 10)),  # 10-10 is a Saturday made a working day: stays
        (date(2026, 9, 26), 15, date(2026, 10, 12)),  # 10-11 is an ordinary Sunday: Monday 10-12
        (date(2026, 9, 5), 15, date(2026, 9, 20)),  # 09-20 is a Sunday made a working day: stays
        (date(2026, 9, 11), 15, date(2026, 9, 28)),  # 09-26 (Mid-autumn, a Saturday): Monday 09-28
        (date(2026, 8, 2), 60, date(2026, 10, 8)),  # handling: 08-02 + 60 = 10-01
    ],
)
def test_national_day_2026(start: date, days: int, last_day: date) -> None:
    assert _end(start, days) == _ends_on(last_day)


@pytest.mark.parametrize(
    ("start", "days", "last_day"),
    [
        (date(2026, 2, 1), 15, date(2026, 2, 24)),  # 02-16 (Spring Festival's eve) -> Tue 02-24
        (date(2026, 2, 8), 15, date(2026, 2, 24)),  # 02-23, the last day off (a Monday) -> Tue 02-24
        (date(2026, 1, 31), 15, date(2026, 2, 24)),  # 02-15, the first day off (a Sunday) -> Tue 02-24
        (date(2026, 1, 30), 15, date(2026, 2, 14)),  # 02-14 is a Saturday made a working day: stays
        (date(2026, 2, 13), 15, date(2026, 2, 28)),  # 02-28 is a Saturday made a working day: stays
        # By hand: 2025-12-20 + 11 = 12-31, + 31 = 2026-01-31 (42), + 18 = 02-18 (60), a day off -> 02-24.
        (date(2025, 12, 20), 60, date(2026, 2, 24)),
    ],
)
def test_spring_festival_2026(start: date, days: int, last_day: date) -> None:
    assert _end(start, days) == _ends_on(last_day)


def test_spring_festival_2027_provisional() -> None:
    assert CALENDAR.provisional(2027)
    # 01-26 + 15 = 02-10 (Wed), off; so are 02-11 and 02-12 and then the ordinary weekend 02-13/14: Mon 02-15.
    assert _end(date(2027, 1, 26), 15) == _ends_on(date(2027, 2, 15))
    # 02-05 + 15 = 02-20, a Saturday the provisional table makes a working day: stays.
    assert _end(date(2027, 2, 5), 15) == _ends_on(date(2027, 2, 20))


def test_a_last_day_on_an_ordinary_weekend_moves_to_monday() -> None:
    assert date(2026, 11, 28).weekday() == 5
    assert _end(date(2026, 11, 13), 15) == _ends_on(date(2026, 11, 30))  # Sat 11-28 -> Mon 11-30
    assert _end(date(2026, 11, 14), 15) == _ends_on(date(2026, 11, 30))  # Sun 11-29 -> Mon 11-30
    assert _end(date(2026, 11, 12), 15) == _ends_on(date(2026, 11, 27))  # Fri 11-27 stays


def test_a_start_on_a_holiday_is_counted_like_any_other_day() -> None:
    # The start day is not counted whatever it is: 10-03 + 15 = 10-18, a Sunday -> Mon 10-19.
    assert _end(date(2026, 10, 3), 15) == _ends_on(date(2026, 10, 19))


# --- working-day periods -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days", "last_day"),
    [
        # By hand, from Tue 09-29: 1 = Wed 09-30; 10-01 .. 10-07 off; 2 = Thu 10-08, 3 = Fri 10-09,
        # 4 = Sat 10-10 (made a working day), Sun 10-11 off, 5 = Mon 10-12.
        (date(2026, 9, 29), 5, date(2026, 10, 12)),
        # From Fri 09-18: Sat 09-19 off; 1 = Sun 09-20 (made a working day), 2..5 = Mon 09-21 .. Thu 09-24.
        (date(2026, 9, 18), 5, date(2026, 9, 24)),
        # From Wed 09-23: 1 = 09-24; 09-25 .. 09-27 and 10-01 .. 10-07 off; 2 = 09-28, 3 = 09-29, 4 = 09-30,
        # 5 = 10-08.
        (date(2026, 9, 23), 5, date(2026, 10, 8)),
        # From a holiday, Sat 10-03: 1 = 10-08, 2 = 10-09, 3 = 10-10, 4 = 10-12, 5 = 10-13.
        (date(2026, 10, 3), 5, date(2026, 10, 13)),
        # Simplified handling, 10 working days from Fri 09-25: 09-28, 09-29, 09-30, 10-08, 10-09, 10-10, 10-12,
        # 10-13, 10-14, 10-15.
        (date(2026, 9, 25), 10, date(2026, 10, 15)),
    ],
)
def test_working_day_periods_across_national_day_2026(start: date, days: int, last_day: date) -> None:
    assert _working_end(start, days) == _ends_on(last_day)


def test_working_day_period_counts_on_the_beijing_date_of_the_start() -> None:
    # 16:30 UTC on Tue 09-29 is 00:30 on Wed 09-30 in Beijing: 1 = 10-08, ..., 5 = 10-13.
    assert working_period_end(datetime(2026, 9, 29, 16, 30, tzinfo=UTC), 5, calendar=CALENDAR) == _ends_on(
        date(2026, 10, 13)
    )


# --- extensions ----------------------------------------------------------------------------------------------------


def test_an_extension_counts_from_the_current_last_day_after_its_move() -> None:
    # Handling from 08-02: 60 days -> 10-01, moved to 10-08. A 30-day extension counts from 10-08:
    # 10-08 + 30 = 11-07 (Sat) -> Mon 11-09. (Counting from the unmoved 10-01 would give Sat 10-31 -> 11-02.)
    handling = _end(date(2026, 8, 2), 60)
    assert period_last_day(handling) == date(2026, 10, 8)
    extended = extend_period(handling, 30, calendar=CALENDAR)
    assert extended == _ends_on(date(2026, 11, 9))
    assert extended.tzinfo is UTC


def test_an_extension_on_working_days_stays_and_can_land_in_a_holiday() -> None:
    # 03-18 + 30 = 04-17 (Fri): stays. 03-18 + 17 = 04-04 (Tomb-sweeping, Sat) -> 04-07 (Tue).
    end = _ends_on(date(2026, 3, 18))
    assert extend_period(end, 30, calendar=CALENDAR) == _ends_on(date(2026, 4, 17))
    assert extend_period(end, 17, calendar=CALENDAR) == _ends_on(date(2026, 4, 7))


def test_an_extension_given_an_end_in_another_time_zone_is_the_same() -> None:
    end = _ends_on(date(2026, 3, 18))
    assert extend_period(end.astimezone(CHINA), 30, calendar=CALENDAR) == _ends_on(date(2026, 4, 17))


def test_an_end_moved_off_midnight_has_its_own_beijing_date_as_last_day() -> None:
    # e.g. a clock paused for 5 hours: 03-19 05:00 Beijing; its last day is 03-19, so + 30 = 04-18 (Sat) -> 04-20.
    paused = datetime(2026, 3, 19, 5, tzinfo=CHINA)
    assert period_last_day(paused) == date(2026, 3, 19)
    assert extend_period(paused, 30, calendar=CALENDAR) == _ends_on(date(2026, 4, 20))


# --- helpers and validation -----------------------------------------------------------------------------------------


def test_china_date_and_today() -> None:
    assert china_date(datetime(2026, 12, 31, 16, tzinfo=UTC)) == date(2027, 1, 1)
    assert china_date(datetime(2026, 12, 31, 15, 59, 59, tzinfo=UTC)) == date(2026, 12, 31)
    assert china_today(datetime(2026, 3, 3, 16, 10, tzinfo=UTC)) == date(2026, 3, 4)
    assert china_today(datetime(2026, 3, 4, 7, 59, tzinfo=UTC)) == date(2026, 3, 4)


def test_end_of_day_is_16_00_utc_of_that_date() -> None:
    assert end_of_day(date(2026, 12, 31)) == datetime(2026, 12, 31, 16, tzinfo=UTC)
    assert end_of_day(date(2026, 12, 31)).astimezone(CHINA) == datetime(2027, 1, 1, tzinfo=CHINA)


def test_naive_instants_and_negative_lengths_are_refused() -> None:
    naive = datetime(2026, 3, 3, 9)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="timezone-aware"):
        china_date(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        period_end(naive, 15, calendar=CALENDAR)
    with pytest.raises(ValueError, match="timezone-aware"):
        working_period_end(naive, 5, calendar=CALENDAR)
    with pytest.raises(ValueError, match="timezone-aware"):
        extend_period(naive, 30, calendar=CALENDAR)
    aware = datetime(2026, 3, 3, 9, tzinfo=CHINA)
    for count in (period_end, working_period_end, extend_period):
        with pytest.raises(ValueError, match="0 or more"):
            count(aware, -1, calendar=CALENDAR)


def test_the_calendar_passed_is_the_one_used() -> None:
    # A calendar that makes 2026-03-18 a holiday moves the DOMAIN example's last day to Thursday 03-19.
    custom = WorkingCalendar.loads(
        '[years.2026]\nsource = "test"\nprovisional = false\nholidays = [2026-03-18]\nworking_days = []\n'
    )
    start = datetime(2026, 3, 3, 9, tzinfo=CHINA)
    assert period_end(start, 15, calendar=custom) == _ends_on(date(2026, 3, 19))
    assert period_end(start, 15, calendar=CALENDAR) == _ends_on(date(2026, 3, 18))
    assert working_period_end(datetime(2026, 3, 17, 9, tzinfo=CHINA), 1, calendar=custom) == _ends_on(date(2026, 3, 19))


def test_a_calendar_without_any_working_day_is_an_error_not_a_hang() -> None:
    days_off = ", ".join((date(2026, 1, 1) + timedelta(days=n)).isoformat() for n in range(365))
    broken = WorkingCalendar.loads(
        f'[years.2026]\nsource = "test"\nprovisional = false\nholidays = [{days_off}]\nworking_days = []\n'
    )
    with pytest.raises(ValueError, match="no working day"):
        period_end(datetime(2026, 3, 3, 9, tzinfo=CHINA), 15, calendar=broken)


def test_default_calendar_is_the_packaged_one() -> None:
    # Without `calendar`, WorkingCalendar.default(): the packaged file unless XINFANG_HOLIDAY_CALENDAR is set.
    assert period_end(datetime(2026, 9, 16, 9, tzinfo=CHINA), 15) == _ends_on(date(2026, 10, 8))
    assert working_period_end(datetime(2026, 9, 29, 9, tzinfo=CHINA), 5) == _ends_on(date(2026, 10, 12))
    assert extend_period(_ends_on(date(2026, 10, 8)), 30) == _ends_on(date(2026, 11, 9))


# --- properties ----------------------------------------------------------------------------------------------------

# Naive bounds, as hypothesis wants them (it attaches the zone): the years the calendar covers.
FIRST, LAST = datetime(2025, 1, 1), datetime(2027, 12, 31, 23, 59)  # noqa: DTZ001
ZONES = st.sampled_from([UTC, CHINA, BEIJING, ZoneInfo("America/New_York"), ZoneInfo("Europe/London")])
STARTS = st.datetimes(min_value=FIRST, max_value=LAST, timezones=ZONES)
LENGTHS = st.integers(min_value=1, max_value=120)


def _longest_rest_run(first: date, last: date) -> int:
    longest = run = 0
    day = first
    while day <= last:
        run = 0 if CALENDAR.is_working_day(day) else run + 1
        longest = max(longest, run)
        day += timedelta(days=1)
    return longest


# Over every day a property's last day can fall on (2025 to 120 + a few days into 2028).
LONGEST_REST_RUN = _longest_rest_run(date(2025, 1, 1), date(2028, 6, 30))


def test_the_longest_rest_run_is_a_spring_festival_length() -> None:
    # Spring Festival 2026 is 9 days off; the provisional 2027 one runs 02-05 .. 02-12 into the weekend: 10.
    assert 9 <= LONGEST_REST_RUN <= 10


def _is_beijing_midnight_in_utc(end: datetime) -> bool:
    return end.tzinfo is UTC and end.astimezone(CHINA).time() == time(0) and end.astimezone(CHINA).tzinfo is CHINA


@given(STARTS, LENGTHS)
def test_calendar_period_properties(start: datetime, days: int) -> None:
    end = period_end(start, days, calendar=CALENDAR)
    last = period_last_day(end)
    nominal = china_date(start) + timedelta(days=days)
    assert _is_beijing_midnight_in_utc(end)
    assert end == end_of_day(last)
    assert CALENDAR.is_working_day(last)
    assert end - start >= timedelta(days=days)
    assert nominal <= last <= nominal + timedelta(days=LONGEST_REST_RUN)
    # Moved only past rest days: every day from the nominal last day up to the last day is a rest day.
    assert all(not CALENDAR.is_working_day(nominal + timedelta(days=n)) for n in range((last - nominal).days))


@given(STARTS, LENGTHS)
def test_working_period_properties(start: datetime, days: int) -> None:
    end = working_period_end(start, days, calendar=CALENDAR)
    last = period_last_day(end)
    assert _is_beijing_midnight_in_utc(end)
    assert CALENDAR.is_working_day(last)
    counted = [
        china_date(start) + timedelta(days=n)
        for n in range(1, (last - china_date(start)).days + 1)
        if CALENDAR.is_working_day(china_date(start) + timedelta(days=n))
    ]
    assert len(counted) == days
    assert counted[-1] == last
    assert end - start >= timedelta(days=days)


@given(STARTS, LENGTHS, st.integers(min_value=1, max_value=30))
def test_extension_properties(start: datetime, days: int, more: int) -> None:
    end = period_end(start, days, calendar=CALENDAR)
    extended = extend_period(end, more, calendar=CALENDAR)
    nominal = period_last_day(end) + timedelta(days=more)
    assert _is_beijing_midnight_in_utc(extended)
    assert CALENDAR.is_working_day(period_last_day(extended))
    assert nominal <= period_last_day(extended) <= nominal + timedelta(days=LONGEST_REST_RUN)
    # Counting from the (possibly moved) last day never ends before counting the whole length from the start.
    assert extended >= period_end(start, days + more, calendar=CALENDAR)
    assert extend_period(end, 0, calendar=CALENDAR) == end


@given(STARTS)
def test_length_zero_property(start: datetime) -> None:
    assert period_end(start, 0, calendar=CALENDAR) == end_of_day(china_date(start))
    assert working_period_end(start, 0, calendar=CALENDAR) == end_of_day(china_date(start))
