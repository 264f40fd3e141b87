import logging
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xinfang_shared.workdays import CALENDAR_ENV, CHINA, WorkingCalendar, add_working_days, is_working_day

CALENDAR = WorkingCalendar.default()


def _calendar_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "holidays.toml"
    path.write_text(body, encoding="utf-8")
    return path


def _year(year: int, holidays: str = "[]", working_days: str = "[]", provisional: str = "false") -> str:
    return (
        f'[years.{year}]\nsource = "test"\nprovisional = {provisional}\n'
        f"holidays = {holidays}\nworking_days = {working_days}\n"
    )


# --- the packaged calendar ---------------------------------------------------------------------------------------


def test_the_packaged_calendar_covers_2025_to_2027_with_2027_provisional() -> None:
    assert CALENDAR.years == (2025, 2026, 2027)
    assert CALENDAR.covers(2026)
    assert not CALENDAR.covers(2029)
    assert not CALENDAR.provisional(2025)
    assert not CALENDAR.provisional(2026)
    assert CALENDAR.provisional(2027)
    assert not CALENDAR.provisional(2029)  # not covered at all, which is not provisional


def test_real_known_days_2025_and_2026() -> None:
    assert is_working_day(date(2026, 1, 4))  # Sunday made a working day after New Year's Day
    assert not is_working_day(date(2026, 1, 2))  # New Year's Day holiday, a Friday
    assert not is_working_day(date(2026, 10, 1))  # National Day
    assert not is_working_day(date(2026, 10, 7))  # last day of the National Day holiday, a Wednesday
    assert is_working_day(date(2026, 10, 10))  # Saturday made a working day
    assert is_working_day(date(2025, 1, 26))  # Sunday made a working day before the Spring Festival
    assert not is_working_day(date(2025, 1, 28))  # Spring Festival's eve
    assert not is_working_day(date(2026, 11, 28))  # an ordinary Saturday
    assert not is_working_day(date(2026, 11, 29))  # an ordinary Sunday
    assert is_working_day(date(2026, 11, 27))  # an ordinary Friday


def test_2026_adjusted_working_days_are_the_notices() -> None:
    weekend_working_days = {
        date(2026, 1, 1) + timedelta(days=offset)
        for offset in range(365)
        if (date(2026, 1, 1) + timedelta(days=offset)).weekday() >= 5
        and CALENDAR.is_working_day(date(2026, 1, 1) + timedelta(days=offset))
    }
    assert weekend_working_days == {
        date(2026, 1, 4),
        date(2026, 2, 14),
        date(2026, 2, 28),
        date(2026, 5, 9),
        date(2026, 9, 20),
        date(2026, 10, 10),
    }


def test_2027_is_provisional_from_the_statutory_rules() -> None:
    off = [date(2027, 1, 1), date(2027, 2, 5), date(2027, 2, 8), date(2027, 2, 12), date(2027, 4, 5)]
    off += [date(2027, 5, 3), date(2027, 5, 5), date(2027, 6, 9), date(2027, 9, 15), date(2027, 10, 7)]
    for day in off:
        assert not CALENDAR.is_working_day(day), day
    for day in (date(2027, 1, 31), date(2027, 2, 20), date(2027, 5, 8), date(2027, 9, 26), date(2027, 10, 9)):
        assert day.weekday() >= 5
        assert CALENDAR.is_working_day(day), day
    assert CALENDAR.is_working_day(date(2027, 10, 8))  # Friday after National Day
    assert not CALENDAR.is_working_day(date(2027, 10, 16))  # an ordinary Saturday


def test_a_datetime_is_taken_as_its_own_date() -> None:
    assert not is_working_day(datetime(2026, 10, 1, 9, tzinfo=CHINA))
    assert is_working_day(datetime(2026, 1, 4, 9, tzinfo=CHINA))


# --- years the calendar does not cover ---------------------------------------------------------------------------


def test_a_year_without_a_published_calendar_counts_monday_to_friday() -> None:
    assert not CALENDAR.covers(2029)
    assert [CALENDAR.is_working_day(date(2029, 10, day)) for day in range(1, 8)] == [True] * 5 + [False] * 2
    # Friday 2029-06-01 + 1 working day is Monday 2029-06-04.
    assert add_working_days(datetime(2029, 6, 1, 2, tzinfo=UTC), 1) == datetime(2029, 6, 4, 2, tzinfo=UTC)


def test_uncovered_and_provisional_years_are_logged_once_per_year(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calendar = WorkingCalendar.load(_calendar_file(tmp_path, _year(2040, provisional="true")))
    with caplog.at_level(logging.WARNING, logger="xinfang_shared.workdays"):
        for day in range(1, 4):
            calendar.is_working_day(date(2040, 3, day))
            calendar.is_working_day(date(2041, 3, day))
    messages = [record.getMessage() for record in caplog.records]
    assert sum("provisional" in message for message in messages) == 1
    assert sum("no holiday calendar" in message for message in messages) == 1
    years = sorted(getattr(record, "year", None) for record in caplog.records)
    assert years == [2040, 2041]


# --- adding and counting working days ----------------------------------------------------------------------------


def test_five_working_days_across_the_2026_national_day_holiday() -> None:
    # Tue 09-29 → Wed 09-30 (1), holiday 10-01..10-07, Thu 10-08 (2), Fri 10-09 (3), Sat 10-10 调休 (4), Mon 10-12 (5).
    start = datetime(2026, 9, 29, 2, tzinfo=UTC)
    assert add_working_days(start, 5) == datetime(2026, 10, 12, 2, tzinfo=UTC)
    assert add_working_days(datetime(2026, 9, 30, 2, tzinfo=UTC), 1) == datetime(2026, 10, 8, 2, tzinfo=UTC)
    assert add_working_days(datetime(2026, 11, 27, 2, tzinfo=UTC), 5) == datetime(2026, 12, 4, 2, tzinfo=UTC)


def test_an_adjusted_working_saturday_counts() -> None:
    # Fri 2026-05-08 + 1 is Sat 2026-05-09 (调休), not Mon 05-11.
    assert add_working_days(datetime(2026, 5, 8, 9, tzinfo=CHINA), 1) == datetime(2026, 5, 9, 9, tzinfo=CHINA)
    # Fri 2026-01-02 (holiday) + 1 is Sun 2026-01-04 (调休).
    assert add_working_days(datetime(2026, 1, 2, 9, tzinfo=CHINA), 1) == datetime(2026, 1, 4, 9, tzinfo=CHINA)
    # An ordinary Friday + 1 is Monday.
    assert add_working_days(datetime(2026, 5, 15, 9, tzinfo=CHINA), 1) == datetime(2026, 5, 18, 9, tzinfo=CHINA)


def test_days_are_counted_in_china_and_the_result_keeps_the_start_time_zone() -> None:
    # 2026-09-30 17:00 UTC is 2026-10-01 01:00 in China, inside the holiday: the next working day is 10-08.
    result = add_working_days(datetime(2026, 9, 30, 17, tzinfo=UTC), 1)
    assert result == datetime(2026, 10, 8, 1, tzinfo=CHINA)
    assert result.tzinfo is UTC
    assert add_working_days(datetime(2026, 9, 30, 17, tzinfo=UTC), 0) == datetime(2026, 9, 30, 17, tzinfo=UTC)


def test_working_days_between() -> None:
    calendar = CALENDAR
    start = datetime(2026, 9, 29, 10, tzinfo=CHINA)
    assert calendar.working_days_between(start, datetime(2026, 10, 12, 9, tzinfo=CHINA)) == 5
    assert calendar.working_days_between(start, datetime(2026, 10, 7, 23, tzinfo=CHINA)) == 1  # only 09-30
    assert calendar.working_days_between(start, datetime(2026, 9, 29, 23, tzinfo=CHINA)) == 0  # same day
    assert calendar.working_days_between(start, start) == 0
    assert calendar.working_days_between(start, start - timedelta(days=3)) == 0
    # Ordinary Saturday and Sunday do not count; the 调休 Saturday 2026-10-10 does.
    assert (
        calendar.working_days_between(datetime(2026, 11, 27, tzinfo=CHINA), datetime(2026, 11, 30, tzinfo=CHINA)) == 1
    )
    assert calendar.working_days_between(datetime(2026, 10, 9, tzinfo=CHINA), datetime(2026, 10, 10, tzinfo=CHINA)) == 1
    # Dates are China's: 2026-10-07 16:00 UTC is 10-08 00:00 in China, a working day.
    assert (
        calendar.working_days_between(datetime(2026, 10, 7, 1, tzinfo=UTC), datetime(2026, 10, 7, 16, tzinfo=UTC)) == 1
    )


_ZONES = st.sampled_from(
    [UTC, CHINA, ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin"), timezone(timedelta(hours=-12))]
)


@given(
    start=st.datetimes(
        min_value=datetime.combine(date(2024, 6, 1), time()),
        max_value=datetime.combine(date(2028, 6, 30), time()),
        timezones=_ZONES,
    ),
    n=st.integers(min_value=0, max_value=30),
)
def test_working_days_between_inverts_add_working_days(start: datetime, n: int) -> None:
    end = CALENDAR.add_working_days(start, n)
    assert CALENDAR.working_days_between(start, end) == n
    assert CALENDAR.is_working_day(end.astimezone(CHINA).date()) or n == 0
    assert end.astimezone(CHINA).time() == start.astimezone(CHINA).time()


# --- loading ------------------------------------------------------------------------------------------------------


def test_load_reads_a_calendar_file(tmp_path: Path) -> None:
    body = _year(2031, holidays="[2031-01-01, 2031-01-02]", working_days="[2031-01-04]")
    calendar = WorkingCalendar.load(_calendar_file(tmp_path, body))
    assert calendar.years == (2031,)
    assert not calendar.is_working_day(date(2031, 1, 2))  # Thursday, a holiday
    assert calendar.is_working_day(date(2031, 1, 3))  # Friday
    assert calendar.is_working_day(date(2031, 1, 4))  # Saturday, made a working day


def test_the_environment_variable_replaces_the_packaged_calendar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _calendar_file(tmp_path, _year(2026, holidays="[2026-11-27]"))
    monkeypatch.setenv(CALENDAR_ENV, str(path))
    assert WorkingCalendar.default().years == (2026,)
    assert not is_working_day(date(2026, 11, 27))
    assert is_working_day(date(2026, 10, 1))  # not a holiday in this file
    monkeypatch.delenv(CALENDAR_ENV)
    assert WorkingCalendar.default() is CALENDAR
    assert is_working_day(date(2026, 11, 27))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_year(2026, holidays="[2026-10-01, 2027-01-01]"), "holiday 2027-01-01 is not in 2026"),
        (_year(2026, working_days="[2025-12-27]"), "working day 2025-12-27 is not in 2026"),
        (_year(2026, holidays="[2026-10-10]", working_days="[2026-10-10]"), "2026-10-10 listed both"),
        (_year(2026, working_days="[2026-10-09]"), "working day 2026-10-09 is a Friday"),
        (_year(2026, holidays='["2026-10-01"]'), "is not a date"),
        (_year(2026, holidays="[2026-10-01T00:00:00]"), "is not a date"),
        (_year(2026, provisional='"no"'), "provisional must be true or false"),
        ('[years.2026]\nsource = "test"\nprovisional = false\nholidays = []\n', "missing keys ['working_days']"),
        (_year(2026) + "workdays = []\n", "unknown keys ['workdays']"),
        ('[years.twenty]\nsource = "x"\nprovisional = false\nholidays = []\nworking_days = []\n', "four-digit year"),
        ("holidays = [2026-10-01]\n", "expected only a [years] table"),
        ("[years.2026\n", "not valid TOML"),
    ],
)
def test_load_rejects_an_invalid_calendar(tmp_path: Path, body: str, message: str) -> None:
    path = _calendar_file(tmp_path, body)
    with pytest.raises(ValueError, match=r"holidays\.toml") as raised:
        WorkingCalendar.load(path)
    assert message in str(raised.value)
