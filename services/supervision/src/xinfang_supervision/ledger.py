"""The deadline ledger: every statutory deadline of every matter, opened, met, extended, paused and resumed as
the lifecycle events arrive. Each method runs inside the caller's transaction and writes what it publishes
to the outbox in that same transaction, so a deadline's state and its events never disagree.

Which event does what (DOMAIN.md, lifecycle and deadlines):
  registered              → routing opens (not for a repeat: it is never routed)
  transferred             → routing met; acceptance and objection open for the unit (a new unit: new round)
  awaiting-assignment     → the previous unit's acceptance and objection close; routing stays open
  objected                → objection met; acceptance closes
  accepted / in-review / in-re-review (from transferred)
                          → acceptance met, objection closes; handling / review / re-review opens
  not-accepted            → acceptance met, objection closes
  concluded / review-concluded / re-review-concluded
                          → handling / review / re-review met; after the first two the petitioner's window
                            to ask one level up opens (published as `review` / `re-review` on this matter)
  review-requested / re-review-requested
                          → that window met (the request came in it)
  extension-requested     → the running handling deadline extended, or the request refused with a reason
  closed, terminated, duplicate, not-accepted-again
                          → whatever is still open closes
Every deadline that ends without being met (a window that lapses, a deadline closed by termination or
reassignment) is published as `closed`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
import orjson

from xinfang_shared import outbox
from xinfang_shared.contracts.events import DeadlineEvent, FeedbackRejected, FieldError, MatterStatusChanged
from xinfang_shared.contracts.reference import UNITS, DeadlineState, DeadlineType, Office
from xinfang_shared.contracts.topics import (
    DEADLINE_WARNINGS,
    DEADLINES_EVENTS,
    FEEDBACK_REJECTED,
    unit_feedback_rejected_topic,
)
from xinfang_shared.deadlines import DeadlineRule, DeadlineRules

from .history import record_history
from .statuses import CONCLUSION_MEETS, DECIDING_OPENS, ENDS_EVERYTHING, REQUEST_MEETS, REQUEST_OPENS, S

log = logging.getLogger(__name__)

D = DeadlineType
CLOSED = DeadlineState.CLOSED.value  # a window that lapsed, or a deadline that no longer applies
EXTENSIBLE = (D.HANDLING, D.REVIEW, D.RE_REVIEW)


@dataclass(frozen=True)
class RegisteredFacts:
    """What supervision reads of a registration (no petitioner, no tracking code: it holds no key to them)."""

    matter_id: uuid.UUID
    registered_at: datetime
    repeat: bool


class Refusal(Exception):
    """An operator's request that cannot be done; `code` is the HTTP answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Ledger:
    def __init__(self, rules: DeadlineRules) -> None:
        self.rules = rules

    # ---- lifecycle events -------------------------------------------------------------------------------

    async def registered(self, conn: asyncpg.Connection, facts: RegisteredFacts, shift: timedelta) -> None:
        office = await conn.fetchval(
            "INSERT INTO matters (matter_id, registered_at) VALUES ($1, $2)"
            " ON CONFLICT (matter_id) DO UPDATE SET registered_at = EXCLUDED.registered_at, updated_at = now()"
            " RETURNING office",
            facts.matter_id,
            facts.registered_at,
        )
        if facts.repeat:
            return
        # The transfer may have been read first (the topics are read independently): then it stays as it is.
        if await self._is_open(conn, facts.matter_id, D.ROUTING) is None:
            out = Publication(facts.matter_id, office)
            await self._open(conn, out, D.ROUTING, None, facts.registered_at + shift)
            await out.write(conn)

    async def status_changed(self, conn: asyncpg.Connection, event: MatterStatusChanged, shift: timedelta) -> None:
        at = event.at + shift
        matter, unit = event.matter_id, event.unit
        # The office comes with the change (supervision does not read matters.routed.v1): kept once known.
        office = await conn.fetchval(
            "INSERT INTO matters (matter_id, unit, status, office) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (matter_id) DO UPDATE SET unit = EXCLUDED.unit, status = EXCLUDED.status,"
            " office = COALESCE(EXCLUDED.office, matters.office), updated_at = now() RETURNING office",
            matter,
            unit,
            event.status.value,
            event.office.value if event.office else None,
        )
        if event.action == "extension-requested":
            await self.extend(conn, matter, unit, event.extension_days or 0, at, reason=event.reason)
            return
        if event.action == "received":
            return
        out = Publication(matter, office)
        await self._follow(conn, out, event, at)
        await out.write(conn)

    async def _follow(
        self, conn: asyncpg.Connection, out: Publication, event: MatterStatusChanged, at: datetime
    ) -> None:
        """What the lifecycle change does to the matter's deadlines (the table in this module's docstring)."""
        matter, unit, status = event.matter_id, event.unit, event.status
        if status == S.TRANSFERRED:
            if not await self._meet(conn, out, D.ROUTING, at) and await self._is_open(conn, matter, D.ROUTING) is None:
                # Read before its registration: the routing deadline is taken to start at the transfer.
                await self._open(conn, out, D.ROUTING, None, at)
                await self._meet(conn, out, D.ROUTING, at)
            for deadline in (D.ACCEPTANCE, D.OBJECTION):
                await self._open(conn, out, deadline, unit, at)
        elif status == S.AWAITING_ASSIGNMENT:
            for deadline in (D.ACCEPTANCE, D.OBJECTION):
                await self._close(conn, out, deadline, at, "back to the office's queue")
            # Unseen registration, or back in the queue after an objection (routing was met): it must be
            # assigned (again), in time.
            if not await self._is_open(conn, matter, D.ROUTING):
                await self._open(conn, out, D.ROUTING, None, at)
        elif status == S.OBJECTED:
            await self._meet(conn, out, D.OBJECTION, at)
            await self._close(conn, out, D.ACCEPTANCE, at, "objected")
        elif status in DECIDING_OPENS and event.previous_status == S.TRANSFERRED:
            await self._meet(conn, out, D.ACCEPTANCE, at)
            await self._close(conn, out, D.OBJECTION, at, "accepted")
            await self._open(conn, out, DECIDING_OPENS[status], unit, at)
        elif status == S.NOT_ACCEPTED:
            await self._meet(conn, out, D.ACCEPTANCE, at)
            await self._close(conn, out, D.OBJECTION, at, "not accepted")
        elif status in CONCLUSION_MEETS:
            await self._meet(conn, out, CONCLUSION_MEETS[status], at)
            if status in REQUEST_OPENS:
                window = REQUEST_OPENS[status]
                await self._open(conn, out, window, unit, at, rule=self.rules.request_window(window))
        elif status in REQUEST_MEETS:
            await self._meet(conn, out, REQUEST_MEETS[status], at)
        elif status in ENDS_EVERYTHING:
            for deadline in D:
                await self._close(conn, out, deadline, at, status.value)

    # ---- extension, pause, resume ---------------------------------------------------------------------

    async def extend(
        self,
        conn: asyncpg.Connection,
        matter: uuid.UUID,
        unit: str | None,
        days: int,
        at: datetime,
        *,
        reason: str | None = None,
    ) -> None:
        """Grant the unit's extension of the running handling deadline, or refuse it on
        units.feedback.rejected.v1 with the reason."""
        row = await conn.fetchrow(
            "SELECT * FROM deadlines WHERE matter_id = $1 AND deadline = ANY($2) AND open AND NOT is_window FOR UPDATE",
            matter,
            [d.value for d in EXTENSIBLE],
        )
        problem = self._extension_problem(row, days, at)
        if problem is not None:
            await self._refuse_extension(conn, matter, unit, days, problem, at)
            return
        assert row is not None
        deadline = D(row["deadline"])
        rule = self.rules[deadline]
        due = rule.extended(row["due_at"], days)
        warn = rule.warn_at(row["started_at"], due)
        escalate = rule.escalate_at(due)
        stage, next_at = _stage_after_move(row["stage"], at, warn, due, escalate)
        await conn.execute(
            "UPDATE deadlines SET due_at=$3, warn_at=$4, escalate_at=$5, stage=$6, next_check_at=$7,"
            " state='extended', round=round+1, extensions=extensions+1, extended_days=extended_days+$8,"
            " updated_at=now() WHERE matter_id=$1 AND deadline=$2",
            matter,
            deadline.value,
            due,
            warn,
            escalate,
            stage,
            next_at,
            days,
        )
        out = Publication(matter)
        out.add(deadline, DeadlineState.EXTENDED, due, row["unit"], at, row["round"] + 1, extension=(days, reason))
        await out.write(conn)

    def _extension_problem(self, row: Any, days: int, at: datetime) -> str | None:
        if row is None:
            return "no handling deadline is running for this matter"
        deadline = D(row["deadline"])
        rule = self.rules[deadline]
        if rule.max_extensions == 0:
            return f"the {deadline.value} deadline cannot be extended"
        if row["extensions"] >= rule.max_extensions:
            return (
                f"the {deadline.value} deadline was already extended ({row['extended_days']} days);"
                f" at most {rule.max_extensions} extension(s) are granted"
            )
        if days < 1 or days > rule.max_extension_days:
            return f"an extension of 1 to {rule.max_extension_days} days may be granted, not {days}"
        if row["paused_at"] is None and at > row["due_at"]:
            return f"the {deadline.value} deadline passed at {row['due_at'].isoformat()}; ask before it passes"
        return None

    async def _refuse_extension(
        self, conn: asyncpg.Connection, matter: uuid.UUID, unit: str | None, days: int, problem: str, at: datetime
    ) -> None:
        request = {"matter_id": str(matter), "unit": unit, "action": "extension-requested", "extension_days": days}
        refusal = FeedbackRejected(
            matter_id=matter,
            unit=unit,
            errors=[FieldError(field="extension_days", message=problem)],
            raw=orjson.dumps(request).decode(),
        )
        # To the unit that asked (its own topic); an extension asked in an operator's name on the shared topic
        # reaches the unit the matter is with all the same: it is that unit's deadline.
        topic = unit_feedback_rejected_topic(unit) if unit in UNITS else FEEDBACK_REJECTED.name
        await outbox.enqueue(conn, topic, refusal, key=str(matter))
        await conn.execute(
            "INSERT INTO deadline_history (matter_id, deadline, round, state, due_at, unit, at, detail)"
            " SELECT matter_id, deadline, round, 'extension-refused', due_at, unit, $4, $2 FROM deadlines"
            " WHERE matter_id = $1 AND deadline = ANY($3) ORDER BY open DESC LIMIT 1",
            matter,
            problem,
            [d.value for d in EXTENSIBLE],
            at,
        )
        log.info("extension refused", extra={"matter_id": str(matter), "unit": unit, "reason": problem})

    async def pause(self, conn: asyncpg.Connection, matter: uuid.UUID, deadline: D, at: datetime, why: str) -> None:
        row = await self._running(conn, matter, deadline)
        if not self.rules[deadline].pausable or row["is_window"]:
            raise Refusal(409, f"the {deadline.value} deadline cannot be paused (its rule is not pausable)")
        if row["paused_at"] is not None:
            raise Refusal(409, f"the {deadline.value} deadline is already paused since {row['paused_at'].isoformat()}")
        if row["stage"] in ("overdue", "escalated"):
            raise Refusal(
                409, f"the {deadline.value} deadline passed at {row['due_at'].isoformat()}: too late to pause"
            )
        await conn.execute(
            "UPDATE deadlines SET paused_at=$3, next_check_at=NULL, state='paused', updated_at=now()"
            " WHERE matter_id=$1 AND deadline=$2",
            matter,
            deadline.value,
            at,
        )
        out = Publication(matter)
        out.add(deadline, DeadlineState.PAUSED, row["due_at"], row["unit"], at, row["round"], detail=why)
        await out.write(conn)

    async def resume(self, conn: asyncpg.Connection, matter: uuid.UUID, deadline: D, at: datetime, why: str) -> None:
        """The paused time is not counted: every time of the deadline moves by it."""
        row = await self._running(conn, matter, deadline)
        if row["paused_at"] is None:
            raise Refusal(409, f"the {deadline.value} deadline is not paused")
        paused = max(at - row["paused_at"], timedelta(0))
        due = row["due_at"] + paused
        warn = row["warn_at"] + paused if row["warn_at"] else None
        escalate = row["escalate_at"] + paused if row["escalate_at"] else None
        stage, next_at = _stage_after_move(row["stage"], at, warn, due, escalate)
        await conn.execute(
            "UPDATE deadlines SET paused_at=NULL, paused_total=paused_total+$3, due_at=$4, warn_at=$5,"
            " escalate_at=$6, stage=$7, next_check_at=$8, state='resumed', round=round+1, updated_at=now()"
            " WHERE matter_id=$1 AND deadline=$2",
            matter,
            deadline.value,
            paused,
            due,
            warn,
            escalate,
            stage,
            next_at,
        )
        out = Publication(matter)
        out.add(deadline, DeadlineState.RESUMED, due, row["unit"], at, row["round"] + 1, detail=why)
        await out.write(conn)

    async def _running(self, conn: asyncpg.Connection, matter: uuid.UUID, deadline: D) -> Any:
        row = await conn.fetchrow(
            "SELECT * FROM deadlines WHERE matter_id=$1 AND deadline=$2 FOR UPDATE", matter, deadline.value
        )
        if row is None:
            raise Refusal(404, f"matter {matter} has no {deadline.value} deadline")
        if not row["open"]:
            raise Refusal(409, f"the {deadline.value} deadline is no longer running (it is {row['state']})")
        return row

    # ---- building blocks --------------------------------------------------------------------------------

    async def _is_open(self, conn: asyncpg.Connection, matter: uuid.UUID, deadline: D) -> bool | None:
        """Whether the deadline is running; None when the matter has none of this kind yet."""
        found: bool | None = await conn.fetchval(
            "SELECT open FROM deadlines WHERE matter_id = $1 AND deadline = $2", matter, deadline.value
        )
        return found

    async def _open(
        self,
        conn: asyncpg.Connection,
        out: Publication,
        deadline: D,
        unit: str | None,
        start: datetime,
        *,
        rule: DeadlineRule | None = None,
    ) -> None:
        """Start the deadline (by its rule, or the window `rule` given); one already running for another unit
        (or an earlier round) is closed first."""
        rule = rule or self.rules[deadline]
        matter = out.matter
        previous = await conn.fetchrow(
            "SELECT round, open FROM deadlines WHERE matter_id=$1 AND deadline=$2 FOR UPDATE", matter, deadline.value
        )
        if previous is not None and previous["open"]:
            await self._close(conn, out, deadline, start, "started again")
        round_ = previous["round"] + 1 if previous is not None else 1
        due = rule.due(start)
        warn = rule.warn_at(start, due)
        await conn.execute(
            "INSERT INTO deadlines (matter_id, deadline, unit, state, stage, open, round, started_at, due_at,"
            " warn_at, escalate_at, next_check_at, is_window)"
            " VALUES ($1,$2,$3,'set','set',true,$4,$5,$6,$7,$8,$9,$10)"
            " ON CONFLICT (matter_id, deadline) DO UPDATE SET unit=EXCLUDED.unit, state='set', stage='set',"
            " is_window=EXCLUDED.is_window,"
            " open=true, round=EXCLUDED.round, started_at=EXCLUDED.started_at, due_at=EXCLUDED.due_at,"
            " warn_at=EXCLUDED.warn_at, escalate_at=EXCLUDED.escalate_at, next_check_at=EXCLUDED.next_check_at,"
            " met_at=NULL, overdue_at=NULL, escalated_at=NULL, extensions=0, extended_days=0, paused_at=NULL,"
            " paused_total='0', updated_at=now()",
            matter,
            deadline.value,
            unit,
            round_,
            start,
            due,
            warn,
            rule.escalate_at(due),
            next_check("set", warn, due, rule.escalate_at(due)),
            not rule.obligation,
        )
        out.add(deadline, DeadlineState.SET, due, unit, start, round_, window=not rule.obligation)

    async def _meet(self, conn: asyncpg.Connection, out: Publication, deadline: D, at: datetime) -> bool:
        # Met during a pause: the pause ends there, and its time does not count against the deadline.
        row = await conn.fetchrow(
            f"UPDATE deadlines SET state='met', open=false, met_at=$3, next_check_at=NULL, {_end_pause('$3')},"
            " updated_at=now() WHERE matter_id=$1 AND deadline=$2 AND open RETURNING due_at, unit, round, is_window",
            out.matter,
            deadline.value,
            at,
        )
        if row is None:
            return False
        window = row["is_window"]
        # A window used is not a duty met: it counts in no on-time figure.
        on_time = None if window else at <= row["due_at"]
        out.add(
            deadline, DeadlineState.MET, row["due_at"], row["unit"], at, row["round"], on_time=on_time, window=window
        )
        return True

    async def _close(self, conn: asyncpg.Connection, out: Publication, deadline: D, at: datetime, why: str) -> None:
        row = await conn.fetchrow(
            f"UPDATE deadlines SET state=$3, open=false, next_check_at=NULL, {_end_pause('$4')}, updated_at=now()"
            " WHERE matter_id=$1 AND deadline=$2 AND open RETURNING due_at, unit, round, is_window",
            out.matter,
            deadline.value,
            CLOSED,
            at,
        )
        if row is not None:
            out.add(
                deadline,
                DeadlineState.CLOSED,
                row["due_at"],
                row["unit"],
                at,
                row["round"],
                detail=why,
                window=row["is_window"],
            )


def deadline_records(event: DeadlineEvent) -> list[outbox.Outgoing]:
    """Where a deadline event is published: deadlines.events.v1 always, deadlines.warnings.v1 as well when
    someone acts on it (the same event, the same event_id)."""
    key = str(event.matter_id)
    records = [outbox.Outgoing(DEADLINES_EVENTS.name, key, event)]
    if event.is_warning:
        records.append(outbox.Outgoing(DEADLINE_WARNINGS.name, key, event))
    return records


class Entry(NamedTuple):
    """One state a deadline reached in the change: its history row and its event are both made of it."""

    deadline: D
    state: DeadlineState
    due: datetime
    unit: str | None
    at: datetime
    round: int
    on_time: bool | None
    detail: str | None
    window: bool
    extension: tuple[int, str | None] | None


class Publication:
    """What one change to a matter's deadlines publishes: gathered as the deadlines are written, then its history
    and its events are written in one statement each (not three statements per event)."""

    # The office is looked up at the end only when the caller did not know it.
    UNKNOWN: Any = object()

    def __init__(self, matter: uuid.UUID, office: str | None = UNKNOWN) -> None:
        self.matter = matter
        self.office = office
        self.entries: list[Entry] = []

    def add(
        self,
        deadline: D,
        state: DeadlineState,
        due: datetime,
        unit: str | None,
        at: datetime,
        round_: int,
        *,
        on_time: bool | None = None,
        detail: str | None = None,
        window: bool = False,
        extension: tuple[int, str | None] | None = None,
    ) -> None:
        self.entries.append(Entry(deadline, state, due, unit, at, round_, on_time, detail, window, extension))

    async def write(self, conn: asyncpg.Connection) -> None:
        if not self.entries:
            return
        await record_history(
            conn,
            [
                (self.matter, e.deadline.value, e.round, e.state.value, e.due, e.unit, e.at, e.detail)
                for e in self.entries
            ],
        )
        if self.office is Publication.UNKNOWN:
            self.office = await conn.fetchval("SELECT office FROM matters WHERE matter_id = $1", self.matter)
        office = Office(self.office) if self.office else None
        events = [
            DeadlineEvent(
                matter_id=self.matter,
                office=office,
                deadline=e.deadline,
                state=e.state,
                due_at=e.due,
                unit=e.unit,
                at=e.at,
                on_time=e.on_time,
                window=e.window,
                extension_days=e.extension[0] if e.extension else None,
                reason=e.extension[1] if e.extension else None,
            )
            for e in self.entries
        ]
        await outbox.enqueue_many(conn, [record for event in events for record in deadline_records(event)])


def _end_pause(at: str) -> str:
    """SET clauses ending a pause (if any) at parameter `at`: the paused time moves the due time, as a resume
    would. (SET expressions read the row's values from before the update.)"""
    paused = f"({at}::timestamptz - paused_at)"
    return (
        f"due_at = CASE WHEN paused_at IS NULL THEN due_at ELSE due_at + {paused} END,"
        f" paused_total = CASE WHEN paused_at IS NULL THEN paused_total ELSE paused_total + {paused} END,"
        " paused_at = NULL"
    )


def next_check(stage: str, warn: datetime | None, due: datetime, escalate: datetime | None) -> datetime | None:
    """When the scheduler must next look at a running deadline in `stage`."""
    if warn is None:  # a window: looked at once more, when it lapses
        return due if stage == "set" else None
    return {"set": warn, "due-soon": due, "overdue": escalate}.get(stage)


def _stage_after_move(
    stage: str, now: datetime, warn: datetime | None, due: datetime, escalate: datetime | None
) -> tuple[str, datetime | None]:
    """Where the scheduler resumes after the due time moved later (an extension, a resume): before the new
    warning time it starts over (and warns again for the new due time); otherwise it goes on from its stage."""
    if warn is not None and now < warn:
        stage = "set"
    return stage, next_check(stage, warn, due, escalate)
