"""The ledger's SQL: a batch of lifecycle events applied with one statement per table.

A batch first writes what it learns of its matters (`matters`, one upsert, in matter order): that row lock
makes the two consumers (registrations and status changes, possibly in two instances) take a shared matter one
after the other. Then it loads the matters' deadlines `FOR UPDATE` (the scheduler skips locked rows, so it
never moves a stage under the ledger), lets `ledger.Book` decide in memory, and writes the changed deadlines,
their history and their events (outbox) in one statement each."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from xinfang_shared import outbox
from xinfang_shared.contracts.events import FeedbackRejected, MatterStatusChanged
from xinfang_shared.contracts.reference import DeadlineType
from xinfang_shared.deadlines import DeadlineRules

from .history import record_history
from .ledger import ROW_COLUMNS, Book, DeadlineRow, RegisteredFacts

log = logging.getLogger(__name__)

_UPSERT_DEADLINES = (
    f"INSERT INTO deadlines ({', '.join(ROW_COLUMNS)})"
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[], $7::int[],"
    " $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[],"
    " $13::timestamptz[], $14::timestamptz[], $15::timestamptz[], $16::int[], $17::int[], $18::timestamptz[],"
    " $19::interval[], $20::bool[])"
    " ON CONFLICT (matter_id, deadline) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in ROW_COLUMNS[2:])
    + ", updated_at = now()"
)
assert ROW_COLUMNS[:2] == ("matter_id", "deadline") and len(ROW_COLUMNS) == 20, "keep _UPSERT_DEADLINES in step"


async def apply_registrations(
    conn: asyncpg.Connection, rules: DeadlineRules, batch: Sequence[RegisteredFacts], shift: timedelta
) -> None:
    """Registrations (in order): each matter's registration time kept, routing opened for the new ones."""
    last = {facts.matter_id: facts for facts in batch}
    matters = sorted(last)
    offices = await _upsert(
        conn,
        "INSERT INTO matters (matter_id, registered_at) SELECT * FROM unnest($1::uuid[], $2::timestamptz[])"
        " ON CONFLICT (matter_id) DO UPDATE SET registered_at = EXCLUDED.registered_at, updated_at = now()"
        " RETURNING matter_id, office",
        matters,
        [last[m].registered_at for m in matters],
    )
    book = await _book(conn, rules, [f.matter_id for f in batch if not f.repeat], offices)
    for facts in batch:
        book.registered(facts, shift)
    await save(conn, book)


async def apply_changes(
    conn: asyncpg.Connection, rules: DeadlineRules, batch: Sequence[MatterStatusChanged], shift: timedelta
) -> None:
    """Lifecycle changes (in order): each matter's unit and status as its last change left them, its office once
    known (the change carries it: supervision does not read matters.routed.v1), and its deadlines moved."""
    last = {event.matter_id: event for event in batch}
    office = {e.matter_id: e.office.value for e in batch if e.office is not None}
    matters = sorted(last)
    offices = await _upsert(
        conn,
        "INSERT INTO matters (matter_id, unit, status, office)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])"
        " ON CONFLICT (matter_id) DO UPDATE SET unit = EXCLUDED.unit, status = EXCLUDED.status,"
        " office = COALESCE(EXCLUDED.office, matters.office), updated_at = now() RETURNING matter_id, office",
        matters,
        [last[m].unit for m in matters],
        [last[m].status.value for m in matters],
        [office.get(m) for m in matters],
    )
    book = await _book(conn, rules, [e.matter_id for e in batch if e.action != "received"], offices)
    for event in batch:
        book.status_changed(event, shift)
    await save(conn, book)


async def hearing(
    conn: asyncpg.Connection,
    rules: DeadlineRules,
    matter: uuid.UUID,
    deadline: DeadlineType,
    at: datetime,
    why: str,
    *,
    pause: bool,
) -> None:
    """An operator or the office's staff pause or resume a deadline for a hearing; raises ledger.Refusal."""
    book = await _one_matter(conn, rules, matter)
    (book.pause if pause else book.resume)(matter, deadline, at, why)
    await save(conn, book)


async def extend(
    conn: asyncpg.Connection,
    rules: DeadlineRules,
    matter: uuid.UUID,
    deadline: DeadlineType,
    days: int,
    at: datetime,
    reason: str,
    *,
    by: str,
) -> None:
    """An office's head (or an operator) extends a deadline where its rule allows; raises ledger.Refusal."""
    book = await _one_matter(conn, rules, matter)
    book.grant(matter, deadline, days, at, reason, by=by)
    await save(conn, book)


async def _one_matter(conn: asyncpg.Connection, rules: DeadlineRules, matter: uuid.UUID) -> Book:
    office = await conn.fetchval("SELECT office FROM matters WHERE matter_id = $1", matter)
    return await _book(conn, rules, [matter], {matter: office})


async def _upsert(conn: asyncpg.Connection, sql: str, *columns: Sequence[object]) -> dict[uuid.UUID, str | None]:
    return {row["matter_id"]: row["office"] for row in await conn.fetch(sql, *columns)}


async def _book(
    conn: asyncpg.Connection, rules: DeadlineRules, matters: list[uuid.UUID], offices: dict[uuid.UUID, str | None]
) -> Book:
    """The matters' deadlines, locked until the transaction ends."""
    rows = []
    if matters:
        found = await conn.fetch(
            f"SELECT {', '.join(ROW_COLUMNS)} FROM deadlines WHERE matter_id = ANY($1::uuid[])"
            " ORDER BY matter_id, deadline FOR UPDATE",
            sorted(set(matters)),
        )
        rows = [DeadlineRow(*row) for row in found]
    return Book(rules, rows, offices)


async def save(conn: asyncpg.Connection, book: Book) -> None:
    """The changed deadlines, their history and their events, one statement each."""
    if book.changed:
        await conn.execute(
            _UPSERT_DEADLINES,
            *(list(column) for column in zip(*(_values(r) for r in book.changed.values()), strict=True)),
        )
    await record_history(conn, book.history_rows())
    await outbox.enqueue_many(conn, book.outgoing())
    for refused in book.refusals:
        assert isinstance(refused.event, FeedbackRejected)
        reason = refused.event.errors[0].message
        log.info("extension refused", extra={"matter_id": refused.key, "unit": refused.event.unit, "reason": reason})


def _values(row: DeadlineRow) -> tuple[object, ...]:
    return tuple(getattr(row, column) for column in ROW_COLUMNS)
