"""Unit feedback as a state machine over the lifecycle (DOMAIN.md). An action is refused when it comes from
a unit the matter is not assigned to, is not legal in the matter's current state, or lacks what it needs.

The time that counts is the system's: a change takes effect when the unit's feedback reached the system (its
arrival: the broker's stamp, or the HTTP request), and every deadline is judged by it. The time the unit says it
acted (`at`) is kept beside it (`reported_at`, in the history and on the status event) but never makes late work
on time. An `at` ahead of the arrival by more than the clock skew is refused: nothing is done before it is sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from xinfang_shared.contracts.events import FieldError, MatterStatus, UnitFeedback
from xinfang_shared.contracts.reference import FeedbackAction

from .routing import Router

S = MatterStatus
A = FeedbackAction

# The status an action leads to at each review level (0: the matter, 1: a review, 2: a re-review).
ACCEPTED = {0: S.ACCEPTED, 1: S.IN_REVIEW, 2: S.IN_RE_REVIEW}
CONCLUDED = {0: S.CONCLUDED, 1: S.REVIEW_CONCLUDED, 2: S.RE_REVIEW_CONCLUDED}
HANDLING = {S.ACCEPTED, S.IN_REVIEW, S.IN_RE_REVIEW}
# How far ahead of routing's clock a unit's `at` may be (its clock runs fast).
CLOCK_SKEW = timedelta(minutes=5)

# (status, action) → legal. What each action then does is in FeedbackHandler.apply.
LEGAL: dict[FeedbackAction, set[MatterStatus]] = {
    A.RECEIVED: {S.TRANSFERRED},
    A.ACCEPTED: {S.TRANSFERRED},
    A.NOT_ACCEPTED: {S.TRANSFERRED},
    A.OBJECTED: {S.TRANSFERRED},
    A.EXTENSION_REQUESTED: HANDLING,
    A.CONCLUDED: HANDLING,
}


class Refusal(StrEnum):
    UNKNOWN_MATTER = "unknown-matter"  # HTTP 404
    NOT_ASSIGNED = "not-assigned"  # HTTP 403
    ILLEGAL = "illegal"  # HTTP 409
    MALFORMED = "malformed"  # HTTP 422


@dataclass
class Refused(Exception):
    kind: Refusal
    errors: list[FieldError]


def _refuse(kind: Refusal, field: str, message: str) -> Refused:
    return Refused(kind, [FieldError(field=field, message=message)])


class FeedbackHandler:
    def __init__(self, router: Router) -> None:
        self.router = router

    async def apply(
        self, conn: asyncpg.Connection, feedback: UnitFeedback, now: datetime, *, arrived_at: datetime
    ) -> None:
        """Apply one action, which reached the system at `arrived_at`, inside the caller's transaction, or raise
        Refused."""
        matter = await conn.fetchrow(
            "SELECT matter_id, status, status_at, unit, review_level, transferred_at, objected_units, facts"
            " FROM matters WHERE matter_id = $1 FOR UPDATE",
            feedback.matter_id,
        )
        if matter is None:
            raise _refuse(Refusal.UNKNOWN_MATTER, "matter_id", "no such matter")
        if matter["unit"] != feedback.unit:
            raise _refuse(Refusal.NOT_ASSIGNED, "unit", f"the matter is not assigned to {feedback.unit}")
        status = S(matter["status"])
        if status not in LEGAL[feedback.action]:
            raise _refuse(Refusal.ILLEGAL, "action", f"'{feedback.action.value}' is not possible while {status.value}")
        self._check_fields(feedback)
        if feedback.at > arrived_at + CLOCK_SKEW:
            ahead = f"{feedback.at.isoformat()}; it reached the system at {arrived_at.isoformat()}"
            raise _refuse(Refusal.MALFORMED, "at", f"is in the future ({ahead}): send when it happened")
        # Never before the matter's last change (two arrivals on different partitions may cross).
        last = matter["status_at"]
        at = max(arrived_at, last) if last is not None else arrived_at
        level = int(matter["review_level"])
        common: dict[str, Any] = {
            "actor": feedback.unit,
            "action": feedback.action.value,
            "reason": feedback.reason,
            "reported_at": feedback.at,
        }
        match feedback.action:
            case A.RECEIVED:
                await self.router.change(conn, feedback.matter_id, status, status, feedback.unit, at, **common)
            case A.EXTENSION_REQUESTED:
                # Supervision owns the deadlines: it grants the extension or refuses it with a reason.
                await self.router.change(
                    conn,
                    feedback.matter_id,
                    status,
                    status,
                    feedback.unit,
                    at,
                    extension_days=feedback.extension_days,
                    **common,
                )
            case A.ACCEPTED:
                await self.router.change(conn, feedback.matter_id, status, ACCEPTED[level], feedback.unit, at, **common)
            case A.NOT_ACCEPTED:
                await self.router.change(conn, feedback.matter_id, status, S.NOT_ACCEPTED, feedback.unit, at, **common)
            case A.CONCLUDED:
                concluded = CONCLUDED[level]
                await self.router.change(
                    conn, feedback.matter_id, status, concluded, feedback.unit, at, opinion=feedback.opinion, **common
                )
                if level == 2:  # the third tier is final (statutory): the whole chain ends here
                    why = f"the re-review (matter {feedback.matter_id}) concluded: final (三级终结)"
                    await self.router.change(
                        conn,
                        feedback.matter_id,
                        concluded,
                        S.TERMINATED,
                        feedback.unit,
                        at,
                        actor="routing",
                        action="terminated",
                        reason=why,
                    )
                    await self.router.end_chain(conn, feedback.matter_id, S.TERMINATED, at, why=why)
            case A.OBJECTED:
                await self._objected(conn, matter, feedback, at, now)

    async def _objected(
        self, conn: asyncpg.Connection, matter: Any, feedback: UnitFeedback, at: datetime, now: datetime
    ) -> None:
        transferred_at = matter["transferred_at"]
        if transferred_at is not None and at >= self.router.objection_ends(transferred_at):
            raise _refuse(
                Refusal.ILLEGAL, "action", "the objection window has passed; handle the matter or ask the office"
            )
        objected = [*matter["objected_units"], feedback.unit]
        await conn.execute("UPDATE matters SET objected_units = $2 WHERE matter_id = $1", feedback.matter_id, objected)
        await self.router.change(
            conn,
            feedback.matter_id,
            S.TRANSFERRED,
            S.OBJECTED,
            feedback.unit,
            at,
            actor=feedback.unit,
            action="objected",
            reason=feedback.reason,
            reported_at=feedback.at,
        )
        # Routed again, never to a unit that objected: otherwise into the office's manual queue.
        decision = self.router.rulebook.rules().decide(dict(matter["facts"]))
        unit = decision.unit if decision.unit not in objected else None
        rule = decision.unit_rule if unit else "objection-to-manual-queue"
        await self.router.assign(
            conn,
            feedback.matter_id,
            unit,
            now,
            actor="routing",
            action="rerouted",
            rule=rule,
            reason=f"objected by {feedback.unit}",
            previous=S.OBJECTED,
        )

    @staticmethod
    def _check_fields(feedback: UnitFeedback) -> None:
        if feedback.action in (A.NOT_ACCEPTED, A.OBJECTED, A.EXTENSION_REQUESTED) and not feedback.reason:
            raise _refuse(Refusal.MALFORMED, "reason", f"required for '{feedback.action.value}'")
        if feedback.action == A.EXTENSION_REQUESTED and not feedback.extension_days:
            raise _refuse(Refusal.MALFORMED, "extension_days", "required for 'extension-requested' (at most 30)")
        if feedback.action == A.CONCLUDED and feedback.opinion is None:
            raise _refuse(Refusal.MALFORMED, "opinion", "required for 'concluded': {result, text}")
