"""Working days in China: weekends and public holidays off, adjusted working days (调休) on.

The calendar is the `chinese-calendar` package's data (the State Council's notices, through 2026 today).
For a year it does not cover yet, Monday to Friday are taken as working days, and the gap is logged once a
year so someone adds the notice when it is published. (Supervision owns statutory deadlines and will keep
its own calendar as data; this is the shared fallback routing uses for the objection window.)
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import chinese_calendar

log = logging.getLogger(__name__)
CHINA = ZoneInfo("Asia/Shanghai")


@cache
def _warn_uncovered(year: int) -> None:
    log.warning("no holiday calendar for this year; counting Monday to Friday", extra={"year": year})


def is_working_day(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        _warn_uncovered(day.year)
        return day.weekday() < 5


def add_working_days(start: datetime, days: int) -> datetime:
    """The same time of day `days` working days after `start` (counted in China's time zone)."""
    local = start.astimezone(CHINA)
    day = local.date()
    left = days
    while left > 0:
        day += timedelta(days=1)
        if is_working_day(day):
            left -= 1
    return datetime.combine(day, local.timetz()).astimezone(start.tzinfo)
