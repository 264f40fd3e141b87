"""Notify's HTTP API: what was sent for a matter (CONTRACT.md; to operators, and to the bureau's staff through the
console), the notices that failed and sending one again (operator key), and the SMS gateway's delivery receipts
(its own token)."""
# No `from __future__ import annotations`: FastAPI evaluates these signatures, which name local dependencies.

import secrets
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field

from xinfang_shared.contracts.values import ONE_LINE
from xinfang_shared.logging import redact
from xinfang_shared.service import Service
from xinfang_shared.staff import Actor

from . import store
from .registry import Contacts, RecipientKind, Via


class NotificationView(BaseModel):
    id: int
    notice: str
    recipient_kind: str = Field(description="petitioner, unit or office")
    recipient: str | None = Field(description="The unit's or office's code; null for the petitioner")
    channel: str | None = Field(
        description="email, sms or topic: how it went, or for one not tried yet how it will go (null only while"
        " notify has not seen its matter registered, or when it could not be composed)"
    )
    address: str | None = Field(description="Where it went, masked: 138****5678, z***@example.org")
    status: str = Field(description="pending, held, sent, delivered, undelivered or failed")
    attempts: int
    error: str | None = Field(description="Why the last attempt failed, if it did; any address or phone in it masked")
    at: datetime = Field(description="When its status last changed")


class Receipt(BaseModel):
    """One delivery receipt, as the gateway reports it (SmsReport)."""

    out_id: str = Field(max_length=64, pattern=r"^[0-9a-f]{32}$", description="The OutId the SMS was sent with")
    success: bool
    err_code: str = Field(default="", max_length=64)
    err_msg: str = Field(default="", max_length=200)
    report_time: str | None = Field(default=None, max_length=40)


class Retried(BaseModel):
    id: int
    status: str


def _view(r: asyncpg.Record, contacts: Contacts | None = None) -> NotificationView:
    return NotificationView(
        id=r["id"],
        notice=r["notice"],
        recipient_kind=r["recipient_kind"],
        recipient=None if r["recipient_kind"] == "petitioner" else r["recipient"],
        channel=r["channel"] or _channel_to_come(r, contacts),
        address=r["address_masked"],
        status=r["status"],
        attempts=r["attempts"],
        # A server's or gateway's words may quote the address or phone ("550 <zhang@...> unknown user"), and
        # "retried by" names whoever the operator said they were: masked whenever it is shown.
        error=redact(r["last_error"]) if r["last_error"] is not None else None,
        at=r["updated_at"],
    )


COLUMNS = "id, notice, recipient_kind, recipient, channel, address_masked, status, attempts, last_error, updated_at"


def _channel_to_come(r: asyncpg.Record, contacts: Contacts | None) -> str | None:
    """How a notice not tried yet will go, as the sender will choose it (sender._target): a petitioner by e-mail
    when they gave an address, else by SMS; a unit or an office as the contact registry says."""
    if r["status"] not in store.DUE or contacts is None:
        return None
    if r["recipient_kind"] == RecipientKind.PETITIONER:
        return None if r["by_email"] is None else (Via.EMAIL if r["by_email"] else Via.SMS).value
    try:
        return contacts.of(RecipientKind(r["recipient_kind"]), r["recipient"]).via.value
    except (KeyError, ValueError):
        return None


def build_router(
    service: Service, pool: Callable[[], asyncpg.Pool], receipt_token: str, contacts: Contacts
) -> APIRouter:
    router = APIRouter(prefix="/v1")
    operator = service.operator()

    @router.get("/notifications", response_model=list[NotificationView], tags=["operators"])
    async def listed(matter_id: uuid.UUID, who: Annotated[Actor, service.actor()]) -> list[NotificationView]:
        """What was sent (or is due, or failed) for a matter: each (notice, recipient) once, addresses masked. To
        operators and to any of the bureau's staff: notify does not know a matter's office (the console asks
        once routing let the person read the matter), and nothing here is in clear."""
        rows = await pool().fetch(
            "SELECT n.id, n.notice, n.recipient_kind, n.recipient, n.channel, n.address_masked, n.status,"
            " n.attempts, n.last_error, n.updated_at, m.by_email FROM notifications n"
            " LEFT JOIN matters m USING (matter_id) WHERE n.matter_id = $1 ORDER BY n.id",
            matter_id,
        )
        return [_view(r, contacts) for r in rows]

    @router.get(
        "/notifications/failed", response_model=list[NotificationView], dependencies=[operator], tags=["operators"]
    )
    async def dead(limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[NotificationView]:
        """Notices that failed for good (a permanent refusal, or every retry spent), most recent first."""
        rows = await pool().fetch(
            f"SELECT {COLUMNS} FROM notifications WHERE dead_lettered ORDER BY updated_at DESC LIMIT $1", limit
        )
        return [_view(r) for r in rows]

    @router.post(
        "/notifications/{notification_id}/retry",
        response_model=Retried,
        status_code=status.HTTP_202_ACCEPTED,
        dependencies=[operator],
        tags=["operators"],
        responses={404: {"description": "No such notice"}, 409: {"description": "It has not failed"}},
    )
    async def retry(
        notification_id: Annotated[int, Path(ge=1, le=2**62)],
        x_operator: Annotated[str, Header(min_length=1, max_length=100, pattern=ONE_LINE, description="Who (audit)")],
    ) -> Retried:
        """Send a failed notice again (after its address or the provider was mended): from its first attempt."""
        row = await pool().fetchrow(
            "UPDATE notifications SET status = 'pending', dead_lettered = false, attempts = 0,"
            " next_attempt_at = now(), last_error = 'retried by ' || $2, updated_at = now()"
            " WHERE id = $1 AND status = 'failed' RETURNING id, status",
            notification_id,
            x_operator,
        )
        if row is None:
            known = await pool().fetchval("SELECT status FROM notifications WHERE id = $1", notification_id)
            if known is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such notice")
            raise HTTPException(status.HTTP_409_CONFLICT, f"the notice is {known}, not failed")
        return Retried(id=row["id"], status=row["status"])

    @router.post("/sms/receipts", tags=["providers"], responses={401: {"description": "Not the gateway's token"}})
    async def receipts(request: Request, body: list[Receipt]) -> dict[str, object]:
        """Delivery receipts POSTed by the SMS gateway (it retries until it gets code 0): each updates the
        notice sent with that OutId to delivered or undelivered."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), receipt_token.encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the gateway's token is required")
        got = [(uuid.UUID(r.out_id), r.success, f"{r.err_code} {r.err_msg}".strip()) for r in body[:1000]]
        if got:
            await store.receipts(pool(), got)
        return {"code": 0, "msg": "成功"}

    return router
