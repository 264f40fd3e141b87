"""Routing's HTTP API: operators and the bureau's staff through the console (a matter with its history,
reassignment, manual queues) and units without Kafka (feedback)."""
# No `from __future__ import annotations`: FastAPI evaluates these signatures, which name local dependencies.

import secrets
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from xinfang_shared.contracts.events import FieldError, MatterStatus, UnitFeedback, field_errors, utc_now
from xinfang_shared.contracts.reference import UNITS, DeadlineType, Office
from xinfang_shared.contracts.values import UNIT_CODE, Text
from xinfang_shared.logging import redact
from xinfang_shared.personal import masked_person
from xinfang_shared.service import ErrorList, Service, error_response
from xinfang_shared.staff import Actor

from .feedback import Refusal, Refused
from .state import RoutingState

# A feedback body is at most an opinion (20,000 characters) and a reason (5,000): 256 KiB is plenty.
MAX_FEEDBACK_BYTES = 256 * 1024

REFUSAL_STATUS = {
    Refusal.UNKNOWN_MATTER: status.HTTP_404_NOT_FOUND,
    Refusal.NOT_ASSIGNED: status.HTTP_403_FORBIDDEN,
    Refusal.ILLEGAL: status.HTTP_409_CONFLICT,
    Refusal.MALFORMED: status.HTTP_422_UNPROCESSABLE_CONTENT,
}


class HistoryEntry(BaseModel):
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str
    office: str | None
    unit: str | None
    rule: str | None
    reason: str | None
    reported_at: datetime | None = Field(
        default=None, description="With a unit's action: when the unit said it acted (`at` is when it reached us)"
    )


class PersonView(BaseModel):
    """A petitioner or a representative (the contract's Petitioner / Person), in clear or masked."""

    name: str
    id_number: str
    phone: str
    address: str | None = None
    email: str | None = None


class PersonalView(BaseModel):
    masked: bool = Field(description="Masked (张**, 138****5678): the person's office does not handle the matter")
    petitioner: PersonView
    representatives: list[PersonView]


# The tracking code lets whoever holds it look the matter up and rate it as its petitioner: it is given, like
# personal data, only to those whose office handles the matter (a petitioner who lost it calls them), never a leader.
TRACKING_CODE = "The petitioner's tracking code: to the handling office (and operators) only, else null"


class MatterView(BaseModel):
    matter_id: uuid.UUID
    tracking_code: str | None = Field(description=TRACKING_CODE)
    kind: str
    registered_at: datetime
    title: str | None
    content: str | None
    region_code: str | None = Field(description="GB/T 2260 code of where it happened, if given")
    headcount: int | None
    status: str
    office: str | None
    unit: str | None
    category: str | None
    category_inferred: bool
    category_confidence: float | None
    needs_review: bool = Field(description="The category could not be inferred with confidence: a person decides")
    office_rule: str | None
    unit_rule: str | None
    rules_version: str | None
    history: list[HistoryEntry]
    personal: PersonalView | None = Field(
        description="Who raised it: in clear to the staff of the office handling it (and operators), masked to"
        " others who may read it (leaders); null when routing keeps none"
    )


class Reassign(BaseModel):
    unit: str = Field(max_length=64, pattern=UNIT_CODE, description="The unit to transfer the matter to")
    reason: Text = Field(min_length=1, max_length=2000)


class Reassigned(BaseModel):
    matter_id: uuid.UUID
    unit: str
    status: str


class QueueEntry(BaseModel):
    matter_id: uuid.UUID
    tracking_code: str | None = Field(description=TRACKING_CODE)
    registered_at: datetime
    category: str | None
    reason: str | None
    kind: str
    region_code: str | None
    headcount: int | None
    due_at: datetime | None = Field(
        description="When the office's routing deadline (register and transfer or assign) falls due: counted from"
        " the registration, or from its return to the queue (an objection), as supervision counts it"
    )


def _region_code(details: Any) -> str | None:
    location = details.get("location") if isinstance(details, dict) else None
    return location.get("region_code") if isinstance(location, dict) else None


def _personal(opened: object, *, masked: bool) -> PersonalView | None:
    if not isinstance(opened, dict) or not isinstance(opened.get("petitioner"), dict):
        return None
    show = masked_person if masked else dict
    return PersonalView(
        masked=masked,
        petitioner=PersonView(**show(opened["petitioner"])),
        representatives=[PersonView(**show(r)) for r in opened.get("representatives") or ()],
    )


def build_router(service: Service, current: Callable[[], RoutingState]) -> APIRouter:
    router = APIRouter(prefix="/v1")
    acting = service.actor()

    @router.get(
        "/matters/{matter_id}",
        response_model=MatterView,
        tags=["operators"],
        responses={403: {"description": "Not a matter of the person's office"}, 404: {"description": "No such matter"}},
    )
    async def matter(matter_id: uuid.UUID, who: Annotated[Actor, acting]) -> MatterView:
        """A matter with its history and who raised it: to operators, leaders and the staff of the office it is
        in; the personal data in clear only to the office's staff (and operators)."""
        state = current()
        row = await state.pool.fetchrow("SELECT * FROM matters WHERE matter_id = $1", matter_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such matter")
        who.require(who.may_read(row["office"]), "read a matter of another office")
        # Opened for this answer only: never logged, never kept in clear.
        opened = state.router.vault.open(bytes(row["personal_data"])) if row["personal_data"] else None
        details, facts = row["details"] or {}, row["facts"] or {}
        history = await state.pool.fetch(
            "SELECT at, actor, action, from_status, to_status, office, unit, rule, reason, reported_at FROM history"
            " WHERE matter_id = $1 ORDER BY id",
            matter_id,
        )
        in_clear = who.may_see_personal_data(row["office"])

        def shown(text: str | None) -> str | None:
            return text if in_clear or text is None else redact(text)

        return MatterView(
            matter_id=row["matter_id"],
            tracking_code=row["tracking_code"] if who.may_see_personal_data(row["office"]) else None,
            kind=row["kind"],
            registered_at=row["registered_at"],
            # Free text may quote a name or a phone: to those without the right to personal data, redacted.
            title=shown(details.get("title")),
            content=shown(details.get("content")),
            region_code=_region_code(details),
            headcount=facts.get("headcount"),
            status=row["status"],
            office=row["office"],
            unit=row["unit"],
            category=row["category"],
            category_inferred=row["category_inferred"],
            category_confidence=row["category_confidence"],
            needs_review=row["needs_review"],
            office_rule=row["office_rule"],
            unit_rule=row["unit_rule"],
            rules_version=row["rules_version"],
            history=[HistoryEntry(**(dict(h) | {"reason": shown(h["reason"])})) for h in history],
            personal=_personal(opened, masked=not who.may_see_personal_data(row["office"])),
        )

    @router.post(
        "/matters/{matter_id}/reassign",
        response_model=Reassigned,
        tags=["operators"],
        responses={
            403: {"description": "Not this person's to assign (another office; a transferred matter: heads only)"},
            404: {"description": "No such matter"},
            409: {"description": "Not reassignable now"},
            422: {"model": ErrorList},
        },
    )
    async def reassign(
        matter_id: uuid.UUID,
        body: Reassign,
        who: Annotated[Actor, acting],
    ) -> Reassigned | JSONResponse:
        """Assign a matter waiting in its office's queue to a unit (a clerk of the office may), or move a
        transferred one to another unit (its head)."""
        if body.unit not in UNITS:
            return error_response(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "the request is invalid",
                [FieldError(field="unit", message=f"'{body.unit}' is not a unit")],
            )
        state = current()
        now = utc_now()
        async with state.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT status, office FROM matters WHERE matter_id = $1 FOR UPDATE", matter_id)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such matter")
            if row["status"] == MatterStatus.AWAITING_ASSIGNMENT:
                who.require(who.may_change(row["office"]), "assign a matter of another office")
            else:
                who.require(who.may_send_out(row["office"]), "reassign a transferred matter (a head of its office may)")
            reassignable = {MatterStatus.AWAITING_ASSIGNMENT, MatterStatus.TRANSFERRED, MatterStatus.OBJECTED}
            if row["status"] not in reassignable:
                raise HTTPException(status.HTTP_409_CONFLICT, f"a matter that is {row['status']} is not reassigned")
            await state.router.assign(
                conn,
                matter_id,
                body.unit,
                now,
                actor=who.recorded,
                action="reassigned",
                rule="manual-reassignment",
                reason=body.reason,
                previous=MatterStatus(row["status"]),
            )
        return Reassigned(matter_id=matter_id, unit=body.unit, status=MatterStatus.TRANSFERRED.value)

    @router.get(
        "/queues/{office}",
        response_model=list[QueueEntry],
        tags=["operators"],
        summary="An office's manual-assignment queue",
        responses={403: {"description": "Another office's queue"}},
    )
    async def queue(office: Office, who: Annotated[Actor, acting]) -> list[QueueEntry]:
        """The office's matters waiting for a person to choose their unit, oldest first."""
        who.require(who.may_read(office), "read another office's queue")
        state = current()
        # The routing deadline runs from the registration; a matter back from a unit (an objection) must be
        # assigned again in time, counted from its return (supervision opens it again then: ledger.py).
        rows = await state.pool.fetch(
            "SELECT m.matter_id, m.tracking_code, m.registered_at, m.category, m.kind, m.details, m.facts,"
            " (SELECT reason FROM history h WHERE h.matter_id = m.matter_id ORDER BY id DESC LIMIT 1) AS reason,"
            " CASE WHEN EXISTS (SELECT 1 FROM history h WHERE h.matter_id = m.matter_id"
            " AND h.to_status = 'transferred') THEN coalesce(m.status_at, m.registered_at) ELSE m.registered_at"
            " END AS routing_from"
            " FROM matters m WHERE m.office = $1 AND m.status = 'awaiting-assignment' ORDER BY m.registered_at",
            office.value,
        )
        routing = state.router.deadlines[DeadlineType.ROUTING]
        codes_given = who.may_see_personal_data(office)
        return [
            QueueEntry(
                matter_id=r["matter_id"],
                tracking_code=r["tracking_code"] if codes_given else None,
                registered_at=r["registered_at"],
                category=r["category"],
                reason=r["reason"],
                kind=r["kind"],
                region_code=_region_code(r["details"]),
                headcount=(r["facts"] or {}).get("headcount"),
                due_at=routing.due(r["routing_from"]),
            )
            for r in rows
        ]

    @router.post(
        "/units/{unit}/feedback",
        status_code=status.HTTP_202_ACCEPTED,
        tags=["units"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UnitFeedback"}}},
            }
        },
        responses={
            401: {"description": "Not this unit's key"},
            403: {"model": ErrorList},
            404: {"model": ErrorList},
            409: {"model": ErrorList},
            413: {"model": ErrorList, "description": f"A body over {MAX_FEEDBACK_BYTES} bytes"},
            422: {"model": ErrorList},
        },
    )
    async def feedback(
        unit: Annotated[str, Path(max_length=64, pattern=UNIT_CODE, description="The unit's code, e.g. city-5101")],
        request: Request,
    ) -> JSONResponse:
        state = current()
        expected = state.unit_keys.get(unit)
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if (
            expected is None
            or scheme.lower() != "bearer"
            or not secrets.compare_digest(key.encode(), expected.encode())
        ):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                f"the API key of {unit} is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        raw = await _bounded_body(request, MAX_FEEDBACK_BYTES)
        if raw is None:
            return error_response(
                status.HTTP_413_CONTENT_TOO_LARGE,
                "the feedback is too large",
                [FieldError(field="<body>", message=f"at most {MAX_FEEDBACK_BYTES} bytes")],
            )
        try:
            body = UnitFeedback.model_validate_json(raw)
        except ValidationError as exc:
            errors = field_errors(exc, whole="<body>")
            return error_response(status.HTTP_422_UNPROCESSABLE_CONTENT, "the feedback is invalid", errors)
        if body.unit != unit:
            return error_response(
                status.HTTP_403_FORBIDDEN,
                "feedback is sent in the unit's own name",
                [FieldError(field="unit", message=f"must be {unit}")],
            )
        try:
            await state.take_feedback(body, arrived_at=utc_now())
        except Refused as refused:
            return error_response(REFUSAL_STATUS[refused.kind], "the feedback is refused", refused.errors)
        return JSONResponse({"matter_id": str(body.matter_id), "action": body.action.value}, status_code=202)

    return router


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None once it is longer than `limit` bytes (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
