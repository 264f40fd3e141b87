"""What an analysis report shows, gathered from the very queries the API answers with (figures.py), so a figure
in the PDF is the figure `/v1/stats/summary` gives for the same period. Counts and rates over matters only: the
facts hold nobody's personal data, and neither does anything here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import asyncpg

from xinfang_shared.workdays import CHINA

from . import figures
from .figures import GroupBy, Period

GROUPS: tuple[GroupBy, ...] = ("channel", "office", "unit", "category", "region")
TOP = 10  # rows of the "most" and "lowest" tables
HOT_TERMS = 15


@dataclass
class Compared:
    """A grouping's rows for the period, the previous one (环比) and the same days a year before (同比)."""

    rows: list[dict[str, Any]]
    previous: list[dict[str, Any]]
    last_year: list[dict[str, Any]]

    def before(self, which: str, key: Any) -> dict[str, Any] | None:
        rows = self.previous if which == "previous" else self.last_year
        return next((r for r in rows if r["key"] == key), None)


@dataclass
class ReportData:
    period: Period
    language: str
    made_at: datetime
    overall: dict[str, Any]
    overall_previous: dict[str, Any]
    overall_last_year: dict[str, Any]
    groups: dict[str, Compared]
    visits: dict[str, int]
    visits_previous: dict[str, int]
    units_most: list[dict[str, Any]]
    units_late: list[dict[str, Any]]
    supervision: list[dict[str, Any]]
    ratings: dict[str, int]
    terms: list[dict[str, Any]]
    new_terms: list[str]
    alerts: list[dict[str, Any]]
    daily: list[dict[str, Any]] = field(default_factory=list)

    @property
    def previous(self) -> Period:
        return self.period.previous()

    @property
    def last_year(self) -> Period:
        return self.period.last_year()


def period_end_instant(period: Period) -> datetime:
    """24:00 Beijing time of the period's last day."""
    return datetime.combine(period.end + timedelta(days=1), time.min, tzinfo=CHINA)


STEPS = len(GROUPS) + 2  # what `gather` reports progress in: each grouping, the terms, the rest


def _nothing(done: int, total: int, what: str) -> None:
    pass


async def gather(
    pool: asyncpg.Pool,
    period: Period,
    language: str,
    *,
    massive: int,
    made_at: datetime,
    progress: Callable[[int, int, str], None] = _nothing,
) -> ReportData:
    previous, last_year = period.previous(), period.last_year()
    groups: dict[str, Compared] = {}
    for i, g in enumerate(GROUPS):
        progress(i, STEPS, g)
        groups[g] = Compared(
            await figures.summary(pool, g, period),
            await figures.summary(pool, g, previous),
            await figures.summary(pool, g, last_year),
        )
    progress(len(GROUPS), STEPS, "hot terms")
    # Hot terms of the period against the 28 days before it, as the API's; "new": not among the previous
    # period's, measured the same way.
    window = timedelta(days=period.days)
    now, before = period_end_instant(period), period_end_instant(previous)
    terms = await figures.terms(pool, window, now, category=None, region=None, top=HOT_TERMS)
    earlier = await figures.terms(pool, window, before, category=None, region=None, top=HOT_TERMS * 2)
    known = {t.term for t in earlier}
    progress(len(GROUPS) + 1, STEPS, "units, visits, ratings, surges")
    series = await figures.timeseries(pool, "registered", "day", period, None)
    return ReportData(
        period=period,
        language=language,
        made_at=made_at,
        overall=await figures.overall(pool, period),
        overall_previous=await figures.overall(pool, previous),
        overall_last_year=await figures.overall(pool, last_year),
        groups=groups,
        visits=await figures.visits(pool, period, massive),
        visits_previous=await figures.visits(pool, previous, massive),
        units_most=await figures.units(pool, period, "volume", TOP),
        units_late=[u for u in await figures.units(pool, period, "on-time", TOP) if u["on_time_rate"] is not None],
        supervision=await figures.supervision(pool, period),
        ratings=await figures.ratings(pool, period),
        terms=[{"term": t.term, "count": t.count, "lift": round(t.lift, 2)} for t in terms],
        new_terms=[t.term for t in terms if t.term not in known],
        alerts=await figures.alerts_in(pool, period),
        daily=series[0]["points"] if series else [],
    )


def acceptance_rate(row: dict[str, Any]) -> float | None:
    """Of the routed, the share the unit accepted (the API's `accepted` over its `routed`)."""
    return round(row["accepted"] / row["routed"], 4) if row.get("routed") else None


def change(now: float | None, before: float | None) -> float | None:
    """The relative change from `before` to `now` (环比 / 同比); None when there is nothing to compare with."""
    if now is None or not before:
        return None
    return (now - before) / before


def month_of(day: date) -> Period:
    """The calendar month `day` falls in."""
    start = day.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return Period(start, end)
