"""Supervision's HTTP API: a matter's deadlines, the due-soon / overdue / escalated lists by office and unit (to
operators, and to the bureau's staff through the console, each their office's), pause and resume for hearings,
extensions by an office's head; on-time figures and the controlled clock with the operator key."""
# No `from __future__ import annotations`: FastAPI evaluates these signatures, which name local dependencies.

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from xinfang_shared.contracts.events import FieldError, utc_now
from xinfang_shared.contracts.reference import DeadlineType, Office
from xinfang_shared.contracts.topics import UNIT_INBOXES
from xinfang_shared.contracts.values import UNIT_CODE, Text
from xinfang_shared.service import ErrorList, Service, error_response
from xinfang_shared.staff import Actor

from . import store
from .clock import MAX_ADVANCE_S, ClockRefused
from .ledger import Refusal
from .state import SupervisionState


class DeadlineView(BaseModel):
    deadline: DeadlineType
    state: str = Field(description="The last state published (set, due-soon, overdue, met, ...) or closed")
    due_at: datetime
    unit: str | None
    started_at: datetime
    stage: str = Field(description="How far the scheduler has taken it: set, due-soon, overdue, escalated")
    open: bool
    met_at: datetime | None
    on_time: bool | None
    overdue_at: datetime | None
    escalated_at: datetime | None
    extended_days: int
    paused: bool
    paused_for_s: float = Field(description="Hearing time not counted so far, in seconds")
    orders: int = Field(description="Supervision orders (督办) sent to the unit: one each time it went overdue")
    ordered_at: datetime | None = Field(description="When the last supervision order was sent")


class MatterDeadlines(BaseModel):
    matter_id: uuid.UUID
    office: str | None
    deadlines: list[DeadlineView]


class ListedDeadline(BaseModel):
    matter_id: uuid.UUID
    deadline: DeadlineType
    stage: str
    office: str | None
    unit: str | None
    due_at: datetime
    escalated_at: datetime | None
    overdue_at: datetime | None
    orders: int = Field(description="Supervision orders (督办) sent to the unit: one each time it went overdue")
    ordered_at: datetime | None = Field(description="When the last supervision order was sent")


class OnTimeRow(BaseModel):
    key: str | None
    met: int
    on_time: int
    late: int
    on_time_rate: float | None = Field(description="on_time / met; null when nothing was met yet")
    overdue_open: int = Field(description="Running deadlines past their due time")


class OnTime(BaseModel):
    group_by: Literal["office", "unit"]
    rows: list[OnTimeRow]


class Hearing(BaseModel):
    reason: Text = Field(min_length=1, max_length=2000, description="E.g. the hearing's date and place")


class Extension(BaseModel):
    days: int = Field(ge=1, le=366, description="How many days more, at most what the deadline's rule allows")
    reason: Text = Field(min_length=1, max_length=2000, description="Why (the petitioner is told it)")


class Advance(BaseModel):
    seconds: int = Field(
        ge=0,
        le=MAX_ADVANCE_S,
        description="How far to move supervision's clock forward (at most ten years per call; the clock never"
        " goes past 2200-01-01)",
    )


class ClockView(BaseModel):
    now: datetime
    offset_s: float
    moved: int = Field(default=0, description="Deadline states reached by the checks this advance ran")


_LISTED_STAGES = {"due-soon": ["due-soon"], "overdue": ["overdue", "escalated"], "escalated": ["escalated"]}
# The orders a deadline's unit was sent: the scheduler sends one with each `overdue` it records for a unit with an
# inbox (scheduler._events), so the history's overdue rows are the orders. `d`: the deadlines row.
_ORDERS = (
    "LEFT JOIN LATERAL (SELECT count(*) AS orders, max(h.at) AS ordered_at FROM deadline_history h"
    " WHERE h.matter_id = d.matter_id AND h.deadline = d.deadline AND h.state = 'overdue'"
    " AND h.unit = ANY($1::text[])) o ON true"
)
_INBOXES = sorted(UNIT_INBOXES)


def build_router(service: Service, current: Callable[[], SupervisionState]) -> APIRouter:
    router = APIRouter(prefix="/v1")
    operator = service.operator()
    acting = service.actor()

    @router.get(
        "/matters/{matter_id}/deadlines",
        response_model=MatterDeadlines,
        tags=["operators"],
        responses={
            403: {"description": "Not a matter of the person's office"},
            404: {"description": "Supervision knows nothing of this matter"},
        },
    )
    async def matter_deadlines(matter_id: uuid.UUID, who: Annotated[Actor, acting]) -> MatterDeadlines:
        """Every deadline of the matter, running or not: to operators, leaders and the staff of its office."""
        state = current()
        async with state.pool.acquire() as conn:
            matter = await conn.fetchrow("SELECT office FROM matters WHERE matter_id=$1", matter_id)
            rows = await conn.fetch(
                f"SELECT d.*, o.orders, o.ordered_at FROM deadlines d {_ORDERS} WHERE d.matter_id=$2"
                " ORDER BY d.started_at, d.deadline",
                _INBOXES,
                matter_id,
            )
        if matter is None and not rows:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such matter")
        who.require(who.may_read(matter["office"] if matter else None), "read a matter of another office")
        return MatterDeadlines(
            matter_id=matter_id,
            office=matter["office"] if matter else None,
            deadlines=[
                DeadlineView(
                    deadline=DeadlineType(r["deadline"]),
                    state=r["state"],
                    due_at=r["due_at"],
                    unit=r["unit"],
                    started_at=r["started_at"],
                    stage=r["stage"],
                    open=r["open"],
                    met_at=r["met_at"],
                    on_time=(r["met_at"] <= r["due_at"]) if r["met_at"] else None,
                    overdue_at=r["overdue_at"],
                    escalated_at=r["escalated_at"],
                    extended_days=r["extended_days"],
                    paused=r["paused_at"] is not None,
                    paused_for_s=r["paused_total"].total_seconds(),
                    orders=r["orders"],
                    ordered_at=r["ordered_at"],
                )
                for r in rows
            ],
        )

    @router.get(
        "/deadlines",
        response_model=list[ListedDeadline],
        tags=["operators"],
        responses={403: {"description": "Another office's deadlines (a clerk or head sees their own office's)"}},
    )
    async def listed(
        stage: Annotated[Literal["due-soon", "overdue", "escalated"], Query(description="overdue includes escalated")],
        who: Annotated[Actor, acting],
        office: Annotated[Office | None, Query(description="Default: every office, or a clerk's or head's own")] = None,
        unit: Annotated[str | None, Query(max_length=64, pattern=UNIT_CODE, description="e.g. city-5101")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[ListedDeadline]:
        """Running deadlines that are due soon, overdue or escalated, most urgent first, by office and unit, with
        the supervision orders sent: to operators and leaders any office's, to an office's staff their own."""
        if who.office is not None:  # a clerk or a head: their office's alone
            office = office or who.office
            who.require(who.may_read(office), "list another office's deadlines")
        rows = await current().pool.fetch(
            "SELECT d.matter_id, d.deadline, d.stage, m.office, d.unit, d.due_at, d.escalated_at, d.overdue_at,"
            f" o.orders, o.ordered_at FROM deadlines d LEFT JOIN matters m USING (matter_id) {_ORDERS}"
            " WHERE d.open AND d.stage = ANY($2) AND ($3::text IS NULL OR m.office = $3)"
            " AND ($4::text IS NULL OR d.unit = $4) ORDER BY d.due_at LIMIT $5",
            _INBOXES,
            _LISTED_STAGES[stage],
            office.value if office else None,
            unit,
            limit,
        )
        return [ListedDeadline(**dict(r)) for r in rows]

    @router.get("/deadlines/on-time", response_model=OnTime, dependencies=[operator], tags=["operators"])
    async def on_time(group_by: Literal["office", "unit"] = "unit") -> OnTime:
        """Obligations met on time and late, per office or unit (windows such as objection are not counted).
        Stats builds the same figures from deadlines.events.v1 (`met` with `on_time`)."""
        column = "m.office" if group_by == "office" else "d.unit"
        state = current()
        obligations = [d.value for d in DeadlineType if state.rules[d].obligation]
        rows = await state.pool.fetch(
            f"SELECT {column} AS key, count(*) FILTER (WHERE d.met_at IS NOT NULL) AS met,"
            " count(*) FILTER (WHERE d.met_at IS NOT NULL AND d.met_at <= d.due_at) AS on_time,"
            " count(*) FILTER (WHERE d.open AND d.stage IN ('overdue', 'escalated')) AS overdue_open"
            " FROM deadlines d LEFT JOIN matters m USING (matter_id) WHERE d.deadline = ANY($1)"
            f" GROUP BY {column} ORDER BY {column} NULLS LAST",
            obligations,
        )
        return OnTime(
            group_by=group_by,
            rows=[
                OnTimeRow(
                    key=r["key"],
                    met=r["met"],
                    on_time=r["on_time"],
                    late=r["met"] - r["on_time"],
                    on_time_rate=round(r["on_time"] / r["met"], 4) if r["met"] else None,
                    overdue_open=r["overdue_open"],
                )
                for r in rows
            ],
        )

    async def hearing(
        matter_id: uuid.UUID, deadline: DeadlineType, who: Actor, reason: str, pause: bool
    ) -> MatterDeadlines:
        state = current()
        office = await state.pool.fetchval("SELECT office FROM matters WHERE matter_id = $1", matter_id)
        who.require(who.may_change(office), "pause or resume a hearing of another office's matter")
        try:
            async with state.pool.acquire() as conn, conn.transaction():
                now = await state.clock.now(conn)
                why = f"{who.recorded}: {reason}"
                await store.hearing(conn, state.rules, matter_id, deadline, now, why, pause=pause)
        except Refusal as refusal:
            raise HTTPException(refusal.code, refusal.message) from None
        return await matter_deadlines(matter_id, who)

    @router.post(
        "/matters/{matter_id}/deadlines/{deadline}/pause",
        response_model=MatterDeadlines,
        tags=["operators"],
        responses={
            403: {"description": "Not a matter of the person's office (or a leader: reads only)"},
            404: {"description": "No such deadline"},
            409: {"description": "Not running, already paused or not pausable"},
        },
    )
    async def pause(
        matter_id: uuid.UUID,
        deadline: DeadlineType,
        body: Hearing,
        who: Annotated[Actor, acting],
    ) -> MatterDeadlines:
        """Pause a deadline for a hearing: the time until it is resumed is not counted."""
        return await hearing(matter_id, deadline, who, body.reason, pause=True)

    @router.post(
        "/matters/{matter_id}/deadlines/{deadline}/resume",
        response_model=MatterDeadlines,
        tags=["operators"],
        responses={
            403: {"description": "Not a matter of the person's office (or a leader: reads only)"},
            404: {"description": "No such deadline"},
            409: {"description": "Not paused"},
        },
    )
    async def resume(
        matter_id: uuid.UUID,
        deadline: DeadlineType,
        body: Hearing,
        who: Annotated[Actor, acting],
    ) -> MatterDeadlines:
        """Resume a paused deadline: its due time moves by the time it was paused."""
        return await hearing(matter_id, deadline, who, body.reason, pause=False)

    @router.post(
        "/matters/{matter_id}/deadlines/{deadline}/extend",
        response_model=MatterDeadlines,
        tags=["operators"],
        responses={
            403: {"description": "Not the head of the matter's office (a clerk, a leader, another office)"},
            404: {"description": "No such deadline"},
            409: {
                "description": "Not extensible: its rule allows none, it was extended already, it is not running"
                " or it passed"
            },
            422: {"model": ErrorList, "description": "More days than its rule allows"},
        },
    )
    async def extend(
        matter_id: uuid.UUID,
        deadline: DeadlineType,
        body: Extension,
        who: Annotated[Actor, acting],
    ) -> MatterDeadlines | JSONResponse:
        """Extend a running deadline where its rule allows (DOMAIN.md: handling, once, at most 30 days, with a
        reason), as a unit's request is granted: the petitioner is told, and the history names who."""
        state = current()
        office = await state.pool.fetchval("SELECT office FROM matters WHERE matter_id = $1", matter_id)
        who.require(who.may_send_out(office), "extend a deadline (the head of the matter's office may)")
        try:
            async with state.pool.acquire() as conn, conn.transaction():
                now = await state.clock.now(conn)
                await store.extend(conn, state.rules, matter_id, deadline, body.days, now, body.reason, by=who.recorded)
        except Refusal as refusal:
            if refusal.code == status.HTTP_422_UNPROCESSABLE_CONTENT:
                return error_response(
                    refusal.code, "the extension is invalid", [FieldError(field="days", message=refusal.message)]
                )
            raise HTTPException(refusal.code, refusal.message) from None
        return await matter_deadlines(matter_id, who)

    if service.settings.supervision_clock == "controlled":  # type: ignore[attr-defined]

        @router.post(
            "/admin/clock/advance",
            response_model=ClockView,
            dependencies=[operator],
            tags=["controlled clock"],
            responses={422: {"model": ErrorList, "description": "Too far in one step, or past 2200-01-01"}},
        )
        async def advance(body: Advance) -> ClockView | JSONResponse:
            """Move supervision's clock forward, then run every deadline check due by the new time (here and in
            the other instances) before answering."""
            state = current()
            try:
                async with state.pool.acquire() as conn:
                    offset = await state.clock.advance(conn, body.seconds)
            except ClockRefused as refused:
                return error_response(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    "the clock is not moved",
                    [FieldError(field="seconds", message=refused.message)],
                )
            now = utc_now() + offset
            moved = await state.scheduler.settle(now)
            return ClockView(now=now, offset_s=offset.total_seconds(), moved=moved)

        @router.get("/admin/clock", response_model=ClockView, dependencies=[operator], tags=["controlled clock"])
        async def clock() -> ClockView:
            state = current()
            async with state.pool.acquire() as conn:
                offset = await state.clock.offset(conn)
            return ClockView(now=utc_now() + offset, offset_s=offset.total_seconds())

    return router
