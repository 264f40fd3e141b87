"""The reports' routes (CONTRACT.md, Analysis reports): the operator key only. Asking for one answers at once
(202, pending); the PDF is made off the request path (report.py) and served once ready."""
# No `from __future__ import annotations`: FastAPI evaluates these signatures.

import uuid
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, HTTPException, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from xinfang_shared.contracts.events import utc_now
from xinfang_shared.service import ErrorList, FieldRefused, Service
from xinfang_shared.workdays import CHINA

from . import report
from .figures import Period
from .report_data import month_of

MAX_DAYS = 3 * 366


class ReportAsked(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    start: date | None = Field(
        default=None, alias="from", description="First Beijing day (default: the first of last month)"
    )
    end: date | None = Field(default=None, alias="to", description="Last Beijing day, inclusive (default: its last)")
    language: Literal["zh-CN", "en"] = "zh-CN"


class ReportState(BaseModel):
    report_id: uuid.UUID
    status: Literal["pending", "generating", "ready", "failed"]


def asked_period(start: date | None, end: date | None, today: date) -> Period:
    """The period asked for; a month by default (the last complete one), and at most MAX_DAYS."""
    if start is None and end is None:
        return month_of(today.replace(day=1) - timedelta(days=1))
    if start is None or end is None:
        month = month_of(start or end or today)
        start, end = start or month.start, end or month.end
    if start > end:
        raise FieldRefused("from", f"{start} is after to ({end})")
    if (end - start).days >= MAX_DAYS:
        raise FieldRefused("from", f"at most {MAX_DAYS} days at a time")
    return Period(start, end)


def build_reports_router(service: Service, pool: Callable[[], asyncpg.Pool]) -> APIRouter:
    router = APIRouter(prefix="/v1/stats/reports", dependencies=[service.operator()], tags=["reports"])

    @router.post(
        "",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=ReportState,
        responses={422: {"model": ErrorList, "description": "The period is invalid or too long"}},
        description="Ask for a report of a period (a month by default, a quarter, any range) in zh-CN or en;"
        " it is made in the background: poll `GET /v1/stats/reports` for its status.",
    )
    async def ask(body: ReportAsked | None = None) -> ReportState:
        body = body or ReportAsked()
        period = asked_period(body.start, body.end, utc_now().astimezone(CHINA).date())
        row = await report.ask(pool(), period, body.language)
        return ReportState(report_id=row["report_id"], status=row["status"])

    @router.get("", description="The reports, the latest first: period, language, status.")
    async def every() -> list[dict[str, Any]]:
        return [report.listed(r) for r in await report.every(pool())]

    @router.get(
        "/{report_id}",
        response_class=Response,
        responses={
            200: {"content": {"application/pdf": {}}, "description": "The PDF"},
            404: {"description": "No such report"},
            409: {"model": ReportState, "description": "Not ready (yet): its status"},
        },
    )
    async def pdf(report_id: uuid.UUID) -> Response:
        row = await report.one(pool(), report_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such report")
        if row["status"] != "ready":
            return JSONResponse({"report_id": str(report_id), "status": row["status"]}, status.HTTP_409_CONFLICT)
        name = f"xinfang-report-{row['period_start']}-{row['period_end']}-{row['language']}.pdf"
        return Response(
            bytes(row["pdf"]),
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return router
