"""Intake's HTTP API: submissions from channel systems, the petitioner's look-up and rating."""
# No `from __future__ import annotations` here: FastAPI must evaluate the route signatures, which name
# dependencies defined inside build_router.

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from xinfang_shared import outbox
from xinfang_shared.contracts.events import MatterRated, Opinion, utc_now
from xinfang_shared.contracts.reference import Rating
from xinfang_shared.contracts.topics import MATTERS_RATED
from xinfang_shared.ratelimit import RATE_LIMITED, RateLimit
from xinfang_shared.service import ErrorList
from xinfang_shared.tracking import normalise

from .settings import IntakeSettings
from .state import IntakeState
from .submissions import answer


class Registered(BaseModel):
    matter_id: uuid.UUID
    tracking_code: str = Field(description="What the petitioner uses to look the matter up")
    status: str = Field(description="registered, duplicate or not-accepted-again")


class DeadlineView(BaseModel):
    deadline: str
    state: str
    due_at: datetime


class MatterView(BaseModel):
    """A matter as its petitioner sees it: no personal data of anyone."""

    tracking_code: str
    status: str
    kind: str
    channel: str
    registered_at: datetime
    repeat: str | None = Field(description="duplicate (of an open matter) or not-accepted-again (terminated)")
    office: str | None
    unit: str | None
    category: str | None
    deadlines: list[DeadlineView]
    opinion: Opinion | None
    rating: Rating | None


class RatingIn(BaseModel):
    rating: Rating


# The submission body is read and validated by hand (the path channel topics take: validation.parse and
# validate), not by FastAPI, so both paths share one validation and the busiest endpoint skips a layer;
# OpenAPI still describes the body.
SUBMISSION_BODY = {
    "parameters": [
        {
            "name": name,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": f"{what}: the person of reception who registers the visit, named by the console with"
            " its own channel key alone (recorded as received_by); any other key sending it is refused with 403",
        }
        for name, what in (
            ("X-Staff-User", "A user name"),
            ("X-Staff-Office", "reception"),
            ("X-Staff-Role", "clerk or head"),
        )
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Submission"}}},
    },
}


def build_router(current: Callable[[], IntakeState], settings: IntakeSettings) -> APIRouter:
    router = APIRouter(prefix="/v1")
    # The petitioners' endpoints need no key (the tracking code is the secret), so they are limited per client
    # address, one budget for both: codes cannot be guessed by brute force (a 404 costs more, see RateLimit)
    # and one client cannot load the service. In this instance's memory; the ingress limits cluster-wide.
    public = RateLimit(
        rate_per_s=settings.public_rate_limit_per_minute / 60,
        burst=settings.public_rate_limit_burst,
        miss_cost=settings.public_rate_limit_miss_cost,
        trusted_proxies=settings.trusted_proxies,
    )

    @router.post(
        "/submissions",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=Registered,
        tags=["submissions"],
        summary="Submit a matter from a channel system",
        openapi_extra=SUBMISSION_BODY,
        responses={
            200: {"model": Registered, "description": "The same (channel, external_id) and content again"},
            401: {"description": "No valid channel API key"},
            403: {
                "description": "The key's system may not submit for this channel; or X-Staff-* from a key not"
                " the console's, or naming a person who is not a clerk or head of reception"
            },
            409: {"model": ErrorList, "description": "The same (channel, external_id) with different content"},
            422: {"model": ErrorList, "description": "Invalid: every problem, field by field"},
        },
    )
    async def submit(request: Request) -> Response:
        """Registers the matter durably before answering 202: nothing answered 202 is ever lost, even when
        Kafka is down."""
        reply = await answer(current(), request.headers.get("authorization"), await request.body(), request.headers)
        return Response(reply.body, reply.status, headers=dict(reply.headers), media_type="application/json")

    @router.get(
        "/matters/{tracking_code}",
        response_model=MatterView,
        tags=["petitioners"],
        summary="Look a matter up by its tracking code",
        dependencies=[public.depends],
        responses={404: {"description": "No matter has this tracking code"}, **RATE_LIMITED},
    )
    async def look_up(tracking_code: str) -> MatterView:
        state = current()
        row = await _matter(state, tracking_code)
        deadlines = await state.pool.fetch(
            "SELECT deadline, state, due_at FROM matter_deadlines WHERE matter_id = $1 ORDER BY due_at",
            row["matter_id"],
        )
        return MatterView(
            tracking_code=row["tracking_code"],
            status=row["status"],
            kind=row["kind"],
            channel=row["channel"],
            registered_at=row["registered_at"],
            repeat="duplicate" if row["duplicate_of"] else "not-accepted-again" if row["not_accepted_again"] else None,
            office=row["office"],
            unit=row["unit"],
            category=row["category"],
            deadlines=[DeadlineView(**dict(d)) for d in deadlines],
            opinion=Opinion.model_validate(row["opinion"]) if row["opinion"] else None,
            rating=row["rating"],
        )

    @router.post(
        "/matters/{tracking_code}/rating",
        tags=["petitioners"],
        summary="Rate the handling opinion (once an opinion exists)",
        dependencies=[public.depends],
        responses={
            404: {"description": "No matter has this tracking code"},
            409: {"description": "No opinion yet, or already rated"},
            **RATE_LIMITED,
        },
    )
    async def rate(tracking_code: str, body: RatingIn) -> dict[str, str]:
        state = current()
        row = await _matter(state, tracking_code)
        now = utc_now()
        async with state.pool.acquire() as conn, conn.transaction():
            updated = await conn.fetchval(
                "UPDATE matters SET rating = $2, rated_at = $3 WHERE matter_id = $1 AND opinion IS NOT NULL"
                " AND rating IS NULL RETURNING true",
                row["matter_id"],
                body.rating.value,
                now,
            )
            if not updated:
                reason = "already rated" if row["rating"] else "there is no handling opinion to rate yet"
                raise HTTPException(status.HTTP_409_CONFLICT, reason)
            event = MatterRated(matter_id=row["matter_id"], rating=body.rating, at=now)
            await outbox.enqueue(conn, MATTERS_RATED.name, event, key=str(row["matter_id"]))
        return {"tracking_code": row["tracking_code"], "rating": body.rating.value}

    return router


async def _matter(state: IntakeState, tracking_code: str) -> Any:
    code = normalise(tracking_code)
    row = await state.pool.fetchrow("SELECT * FROM matters WHERE tracking_code = $1", code) if code else None
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no matter has this tracking code")
    return row
