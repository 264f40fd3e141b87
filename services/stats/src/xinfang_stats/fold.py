"""Folding events into the facts: one row per matter (its dimensions, its times, whether it went overdue, its
rating) and the hourly counts surges are measured on.

Each topic is read on its own, so a matter's events arrive in any order across topics: every fold here gives
the same row whatever the order (a time is the earliest seen, the status the latest by its own time, a flag
once set stays set, a count adds up). That is also why `xinfang-stats rebuild`, which reads topic after topic,
gives exactly the live figures.

What is read of a registration is what the figures need: never the petitioner (the narrow model below does not
even parse it), and of the text only its hot terms.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
from pydantic import AwareDatetime

from xinfang_shared.contracts.events import (
    DeadlineEvent,
    Event,
    Location,
    MatterRated,
    MatterRouted,
    MatterStatus,
    MatterStatusChanged,
)
from xinfang_shared.contracts.reference import Category, Channel, DeadlineState, Kind
from xinfang_shared.contracts.topics import (
    DEADLINES_EVENTS,
    MATTERS_RATED,
    MATTERS_REGISTERED_V2,
    MATTERS_STATUS,
)
from xinfang_shared.inbox import first_time_many
from xinfang_shared.workdays import CHINA

from .terms import terms_of

S = MatterStatus
ACCEPTED = (S.ACCEPTED, S.IN_REVIEW, S.IN_RE_REVIEW)
CONCLUDED = (S.CONCLUDED, S.REVIEW_CONCLUDED, S.RE_REVIEW_CONCLUDED)
GROUP_VISIT = 5  # headcount from which a visit is a group visit (集体访) in the statistics (DOMAIN.md)


class Registered(Event):
    """What stats reads of a registration (matters.registered.v2, and v1 drained): no petitioner, no
    representatives, no tracking code. It holds no key to the sealed block."""

    matter_id: uuid.UUID
    registered_at: AwareDatetime
    channel: Channel
    kind: Kind
    headcount: int = 1
    location: Location | None = None
    category: Category | None = None
    duplicate_of: uuid.UUID | None = None
    not_accepted_again: bool = False
    title: str = ""
    content: str = ""


def hour_of(at: datetime) -> datetime:
    """The Beijing hour an instant falls in (its start, as an aware datetime)."""
    local = at.astimezone(CHINA)
    return local.replace(minute=0, second=0, microsecond=0)


async def _lock(conn: asyncpg.Connection, ids: list[uuid.UUID], columns: str) -> dict[uuid.UUID, asyncpg.Record]:
    """The fact rows of `ids`, locked, created empty where missing (so a registration and its routing folded at
    the same time by two consumers take turns on the row instead of both reading "no row yet"). In matter order:
    the consumers lock rows they share in one order."""
    ordered = sorted(set(ids))
    await conn.execute(
        "INSERT INTO facts (matter_id) SELECT unnest($1::uuid[]) ORDER BY 1 ON CONFLICT DO NOTHING", ordered
    )
    rows = await conn.fetch(
        f"SELECT matter_id, {columns} FROM facts WHERE matter_id = ANY($1::uuid[]) ORDER BY matter_id FOR UPDATE",
        ordered,
    )
    return {r["matter_id"]: r for r in rows}


Hour = tuple[datetime, str, str, str]  # hour, region, category, channel


async def registered(conn: asyncpg.Connection, events: Sequence[Registered]) -> None:
    before = await _lock(conn, [e.matter_id for e in events], "registered_at, category")
    known = {mid: (r["registered_at"] is not None, r["category"]) for mid, r in before.items()}
    rows, counts = [], Counter[Hour]()
    for e in events:
        repeat = "duplicate" if e.duplicate_of else "not-accepted-again" if e.not_accepted_again else None
        region = e.location.region_code[:4] if e.location else ""
        was_registered, routed_category = known[e.matter_id]
        category = routed_category or (e.category.value if e.category else None)
        rows.append(
            (
                e.matter_id,
                e.registered_at,
                e.registered_at.astimezone(CHINA).date(),
                e.channel.value,
                e.kind.value,
                region,
                e.headcount,
                e.headcount >= GROUP_VISIT,
                repeat,
                category,
                sorted(terms_of(e.title, e.content)),
            )
        )
        if not was_registered and repeat is None:  # counted once, under its category if routing told it already
            counts[(hour_of(e.registered_at), region, category or "unknown", e.channel.value)] += 1
        known[e.matter_id] = (True, category)
    await conn.executemany(
        "UPDATE facts SET registered_at = $2, day = $3, channel = $4, kind = $5, region = $6, headcount = $7,"
        " group_visit = $8, repeat = $9, category = $10, terms = $11 WHERE matter_id = $1",
        rows,
    )
    await _count(conn, counts)


Routing = tuple[uuid.UUID, str, str, datetime, str | None]  # matter, office, category, routed at, unit


async def routed(conn: asyncpg.Connection, events: Sequence[MatterRouted]) -> None:
    """matters.routed.v1, folded only by the rebuild: the status changes an earlier release published did not
    carry the routing (the live service takes it from the change, `status`)."""
    await _routed(conn, [(e.matter_id, e.office.value, e.category.value, e.routed_at, e.unit) for e in events])


async def _routed(conn: asyncpg.Connection, routings: Sequence[Routing]) -> None:
    before = await _lock(conn, [r[0] for r in routings], "category, registered_at, region, channel, repeat")
    state = {mid: dict(r) for mid, r in before.items()}
    counts = Counter[Hour]()
    for matter, _, category, _, _ in routings:
        fact = state[matter]
        counted = fact["registered_at"] is not None and fact["repeat"] is None
        if counted and fact["category"] is None:  # counted at registration before its category was known: moved
            hour, region, channel = hour_of(fact["registered_at"]), fact["region"], fact["channel"]
            counts[(hour, region, "unknown", channel)] -= 1
            counts[(hour, region, category, channel)] += 1
        fact["category"] = fact["category"] or category
    await conn.executemany(
        "UPDATE facts SET office = $2, category = COALESCE(category, $3), routed_at = LEAST(routed_at, $4),"
        " unit = CASE WHEN status_at IS NULL THEN $5 ELSE unit END WHERE matter_id = $1",
        routings,
    )
    await _count(conn, counts)


async def status(conn: asyncpg.Connection, events: Sequence[MatterStatusChanged]) -> None:
    # The change a matter is routed by carries its office and category (stats does not read matters.routed.v1).
    routings = [
        (e.matter_id, e.office.value, e.category.value, e.at, e.unit)
        for e in events
        if e.action == "routed" and e.office is not None and e.category is not None
    ]
    if routings:
        await _routed(conn, routings)
    await conn.executemany(
        "INSERT INTO facts (matter_id, status, status_at, unit, transferred_at, accepted_at, not_accepted_at,"
        " concluded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (matter_id) DO UPDATE SET"
        " status = CASE WHEN facts.status_at IS NULL OR facts.status_at <= EXCLUDED.status_at"
        "   THEN EXCLUDED.status ELSE facts.status END,"
        " unit = CASE WHEN facts.status_at IS NULL OR facts.status_at <= EXCLUDED.status_at"
        "   THEN EXCLUDED.unit ELSE facts.unit END,"
        " status_at = GREATEST(facts.status_at, EXCLUDED.status_at),"
        " transferred_at = LEAST(facts.transferred_at, EXCLUDED.transferred_at),"
        " accepted_at = LEAST(facts.accepted_at, EXCLUDED.accepted_at),"
        " not_accepted_at = LEAST(facts.not_accepted_at, EXCLUDED.not_accepted_at),"
        " concluded_at = LEAST(facts.concluded_at, EXCLUDED.concluded_at)",
        [
            (
                e.matter_id,
                e.status.value,
                e.at,
                e.unit,
                e.at if e.status == S.TRANSFERRED else None,
                e.at if e.status in ACCEPTED and e.action == "accepted" else None,
                e.at if e.status == S.NOT_ACCEPTED else None,
                e.at if e.status in CONCLUDED else None,
            )
            for e in events
        ],
    )


def counted(event: DeadlineEvent) -> bool:
    """Whether a deadline event is in the figures: an obligation gone overdue or met. A window binds nobody (no
    on-time figure), and the other states (set, due-soon, extended, paused, resumed, escalated, closed) change
    no figure: those events are not folded and leave no inbox record."""
    return not event.window and event.state in (DeadlineState.OVERDUE, DeadlineState.MET)


async def deadline(conn: asyncpg.Connection, events: Sequence[DeadlineEvent]) -> None:
    # Per matter first (flags or'ed, met added up, as one event at a time would), then one statement in matter
    # order.
    per_matter: dict[uuid.UUID, tuple[bool, bool, int]] = {}
    for e in events:
        if counted(e):
            overdue, met = e.state == DeadlineState.OVERDUE, e.state == DeadlineState.MET
            was = per_matter.get(e.matter_id, (False, False, 0))
            per_matter[e.matter_id] = (was[0] or overdue, was[1] or (met and e.on_time is False), was[2] + met)
    if not per_matter:
        return
    matters = sorted(per_matter)
    await conn.execute(
        "INSERT INTO facts (matter_id, overdue, late, met)"
        " SELECT * FROM unnest($1::uuid[], $2::bool[], $3::bool[], $4::int[])"
        " ON CONFLICT (matter_id) DO UPDATE SET overdue = facts.overdue OR EXCLUDED.overdue,"
        " late = facts.late OR EXCLUDED.late, met = facts.met + EXCLUDED.met",
        matters,
        [per_matter[m][0] for m in matters],
        [per_matter[m][1] for m in matters],
        [per_matter[m][2] for m in matters],
    )


async def rated(conn: asyncpg.Connection, events: Sequence[MatterRated]) -> None:
    await conn.executemany(
        "INSERT INTO facts (matter_id, rating) VALUES ($1, $2)"
        " ON CONFLICT (matter_id) DO UPDATE SET rating = EXCLUDED.rating",
        [(e.matter_id, e.rating.value) for e in events],
    )


async def _count(conn: asyncpg.Connection, counts: Counter[Hour]) -> None:
    """Add to the hourly counts, in key order (the consumers lock the rows they share in one order)."""
    rows = [(*key, n) for key, n in sorted(counts.items()) if n]
    if not rows:
        return
    await conn.execute(
        "INSERT INTO hourly (hour, region, category, channel, matters)"
        " SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::int[])"
        " ON CONFLICT (hour, region, category, channel) DO UPDATE SET matters = hourly.matters + EXCLUDED.matters",
        *(list(column) for column in zip(*rows, strict=True)),
    )


E = TypeVar("E", bound=Event)
Fold = Callable[[asyncpg.Connection, Any], Awaitable[None]]  # (connection, the batch's new events of one topic)

# What each topic folds into the facts (the rebuild reads them in this order).
FOLDS: tuple[tuple[str, type[Event], Fold], ...] = (
    (MATTERS_REGISTERED_V2.name, Registered, registered),
    (MATTERS_STATUS.name, MatterStatusChanged, status),
    (DEADLINES_EVENTS.name, DeadlineEvent, deadline),
    (MATTERS_RATED.name, MatterRated, rated),
)


# The events of a topic the figures use, where not all are (the others are skipped before any database work).
FOLDED: dict[str, Callable[[Any], bool]] = {DEADLINES_EVENTS.name: counted}


# The topics whose fold adds to a count each time an event is folded: a deadline's `met`. Their events keep an
# inbox record, so a redelivery is not counted again. Every other fold gives the same row when an event is folded
# again (a time is the earliest, the status the latest by its time, a flag once set stays set, a registration is
# counted only while its row says it was not yet, a routing moves that count only while the row has no category),
# so their events keep none: the row's state is what makes a redelivery change nothing.
KEEPS_INBOX = frozenset({DEADLINES_EVENTS.name})


async def fold_events(pool: asyncpg.Pool, topic: str, apply: Fold, events: Sequence[Event]) -> int:
    """Fold the events in one transaction (where the topic KEEPS_INBOX, only those not folded before, with their
    inbox records); returns how many were folded. Events no figure uses (FOLDED) are left out first: a batch of
    only those opens no transaction (skipping one twice changes nothing either)."""
    folded = FOLDED.get(topic)
    if folded is not None:
        events = [e for e in events if folded(e)]
    if not events:
        return 0
    # By matter (stable), so the consumers lock the fact rows they share in one order.
    ordered = sorted(events, key=lambda e: str(getattr(e, "matter_id", "")))
    async with pool.acquire() as conn, conn.transaction():
        if topic not in KEEPS_INBOX:
            await apply(conn, ordered)
            return len(ordered)
        fresh = await first_time_many(conn, [e.event_id for e in ordered], source=topic)
        new = [e for e in ordered if e.event_id in fresh]
        if new:
            await apply(conn, new)
    return len(fresh)
