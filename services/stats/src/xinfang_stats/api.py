"""Stats' HTTP API (CONTRACT.md, Stats): to operators, and to any of the bureau's staff through the console (the
figures hold no personal data). Any answer comes as CSV with `Accept: text/csv`.
How each figure is defined is in figures.py, and in each route's description (OpenAPI)."""
# No `from __future__ import annotations`: FastAPI evaluates these signatures, which name local dependencies.

import csv
import io
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from xinfang_shared.contracts.events import utc_now
from xinfang_shared.contracts.reference import Category
from xinfang_shared.service import ErrorList, FieldRefused, Service
from xinfang_shared.workdays import CHINA

from . import figures
from .figures import GroupBy, Interval, Metric, Period

FIGURES = (figures.__doc__ or "").split("\n\n", 1)[-1]
WINDOWS = {"PT24H": timedelta(hours=24), "P7D": timedelta(days=7)}
MAX_DAYS = 3 * 366
CITY = r"^51[0-9]{2}$"
# A cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _period(start: date | None, end: date | None) -> Period:
    today = utc_now().astimezone(CHINA).date()
    end = end or today
    start = start or end - timedelta(days=29)
    if start > end:
        raise FieldRefused("from", f"{start} is after to ({end})")
    if (end - start).days >= MAX_DAYS:
        raise FieldRefused("from", f"at most {MAX_DAYS} days at a time")
    return Period(start, end)


def _cell(value: Any) -> Any:
    """A text a spreadsheet would evaluate, behind a quote so that it reads as text; numbers stay numbers."""
    # A text that is only a decimal number ("-0.5") stays as it is: a spreadsheet reads it as that number,
    # which evaluates nothing, and the quote would make it text.
    if isinstance(value, str) and value.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _csv(rows: Iterable[dict[str, Any]]) -> Response:
    rows = list(rows)
    out = io.StringIO()
    if rows:
        # CRLF (RFC 4180): the writer then quotes any field with a CR in it, not only those with an LF.
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\r\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8")


Rows = Callable[[], Iterable[dict[str, Any]]]


def _answer(request: Request, body: dict[str, Any] | list[Any], rows: Rows) -> Response:
    if "text/csv" in request.headers.get("accept", ""):
        return _csv(rows())
    return JSONResponse(body)


CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/csv": {}}, "description": "JSON, or CSV on Accept: text/csv"},
    422: {"model": ErrorList, "description": "A parameter is invalid, or the span asked for is too long"},
}


def build_router(service: Service, pool: Callable[[], asyncpg.Pool]) -> APIRouter:
    # Any actor: an operator, or a person the console names (shared/staff.py refuses a person named with any
    # other key). Every figure is a count or a rate over matters, nothing of anyone's.
    router = APIRouter(prefix="/v1/stats", dependencies=[service.actor()], tags=["stats"])

    @router.get("/summary", responses=CSV, description=f"Figures per group over a period.\n\n{FIGURES}")
    async def summary(
        request: Request,
        group_by: GroupBy = "channel",
        start: Annotated[
            date | None, Query(alias="from", description="First Beijing day (default: 29 days before to)")
        ] = None,
        end: Annotated[
            date | None, Query(alias="to", description="Last Beijing day, inclusive (default: today)")
        ] = None,
        compare: Annotated[bool, Query(description="Also the previous period (环比) and last year's (同比)")] = False,
    ) -> Response:
        period = _period(start, end)
        rows = await figures.summary(pool(), group_by, period)
        body: dict[str, Any] = {"group_by": group_by, "from": str(period.start), "to": str(period.end), "rows": rows}
        if compare:
            for name, other in (("previous", period.previous()), ("last_year", period.last_year())):
                body[name] = {
                    "from": str(other.start),
                    "to": str(other.end),
                    "rows": await figures.summary(pool(), group_by, other),
                }
        return _answer(request, body, lambda: rows)

    @router.get("/timeseries", responses=CSV, description="Counts per hour or day (Beijing time), per group.")
    async def timeseries(
        request: Request,
        metric: Metric = "registered",
        interval: Interval = "day",
        start: Annotated[date | None, Query(alias="from")] = None,
        end: Annotated[date | None, Query(alias="to")] = None,
        group_by: GroupBy | None = None,
    ) -> Response:
        period = _period(start, end)
        if interval == "hour" and period.days > 31:
            raise FieldRefused("interval", "hourly series are at most 31 days long: ask by day, or for fewer days")
        series = await figures.timeseries(pool(), metric, interval, period, group_by)
        body = {"metric": metric, "interval": interval, "series": series}
        return _answer(request, body, lambda: ({"key": s["key"], **p} for s in series for p in s["points"]))

    @router.get("/units", responses=CSV, description="The units with the most matters, or the worst on-time rate.")
    async def units(
        request: Request,
        order: Literal["volume", "on-time"] = "volume",
        start: Annotated[date | None, Query(alias="from")] = None,
        end: Annotated[date | None, Query(alias="to")] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Response:
        period = _period(start, end)
        rows = await figures.units(pool(), period, order, limit)
        body = {"order": order, "from": str(period.start), "to": str(period.end), "units": rows}
        return _answer(request, body, lambda: rows)

    @router.get("/alerts", responses=CSV, description="Surge alerts (as on stats.alerts.v1), most recent first.")
    async def alerts(
        request: Request,
        state: Literal["open", "closed"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> Response:
        rows = await pool().fetch(
            "SELECT alert_id, state, region_code, category, window_ AS window, observed, baseline, method,"
            " coalesce(closed_at, opened_at) AS at, opened_at, closed_at"
            " FROM alerts WHERE ($1::text IS NULL OR state = $1)"
            " ORDER BY opened_at DESC LIMIT $2",
            state,
            limit,
        )
        found = [
            {k: (v.isoformat() if isinstance(v, datetime) else str(v) if k == "alert_id" else v) for k, v in r.items()}
            for r in rows
        ]
        return _answer(request, found, lambda: found)

    @router.get(
        "/hot-terms",
        responses=CSV,
        description="Words and phrases people raise, by how much more often they come in the window than in the 28"
        " days before it (lift); from titles and contents, segmented, place and person names left out, each matter"
        " counting its terms once and repeats not at all.",
    )
    async def hot_terms(
        request: Request,
        window: Literal["PT24H", "P7D"] = "PT24H",
        category: Category | None = None,
        region: Annotated[str | None, Query(pattern=CITY, description="4-digit city prefix, e.g. 5101")] = None,
        top: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Response:
        found = await figures.terms(
            pool(),
            WINDOWS[window],
            utc_now(),
            category=category.value if category else None,
            region=region,
            top=top,
        )
        rows = [{"term": t.term, "count": t.count, "lift": round(t.lift, 3)} for t in found]
        return _answer(request, {"window": window, "terms": rows}, lambda: rows)

    return router
