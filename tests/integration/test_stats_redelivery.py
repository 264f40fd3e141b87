"""Stats keeps no inbox record for the folds that are idempotent by the row's state (fold.KEEPS_INBOX): on the real
database, folding every event again, in other batches and another order, changes no fact and no hourly count;
and a deadline's met, which adds to a count, is still counted once. The routing comes with the status change it is
made by, and the rebuild also replays matters.routed.v1 (matters an earlier release routed): folding both changes
nothing more than one."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests import factories
from xinfang_shared.contracts.events import MatterRated, MatterRouted, MatterStatusChanged
from xinfang_shared.contracts.reference import DeadlineState
from xinfang_shared.contracts.topics import MATTERS_ROUTED
from xinfang_shared.db import create_pool, migrate_dsn
from xinfang_stats import fold
from xinfang_stats.app import MIGRATIONS

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
# What the live service folds, and the rebuild's replay of matters.routed.v1.
MODELS = {topic: model for topic, model, _ in fold.FOLDS} | {MATTERS_ROUTED.name: MatterRouted}
APPLY = {topic: apply for topic, _, apply in fold.FOLDS} | {MATTERS_ROUTED.name: fold.routed}


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    schema = f"stats_redelivery_{uuid.uuid4().hex[:8]}"
    await migrate_dsn(database, schema, MIGRATIONS)
    connections = await create_pool(database, schema, max_size=2)
    try:
        yield connections
    finally:
        await connections.execute(f"DROP SCHEMA {schema} CASCADE")
        await connections.close()


def _events(rng: random.Random) -> list[tuple[str, Any]]:
    """Twelve matters' events on every folded topic (half registered without a category, so routing moves
    their count), as (topic, event)."""
    events: list[tuple[str, Any]] = []
    for i in range(12):
        at = T0 + timedelta(minutes=7 * i)
        body = factories.submission(rng, category=None if i % 2 else "labor")
        registered = factories.registration(body, registered_at=at)
        matter = registered.matter_id
        events.append(
            (
                fold.MATTERS_REGISTERED_V2.name,
                MODELS[fold.MATTERS_REGISTERED_V2.name].model_validate(registered.model_dump()),
            )
        )
        events.append(
            (
                MATTERS_ROUTED.name,
                MatterRouted(
                    matter_id=matter,
                    office="online",
                    unit="city-5101",
                    category="land",
                    category_inferred=True,
                    rule="r",
                    routed_at=at + timedelta(seconds=2),  # routing publishes it with its change, at one time
                ),
            )
        )
        for n, (status, previous) in enumerate((("transferred", "registered"), ("accepted", "transferred"))):
            change = MatterStatusChanged(
                matter_id=matter,
                status=status,
                previous_status=previous,
                unit="city-5101",
                at=at + timedelta(seconds=2 + n),
                action="accepted" if status == "accepted" else "routed",
                office="online",
                category="land" if status == "transferred" else None,
                rule="r" if status == "transferred" else None,
            )
            events.append((fold.MATTERS_STATUS.name, change))
        met = factories.deadline_event(DeadlineState.MET, "acceptance", matter_id=matter, at=at + timedelta(seconds=3))
        events.append((fold.DEADLINES_EVENTS.name, met))
        events.append(
            (fold.MATTERS_RATED.name, MatterRated(matter_id=matter, rating="satisfied", at=at + timedelta(hours=1)))
        )
    return events


async def _fold(pool: asyncpg.Pool, events: list[tuple[str, Any]], batch: int) -> None:
    for start in range(0, len(events), batch):
        part = events[start : start + batch]
        for topic in MODELS:
            mine = [e for t, e in part if t == topic]
            if mine:
                await fold.fold_events(pool, topic, APPLY[topic], mine)


async def _figures(pool: asyncpg.Pool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    facts = [dict(r) for r in await pool.fetch("SELECT * FROM facts ORDER BY matter_id")]
    hourly = [dict(r) for r in await pool.fetch("SELECT * FROM hourly WHERE matters <> 0 ORDER BY 1, 2, 3, 4")]
    return facts, hourly


async def test_folding_every_event_again_changes_no_figure(pool: asyncpg.Pool) -> None:
    rng = random.Random(18)
    events = _events(rng)
    await _fold(pool, events, batch=len(events))
    first = await _figures(pool)
    assert len(first[0]) == 12 and all(f["met"] == 1 and f["rating"] == "satisfied" for f in first[0])
    assert sum(h["matters"] for h in first[1]) == 12
    assert {h["category"] for h in first[1]} == {"labor", "land"}, "the uncategorised were moved to routing's"
    # Redelivered: in small batches, every topic's events in reverse order.
    again = list(reversed(events))
    await _fold(pool, again, batch=5)
    assert await _figures(pool) == first
    # Live, without the replay of matters.routed.v1: the same figures.
    await pool.execute("TRUNCATE facts, hourly, inbox")
    await _fold(pool, [(t, e) for t, e in events if t != MATTERS_ROUTED.name], batch=7)
    assert await _figures(pool) == first
    inbox = await pool.fetch("SELECT DISTINCT source FROM inbox")
    assert [r["source"] for r in inbox] == [fold.DEADLINES_EVENTS.name], "only the counting fold keeps records"
