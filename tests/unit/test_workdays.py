from datetime import UTC, date, datetime

from xinfang_shared.workdays import add_working_days, is_working_day


def test_holidays_weekends_and_adjusted_working_days_2026() -> None:
    assert not is_working_day(date(2026, 10, 1))  # National Day
    assert not is_working_day(date(2026, 11, 28))  # a Saturday
    assert is_working_day(date(2026, 11, 27))  # a Friday
    adjusted = [
        d
        for d in (date(2026, 2, 14), date(2026, 2, 28), date(2026, 9, 20), date(2026, 10, 10))
        if d.weekday() >= 5 and is_working_day(d)
    ]
    assert adjusted, "2026 has weekend days made working days (调休)"


def test_five_working_days_skip_the_national_day_holiday() -> None:
    assert add_working_days(datetime(2026, 11, 27, 2, tzinfo=UTC), 5) == datetime(2026, 12, 4, 2, tzinfo=UTC)
    assert add_working_days(datetime(2026, 9, 29, 2, tzinfo=UTC), 5) > datetime(2026, 10, 8, tzinfo=UTC)


def test_a_year_without_a_published_calendar_counts_monday_to_friday() -> None:
    # Friday 2029-06-01 + 1 working day is Monday 2029-06-04.
    assert add_working_days(datetime(2029, 6, 1, 2, tzinfo=UTC), 1) == datetime(2029, 6, 4, 2, tzinfo=UTC)
