"""Statutory periods counted as Chinese law counts them (Civil Code arts. 200–204, as the procedure laws count).

- The day of the starting event is not counted: counting starts the next day. Days are Beijing dates
  (Asia/Shanghai), whatever time zone the starting instant is given in.
- A period of N calendar days has as its last day the start date + N. If that day is a statutory rest day
  (法定休假日), the last day moves to the first working day after it (art. 203). 法定休假日 is read as public
  holidays and weekend rest days, as the courts read art. 203; a weekend day made a working day (调休) is a
  working day, so a last day on it stays there. Working days come from a `WorkingCalendar`
  (`WorkingCalendar.default()` unless one is passed).
- A period of N working days has as its last day the N-th working day after the start date.
- A period ends at 24:00 Beijing time on its last day. It is returned as the instant 00:00 Asia/Shanghai of the
  next day, as an aware datetime in UTC (16:00 UTC of the last day); "overdue" is `now >= end`.
- Length 0 ends at 24:00 of the start day itself, not moved past a rest day.
- An extension of M days is counted from the running period's last day: the new last day is the old last day
  + M, moved past rest days as above (`extend_period`).

Example (DOMAIN.md): a 15-day period that starts on Tuesday 3 March 2026 at 09:00 Beijing time counts from
Wednesday 4 March; its last day is Wednesday 18 March, so it ends at 24:00 that day, 2026-03-18T16:00:00Z:

    >>> from datetime import datetime
    >>> from xinfang_shared.workdays import CHINA
    >>> period_end(datetime(2026, 3, 3, 9, tzinfo=CHINA), 15).isoformat()
    '2026-03-18T16:00:00+00:00'
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from xinfang_shared.workdays import CHINA, WorkingCalendar

__all__ = [
    "china_date",
    "china_today",
    "end_of_day",
    "extend_period",
    "period_end",
    "period_last_day",
    "working_period_end",
]

# No calendar has a rest-day run anywhere near this long; past it the calendar is broken, not the count.
_MAX_REST_RUN = 60
_JUST_BEFORE = timedelta(microseconds=1)


def china_date(instant: datetime) -> date:
    """The Beijing (Asia/Shanghai) calendar date of the aware `instant`; `ValueError` if it is naive."""
    _require_aware(instant, "instant")
    return instant.astimezone(CHINA).date()


def china_today(now: datetime) -> date:
    """Today's date in Beijing at the aware instant `now` (same as `china_date(now)`)."""
    return china_date(now)


def end_of_day(day: date) -> datetime:
    """24:00 Beijing time on `day`: 00:00 Asia/Shanghai of the next day, in UTC."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=CHINA).astimezone(UTC)


def period_last_day(end: datetime) -> date:
    """The last day of a period that ends at `end`: the Beijing date of the instant just before `end`.

    For an end this module returned (00:00 Beijing) that is the day before `end`'s Beijing date; an end at any
    other time (e.g. moved by a paused clock) has its own Beijing date as its last day.
    """
    _require_aware(end, "end")
    return china_date(end - _JUST_BEFORE)


def period_end(start: datetime, days: int, *, calendar: WorkingCalendar | None = None) -> datetime:
    """The end (UTC) of a period of `days` calendar days started at the aware instant `start`.

    Last day: `china_date(start) + days`, moved to the first working day after it if it is a rest day
    (not moved when `days == 0`). `ValueError` if `start` is naive or `days` is negative.
    """
    _require_length(days)
    first = china_date(start)
    if days == 0:
        return end_of_day(first)
    return end_of_day(_first_working_day(first + timedelta(days=days), _calendar(calendar)))


def working_period_end(start: datetime, days: int, *, calendar: WorkingCalendar | None = None) -> datetime:
    """The end (UTC) of a period of `days` working days started at the aware instant `start`.

    Last day: the `days`-th working day after `china_date(start)` (`china_date(start)` itself when
    `days == 0`). `ValueError` if `start` is naive or `days` is negative.
    """
    _require_length(days)
    cal = _calendar(calendar)
    day = china_date(start)
    left = days
    while left > 0:
        day += timedelta(days=1)
        if cal.is_working_day(day):
            left -= 1
    return end_of_day(day)


def extend_period(end: datetime, days: int, *, calendar: WorkingCalendar | None = None) -> datetime:
    """The end (UTC) of a running period that ended at `end`, extended by `days` calendar days.

    New last day: `period_last_day(end) + days`, moved to the first working day after it if it is a rest day;
    `days == 0` gives the current last day's end. `ValueError` if `end` is naive or `days` is negative.
    """
    _require_length(days)
    last = period_last_day(end)
    if days == 0:
        return end_of_day(last)
    return end_of_day(_first_working_day(last + timedelta(days=days), _calendar(calendar)))


def _first_working_day(day: date, calendar: WorkingCalendar) -> date:
    """`day` if it is a working day, else the first working day after it."""
    for offset in range(_MAX_REST_RUN + 1):
        candidate = day + timedelta(days=offset)
        if calendar.is_working_day(candidate):
            return candidate
    raise ValueError(f"{calendar!r}: no working day within {_MAX_REST_RUN} days after {day.isoformat()}")


def _calendar(calendar: WorkingCalendar | None) -> WorkingCalendar:
    return WorkingCalendar.default() if calendar is None else calendar


def _require_aware(instant: datetime, name: str) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {instant.isoformat()}")


def _require_length(days: int) -> None:
    if days < 0:
        raise ValueError(f"a period's length must be 0 or more days, got {days}")
