"""The deadline scheduler: runs in every instance and shares the work through PostgreSQL.

A pass claims the deadlines whose next check is due with `FOR UPDATE SKIP LOCKED` (another instance takes
other rows, never the same ones), moves each through the stages it has reached (set → due-soon → overdue →
escalated; a window just closes), and writes the new stages, the history and the events to publish in one
transaction. A crash before the commit leaves everything as it was for the next pass, in this instance or
another; after it, the rows no longer qualify. The history's unique index on (deadline, due time, state) is
a second guard: a warning is published at most once per due time.

Overdue also sends a supervision order (督办) to the unit's inbox; escalated goes to the Supervision and
Review Office through deadlines.events.v1 and its overdue list. A window that lapses is published `closed`.
Warnings go on deadlines.warnings.v1 as well (ledger.deadline_records).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from xinfang_shared import outbox
from xinfang_shared.contracts.events import DeadlineEvent, UnitInboxMessage
from xinfang_shared.contracts.reference import DeadlineState, DeadlineType, Office
from xinfang_shared.contracts.topics import UNIT_INBOXES, unit_inbox_topic
from xinfang_shared.messaging import TRANSIENT_ERRORS

from .clock import Clock
from .history import record_history
from .ledger import CLOSED, deadline_records, next_check

log = logging.getLogger(__name__)

# stage → (the stage after it, the state published on reaching it)
FOLLOWS = {"set": "due-soon", "due-soon": "overdue", "overdue": "escalated"}


@dataclass
class Progress:
    """What a pass does to one deadline: the states it reaches (with when) and where it stops."""

    stage: str
    reached: list[tuple[str, datetime]] = field(default_factory=list)
    open: bool = True

    @property
    def state(self) -> str | None:
        return self.reached[-1][0] if self.reached else None


def progress(stage: str, warn: datetime | None, due: datetime, escalate: datetime | None, now: datetime) -> Progress:
    """Every threshold passed by `now`, in order: a clock far ahead gives due-soon, overdue and escalated at
    once, each stamped with its own threshold time."""
    result = Progress(stage)
    if warn is None:  # a window: it lapses quietly
        if due <= now:
            result.reached.append((CLOSED, due))
            result.open = False
        return result
    threshold = next_check(stage, warn, due, escalate)
    while threshold is not None and threshold <= now:
        result.stage = FOLLOWS[result.stage]
        result.reached.append((result.stage, threshold))
        threshold = next_check(result.stage, warn, due, escalate)
    return result


class Scheduler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        *,
        batch_size: int = 500,
        workers: int = 2,
        interval_s: float = 1.0,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.batch_size = batch_size
        self.workers = workers
        self.interval_s = interval_s
        self._stopping = asyncio.Event()
        self.reached = Counter(
            "xinfang_deadline_states", "Deadline states reached by the scheduler", ["state"], registry=metrics
        )

    async def run(self) -> None:
        """Pass after pass until stopped. Survives PostgreSQL outages."""
        while not self._stopping.is_set():
            try:
                await self.run_due()
            except TRANSIENT_ERRORS as exc:
                log.warning("deadline pass failed; will retry", extra={"error_type": type(exc).__name__})
            except Exception:
                # A defect, not an outage: said loudly, and the scheduler goes on (its batch rolled back).
                log.exception("deadline pass failed unexpectedly; will retry")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)

    def stop(self) -> None:
        self._stopping.set()

    async def run_due(self, now: datetime | None = None) -> int:
        """Claim and move every deadline due by `now` (default: the clock's now), batch by batch, in
        `workers` concurrent transactions (SKIP LOCKED keeps their batches apart): one decides its batch while
        another waits on PostgreSQL."""

        async def worker() -> int:
            total = 0
            while True:
                moved, claimed = await self._pass_batch(now)
                total += moved
                if claimed < self.batch_size:
                    return total

        return sum(await asyncio.gather(*(worker() for _ in range(self.workers))))

    async def settle(self, now: datetime, timeout_s: float = 60.0) -> int:
        """Run the checks due by `now`, then wait for rows another instance had claimed meanwhile, so that
        everything due by `now` has been handled when this returns."""
        moved = await self.run_due(now)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while await self.pool.fetchval("SELECT count(*) FROM deadlines WHERE next_check_at <= $1", now):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("deadlines due by the new time are still being processed")
            await asyncio.sleep(0.05)
            moved += await self.run_due(now)
        return moved

    async def _pass_batch(self, now: datetime | None) -> tuple[int, int]:
        async with self.pool.acquire() as conn, conn.transaction():
            at = now or await self.clock.now(conn)
            rows = await conn.fetch(
                "SELECT d.matter_id, d.deadline, d.unit, d.stage, d.round, d.due_at, d.warn_at, d.escalate_at,"
                " d.is_window, m.office FROM deadlines d LEFT JOIN matters m USING (matter_id)"
                " WHERE d.next_check_at <= $1 ORDER BY d.next_check_at LIMIT $2 FOR UPDATE OF d SKIP LOCKED",
                at,
                self.batch_size,
            )
            if not rows:
                return 0, 0
            moves = [(r, progress(r["stage"], r["warn_at"], r["due_at"], r["escalate_at"], at)) for r in rows]
            await _save(conn, moves)
            # The states reached, written once each: only those written now are published.
            published = await record_history(
                conn,
                [
                    (r["matter_id"], r["deadline"], r["round"], state, r["due_at"], r["unit"], reached_at, None)
                    for r, p in moves
                    for state, reached_at in p.reached
                ],
            )
            await outbox.enqueue_many(conn, [e for r, p in moves for e in _events(r, p, published)])
        for _, p in moves:
            for state, _ in p.reached:
                self.reached.labels(state).inc()
        return sum(len(p.reached) for _, p in moves), len(rows)


async def _save(conn: asyncpg.Connection, moves: list[tuple[Any, Progress]]) -> None:
    def when(p: Progress, state: str) -> datetime | None:
        return next((t for s, t in p.reached if s == state), None)

    await conn.execute(
        "UPDATE deadlines d SET stage = u.stage, state = COALESCE(u.state, d.state), open = u.open,"
        " next_check_at = u.next_check, overdue_at = COALESCE(u.overdue_at, d.overdue_at),"
        " escalated_at = COALESCE(u.escalated_at, d.escalated_at), updated_at = now()"
        " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::timestamptz[],"
        " $7::timestamptz[], $8::timestamptz[]) AS u(matter_id, deadline, stage, state, open, next_check,"
        " overdue_at, escalated_at) WHERE d.matter_id = u.matter_id AND d.deadline = u.deadline",
        [r["matter_id"] for r, _ in moves],
        [r["deadline"] for r, _ in moves],
        [p.stage for _, p in moves],
        [p.state for _, p in moves],
        [p.open for _, p in moves],
        [next_check(p.stage, r["warn_at"], r["due_at"], r["escalate_at"]) if p.open else None for r, p in moves],
        [when(p, "overdue") for _, p in moves],
        [when(p, "escalated") for _, p in moves],
    )


def _events(row: Any, p: Progress, published: set[tuple[Any, ...]]) -> list[outbox.Outgoing]:
    out: list[outbox.Outgoing] = []
    matter: uuid.UUID = row["matter_id"]
    office = Office(row["office"]) if row["office"] in Office._value2member_map_ else None
    for state, at in p.reached:
        if (matter, row["deadline"], row["round"], state) not in published:
            continue
        event = DeadlineEvent(
            matter_id=matter,
            deadline=DeadlineType(row["deadline"]),
            state=DeadlineState(state),
            due_at=row["due_at"],
            unit=row["unit"],
            at=at,
            office=office,
            window=row["is_window"],
        )
        out.extend(deadline_records(event))
        if state == DeadlineState.OVERDUE and row["unit"] in UNIT_INBOXES:
            out.append(outbox.Outgoing(unit_inbox_topic(row["unit"]), str(matter), _order(row, office, at)))
    return out


def _order(row: Any, office: Office | None, at: datetime) -> UnitInboxMessage:
    """The supervision order (督办) to the unit whose deadline passed."""
    deadline = row["deadline"]
    escalate_at: datetime = row["escalate_at"]
    return UnitInboxMessage(
        type="supervision-order",
        matter_id=row["matter_id"],
        unit=row["unit"],
        office=office or Office.SUPERVISION,
        respond_by={deadline: escalate_at},
        order_text=(
            f"督办 Supervision order: the {deadline} deadline of matter {row['matter_id']} passed at"
            f" {row['due_at'].isoformat()} ({at.isoformat()} noted). Act on it and report by"
            f" {escalate_at.isoformat()}; after that it is escalated to the Supervision and Review Office."
        ),
    )
