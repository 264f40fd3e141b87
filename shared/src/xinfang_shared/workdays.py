"""Working days in China: weekends and public holidays off, adjusted working days (调休) on.

The calendar is data the project owns: `data/holidays.toml` in this package, one table per year with the days
off and the weekend days made working days, as the State Council General Office's annual notice on the holiday
arrangements (国务院办公厅关于XXXX年部分节假日安排的通知) gives them. `XINFANG_HOLIDAY_CALENDAR` (a path to a
file of the same format) replaces the packaged file.

- A year marked `provisional = true` is derived from the statutory rules (全国年节及纪念日放假办法) rather than
  the published notice. It is used, and logged as provisional once per year, so someone replaces it.
- For a year the file does not cover, Monday to Friday are taken as working days, and the gap is logged once per
  year.

Adding a year, when the State Council publishes its notice (usually in November of the year before): add (or
replace the provisional) `[years.YYYY]` table in `data/holidays.toml` with `source` naming the notice,
`provisional = false`, `holidays` listing every day off of each holiday period and `working_days` listing the
weekend days the notice makes working days. Loading checks that every date is in its year, that no date is both
a holiday and a working day, and that working days fall on a Saturday or a Sunday; `tests/unit/test_workdays.py`
loads the packaged file. (Supervision owns statutory deadlines and will keep its own calendar as data; this is
the shared calendar routing uses for the objection window.)
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)
# Beijing time, in which every date, hour and period of the bureau is counted: defined here once.
CHINA = ZoneInfo("Asia/Shanghai")
CALENDAR_ENV = "XINFANG_HOLIDAY_CALENDAR"
_PACKAGED = "data/holidays.toml"
_YEAR_KEYS = frozenset({"source", "provisional", "holidays", "working_days"})
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@cache
def _warn_uncovered(year: int) -> None:
    log.warning("no holiday calendar for this year; counting Monday to Friday", extra={"year": year})


@cache
def _warn_provisional(year: int) -> None:
    log.warning(
        "the holiday calendar for this year is provisional (derived from the statutory rules, not the State "
        "Council's notice); replace it when the notice is published",
        extra={"year": year},
    )


@dataclass(frozen=True, slots=True)
class YearCalendar:
    """One year of the calendar: the days off and the weekend days made working days."""

    year: int
    source: str
    provisional: bool
    holidays: frozenset[date]
    working_days: frozenset[date]


class WorkingCalendar:
    """China's working days, from the year tables of a holiday calendar file (see the module docstring)."""

    def __init__(self, years: Iterable[YearCalendar], *, origin: str = "<calendar>") -> None:
        self._years: dict[int, YearCalendar] = {}
        for entry in years:
            if entry.year in self._years:
                raise ValueError(f"{origin}: year {entry.year} is given twice")
            _check_year(entry, origin)
            self._years[entry.year] = entry
        self.origin = origin

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WorkingCalendar:
        """The calendar in the TOML file at `path`; `ValueError` if the file is not a valid calendar."""
        path = Path(path)
        return cls.loads(path.read_text(encoding="utf-8"), origin=str(path))

    @classmethod
    def loads(cls, text: str, *, origin: str = "<string>") -> WorkingCalendar:
        """The calendar in TOML `text`; `ValueError` if it is not a valid calendar."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{origin}: not valid TOML: {error}") from error
        years = document.get("years")
        if not isinstance(years, dict) or set(document) != {"years"}:
            raise ValueError(f"{origin}: expected only a [years] table, with one [years.YYYY] table per year")
        return cls((_parse_year(key, table, origin) for key, table in years.items()), origin=origin)

    @classmethod
    def default(cls) -> WorkingCalendar:
        """The packaged calendar, or the file `XINFANG_HOLIDAY_CALENDAR` names; loaded once per path."""
        return _load_default(os.environ.get(CALENDAR_ENV) or None)

    @property
    def years(self) -> tuple[int, ...]:
        """The years the calendar covers, in order."""
        return tuple(sorted(self._years))

    def covers(self, year: int) -> bool:
        return year in self._years

    def provisional(self, year: int) -> bool:
        """Whether the year's days are provisional (False for a year the calendar does not cover)."""
        entry = self._years.get(year)
        return entry is not None and entry.provisional

    def is_working_day(self, day: date) -> bool:
        if isinstance(day, datetime):
            day = day.date()  # a datetime's own date, as before (not converted to China's time zone)
        entry = self._years.get(day.year)
        if entry is None:
            _warn_uncovered(day.year)
            return day.weekday() < 5
        if entry.provisional:
            _warn_provisional(day.year)
        if day in entry.working_days:
            return True
        if day in entry.holidays:
            return False
        return day.weekday() < 5

    def is_holiday(self, day: date) -> bool:
        """Whether `day` is a day off of a statutory holiday period (a weekend day inside one included); False for
        a year the calendar does not cover."""
        entry = self._years.get(day.year)
        return entry is not None and day in entry.holidays

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The same time of day `days` working days after `start` (counted in China's time zone).

        The result is in `start`'s time zone; `days <= 0` gives `start`'s day.
        """
        local = start.astimezone(CHINA)
        day = local.date()
        left = days
        while left > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                left -= 1
        return datetime.combine(day, local.timetz()).astimezone(start.tzinfo)

    def working_days_between(self, start: datetime, end: datetime) -> int:
        """The working days after `start`'s day up to and including `end`'s day (China's dates); 0 if end <= start."""
        if end <= start:
            return 0
        day = start.astimezone(CHINA).date()
        last = end.astimezone(CHINA).date()
        count = 0
        while day < last:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count += 1
        return count

    def __repr__(self) -> str:
        return f"WorkingCalendar(origin={self.origin!r}, years={list(self.years)!r})"


@cache
def _load_default(path: str | None) -> WorkingCalendar:
    if path is not None:
        return WorkingCalendar.load(path)
    resource = resources.files("xinfang_shared").joinpath(_PACKAGED)
    return WorkingCalendar.loads(resource.read_text(encoding="utf-8"), origin=f"xinfang_shared/{_PACKAGED}")


def _parse_year(key: str, table: Any, origin: str) -> YearCalendar:
    where = f"{origin}: [years.{key}]"
    if not (key.isascii() and key.isdigit() and len(key) == 4):
        raise ValueError(f"{where}: the table name must be a four-digit year")
    if not isinstance(table, dict):
        raise ValueError(f"{where}: must be a table")
    missing = sorted(_YEAR_KEYS - set(table))
    unknown = sorted(set(table) - _YEAR_KEYS)
    if missing or unknown:
        raise ValueError(f"{where}: missing keys {missing}, unknown keys {unknown}; expected {sorted(_YEAR_KEYS)}")
    source, provisional = table["source"], table["provisional"]
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"{where}: source must be a non-empty string naming where the days come from")
    if not isinstance(provisional, bool):
        raise ValueError(f"{where}: provisional must be true or false")
    return YearCalendar(
        year=int(key),
        source=source,
        provisional=provisional,
        holidays=_dates(table["holidays"], f"{where} holidays"),
        working_days=_dates(table["working_days"], f"{where} working_days"),
    )


def _dates(value: Any, where: str) -> frozenset[date]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: must be a list of dates (YYYY-MM-DD, unquoted)")
    for item in value:
        # TOML datetimes are `datetime` (a subclass of `date`); only plain local dates are days.
        if not isinstance(item, date) or isinstance(item, datetime):
            raise ValueError(f"{where}: {item!r} is not a date (YYYY-MM-DD, unquoted)")
    return frozenset(value)


def _check_year(entry: YearCalendar, origin: str) -> None:
    where = f"{origin}: [years.{entry.year}]"
    for kind, days in (("holiday", entry.holidays), ("working day", entry.working_days)):
        for day in sorted(days):
            if day.year != entry.year:
                raise ValueError(f"{where}: {kind} {day.isoformat()} is not in {entry.year}")
    both = sorted(entry.holidays & entry.working_days)
    if both:
        listed = ", ".join(day.isoformat() for day in both)
        raise ValueError(f"{where}: {listed} listed both as holiday and as working day")
    for day in sorted(entry.working_days):
        if day.weekday() < 5:
            raise ValueError(
                f"{where}: working day {day.isoformat()} is a {_WEEKDAYS[day.weekday()]}; "
                "working_days lists only the Saturdays and Sundays made working days (调休)"
            )


def is_working_day(day: date) -> bool:
    """Whether `day` is a working day in China, by the default calendar (`WorkingCalendar.default()`)."""
    return WorkingCalendar.default().is_working_day(day)


def add_working_days(start: datetime, days: int) -> datetime:
    """The same time of day `days` working days after `start` (in China's time zone), by the default calendar."""
    return WorkingCalendar.default().add_working_days(start, days)
