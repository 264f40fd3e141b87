"""The figures the bureau owes (DOMAIN.md, Analysis), computed from the facts, exactly as the API documents them.

Every figure counts matters by the Beijing day they were registered, within [from, to] (both inclusive):
  registered               matters registered (repeats included; `repeats` says how many of them are)
  routed                   of those, routed to an office
  accepted                 accepted by the unit (a review or re-review taken up counts as accepted)
  concluded                concluded by the unit (its first conclusion)
  overdue                  a statutory deadline of it went overdue (windows never do)
  on_time_rate             of the concluded, the share whose every statutory deadline was met before it expired
                           (none overdue, none met late); null when none is concluded
  median_days_to_conclude  from registration to the unit's conclusion, in days (p90 likewise)
  satisfaction             of the rated, the share rated satisfied or basically satisfied; null when none is
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

import asyncpg

from xinfang_shared.workdays import CHINA

from .terms import HotTerm, count_terms, hot_terms

GroupBy = Literal["channel", "office", "unit", "category", "region"]
Metric = Literal["registered", "routed", "accepted", "concluded", "overdue"]
Interval = Literal["hour", "day"]
COLUMNS: dict[str, str] = {
    "channel": "channel",
    "office": "office",
    "unit": "unit",
    "category": "category",
    "region": "region",
}
# When each metric happened: what a time series puts a matter at.
WHEN: dict[str, str] = {
    "registered": "registered_at",
    "routed": "routed_at",
    "accepted": "accepted_at",
    "concluded": "concluded_at",
    "overdue": "registered_at",
}

# Two queries: the counts by hashing (no sort), the percentiles sorting only the concluded matters' days.
COUNTS = """
SELECT {key} AS key,
       count(*) AS registered,
       count(*) FILTER (WHERE repeat IS NOT NULL) AS repeats,
       count(routed_at) AS routed,
       count(accepted_at) AS accepted,
       count(concluded_at) AS concluded,
       count(*) FILTER (WHERE overdue) AS overdue,
       count(*) FILTER (WHERE concluded_at IS NOT NULL AND NOT overdue AND NOT late) AS on_time,
       count(rating) AS rated,
       count(*) FILTER (WHERE rating IN ('satisfied', 'basically-satisfied')) AS satisfied
FROM facts WHERE day BETWEEN $1 AND $2 AND registered_at IS NOT NULL
GROUP BY 1 ORDER BY registered DESC, key NULLS LAST
"""
PERCENTILES = """
SELECT {key} AS key, percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY conclude_days) AS days
FROM facts WHERE day BETWEEN $1 AND $2 AND registered_at IS NOT NULL AND conclude_days IS NOT NULL
GROUP BY 1
"""


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The period of the same length just before (环比)."""
        return Period(self.start - timedelta(days=self.days), self.start - timedelta(days=1))

    def last_year(self) -> Period:
        """The same days a year before (同比); 29 February becomes the 28th."""
        return Period(_year_before(self.start), _year_before(self.end))


def _year_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:
        return day.replace(year=day.year - 1, day=28)


def _row(r: asyncpg.Record, days: list[float] | None) -> dict[str, Any]:
    concluded, rated = r["concluded"], r["rated"]
    median, p90 = days or (None, None)
    return {
        "key": r["key"],
        "registered": r["registered"],
        "repeats": r["repeats"],
        "routed": r["routed"],
        "accepted": r["accepted"],
        "concluded": concluded,
        "overdue": r["overdue"],
        "on_time_rate": round(r["on_time"] / concluded, 4) if concluded else None,
        "median_days_to_conclude": None if median is None else round(median, 2),
        "p90_days_to_conclude": None if p90 is None else round(p90, 2),
        "satisfaction": round(r["satisfied"] / rated, 4) if rated else None,
    }


async def summary(pool: asyncpg.Pool, group_by: GroupBy, period: Period) -> list[dict[str, Any]]:
    return await summary_of(pool, COLUMNS[group_by], period)


async def summary_of(pool: asyncpg.Pool, key: str, period: Period) -> list[dict[str, Any]]:
    """The summary's rows grouped by `key`, an SQL expression of the facts (a column, or a constant for all)."""
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        # A year of a province's matters sorts in memory; JIT compiling costs more than these queries save by it.
        await conn.execute("SET LOCAL work_mem = '64MB'; SET LOCAL jit = off")
        counts = await conn.fetch(COUNTS.format(key=key), period.start, period.end)
        days = {r["key"]: r["days"] for r in await conn.fetch(PERCENTILES.format(key=key), period.start, period.end)}
    return [_row(r, days.get(r["key"])) for r in counts]


async def timeseries(
    conn: asyncpg.Pool, metric: Metric, interval: Interval, period: Period, group_by: GroupBy | None
) -> list[dict[str, Any]]:
    column = WHEN[metric]
    key = COLUMNS[group_by] if group_by else "'all'"
    extra = " AND overdue" if metric == "overdue" else ""
    rows = await conn.fetch(
        f"SELECT {key} AS key, date_trunc($3, {column} AT TIME ZONE '{CHINA.key}') AS t, count(*) AS value"
        f" FROM facts WHERE {column} IS NOT NULL AND day BETWEEN $1 AND $2{extra}"
        " GROUP BY 1, 2 ORDER BY 1 NULLS LAST, 2",
        period.start,
        period.end,
        interval,
    )
    series: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault(r["key"], []).append({"t": r["t"].isoformat(), "value": r["value"]})
    return [{"key": k, "points": points} for k, points in series.items()]


async def units(conn: asyncpg.Pool, period: Period, order: Literal["volume", "on-time"], limit: int) -> list[Any]:
    """The units' load and punctuality: matters transferred to them, open, overdue, on time."""
    rows = await conn.fetch(
        "SELECT unit, count(*) AS transferred,"
        " count(*) FILTER (WHERE concluded_at IS NULL AND not_accepted_at IS NULL"
        "   AND coalesce(status, '') NOT IN ('closed', 'terminated')) AS open,"
        " count(*) FILTER (WHERE overdue) AS overdue, count(concluded_at) AS concluded,"
        " count(*) FILTER (WHERE concluded_at IS NOT NULL AND NOT overdue AND NOT late) AS on_time"
        " FROM facts WHERE unit IS NOT NULL AND transferred_at IS NOT NULL AND day BETWEEN $1 AND $2"
        " GROUP BY unit",
        period.start,
        period.end,
    )
    found = [
        {
            "unit": r["unit"],
            "transferred": r["transferred"],
            "open": r["open"],
            "overdue": r["overdue"],
            "concluded": r["concluded"],
            "on_time_rate": round(r["on_time"] / r["concluded"], 4) if r["concluded"] else None,
        }
        for r in rows
    ]
    if order == "volume":
        found.sort(key=lambda u: (-u["transferred"], u["unit"]))
    else:  # worst first: the lowest rate among those with something concluded, then the most overdue

        def worst_first(u: dict[str, Any]) -> tuple[float, int, str]:
            rate = u["on_time_rate"]
            return (2.0 if rate is None else rate, -u["overdue"], u["unit"])  # nothing concluded: last

        found.sort(key=worst_first)
    return found[:limit]


async def terms(
    conn: asyncpg.Pool,
    window: timedelta,
    now: datetime,
    *,
    category: str | None,
    region: str | None,
    background_days: int = 28,
    top: int = 20,
) -> list[HotTerm]:
    """Hot terms of the matters registered in the trailing `window`, against the `background_days` before it;
    repeats left out (each matter counts its terms once; a petitioner re-sending one adds nothing)."""
    since, background_since = now - window, now - window - timedelta(days=background_days)
    rows = await conn.fetch(
        "SELECT terms, registered_at >= $2 AS recent, repeat IS NULL AS counted FROM facts"
        " WHERE registered_at >= $1 AND registered_at < $3"
        " AND ($4::text IS NULL OR category = $4) AND ($5::text IS NULL OR region = $5)",
        background_since,
        since,
        now,
        category,
        region,
    )
    window_counts, window_n = count_terms((set(r["terms"]), r["counted"]) for r in rows if r["recent"])
    background, background_n = count_terms((set(r["terms"]), r["counted"]) for r in rows if not r["recent"])
    return hot_terms(window_counts, window_n, background, background_n, top=top)


# ---- for the analysis reports (report_data.py): the same facts, the same day rule ---------------------------


async def overall(pool: asyncpg.Pool, period: Period) -> dict[str, Any]:
    """Every figure of `summary` for all matters of the period together (one row; the same two queries)."""
    rows = await summary_of(pool, "'all'", period)
    return rows[0] if rows else _row_of_nothing()


def _row_of_nothing() -> dict[str, Any]:
    zero = ("registered", "repeats", "routed", "accepted", "concluded", "overdue")
    rates = ("on_time_rate", "median_days_to_conclude", "p90_days_to_conclude", "satisfaction")
    return {"key": "all"} | dict.fromkeys(zero, 0) | dict.fromkeys(rates)


async def visits(pool: asyncpg.Pool, period: Period, massive: int) -> dict[str, int]:
    """Group visits (headcount >= 5, 集体访), massive ones (>= `massive`), the people they brought, and the
    repeats by kind: duplicates, and matters not accepted again."""
    row = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE group_visit) AS group_visits,"
        " coalesce(sum(headcount) FILTER (WHERE group_visit), 0) AS group_people,"
        " count(*) FILTER (WHERE headcount >= $3) AS massive_visits,"
        " coalesce(sum(headcount) FILTER (WHERE headcount >= $3), 0) AS massive_people,"
        " count(*) FILTER (WHERE repeat = 'duplicate') AS duplicates,"
        " count(*) FILTER (WHERE repeat = 'not-accepted-again') AS not_accepted_again"
        " FROM facts WHERE day BETWEEN $1 AND $2 AND registered_at IS NOT NULL",
        period.start,
        period.end,
        massive,
    )
    return {k: int(v) for k, v in dict(row).items()} if row else {}


async def ratings(pool: asyncpg.Pool, period: Period) -> dict[str, int]:
    """How the period's matters were rated, by rating."""
    rows = await pool.fetch(
        "SELECT rating, count(*) AS n FROM facts WHERE day BETWEEN $1 AND $2 AND registered_at IS NOT NULL"
        " AND rating IS NOT NULL GROUP BY rating",
        period.start,
        period.end,
    )
    return {r["rating"]: r["n"] for r in rows}


async def supervision(pool: asyncpg.Pool, period: Period) -> list[dict[str, Any]]:
    """Supervision orders (a deadline gone overdue) and escalations issued in the period, by unit (the day they
    were issued, not the matter's)."""
    rows = await pool.fetch(
        "SELECT coalesce(unit, '') AS unit, count(*) FILTER (WHERE state = 'overdue') AS orders,"
        " count(*) FILTER (WHERE state = 'escalated') AS escalations"
        " FROM supervision_actions WHERE day BETWEEN $1 AND $2 GROUP BY 1 ORDER BY 2 DESC, 3 DESC, 1",
        period.start,
        period.end,
    )
    return [dict(r) for r in rows]


async def alerts_in(pool: asyncpg.Pool, period: Period) -> list[dict[str, Any]]:
    """The surge alerts open at some time in the period (opened before its end, not closed before its start)."""
    start = datetime.combine(period.start, datetime.min.time(), tzinfo=CHINA)
    end = datetime.combine(period.end + timedelta(days=1), datetime.min.time(), tzinfo=CHINA)
    rows = await pool.fetch(
        "SELECT region_code, category, window_ AS window, observed, baseline, opened_at, closed_at FROM alerts"
        " WHERE opened_at < $2 AND (closed_at IS NULL OR closed_at >= $1) ORDER BY opened_at",
        start,
        end,
    )
    return [dict(r) for r in rows]
