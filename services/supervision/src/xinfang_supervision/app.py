"""The supervision service: registrations and lifecycle changes in; deadline events, supervision orders and
refused extensions out; a scheduler in every instance."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import asyncpg
from fastapi import FastAPI
from pydantic import AwareDatetime

from xinfang_shared import inbox
from xinfang_shared.batching import EventBatches
from xinfang_shared.contracts.events import Event, MatterStatusChanged
from xinfang_shared.contracts.topics import MATTERS_REGISTERED_V2, MATTERS_STATUS
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.registrations import REGISTERED_TOPICS
from xinfang_shared.service import Late, Service

from . import store
from .api import build_router
from .clock import Clock
from .ledger import RegisteredFacts
from .scheduler import Scheduler
from .settings import SupervisionSettings
from .state import SupervisionState

MIGRATIONS = Path(__file__).with_name("migrations")
E = TypeVar("E", bound=Event)


class Registered(Event):
    """The part of a registration supervision reads (matters.registered.v2, and v1 drained): never the petitioner,
    the tracking code or the text. It holds no key to the sealed block."""

    matter_id: uuid.UUID
    registered_at: AwareDatetime
    duplicate_of: uuid.UUID | None = None
    not_accepted_again: bool = False


def create_service(settings: SupervisionSettings) -> Service:
    service = Service(settings, migrations=MIGRATIONS, title="xinfang supervision")
    service.gauge_by(
        "supervision_open_deadlines",
        "Open deadlines (windows included) by how far the scheduler has taken them",
        "stage",
        "SELECT stage, count(*) FROM deadlines WHERE open GROUP BY stage",
        every=("set", "due-soon", "overdue", "escalated"),
    )
    late: Late[SupervisionState] = Late("supervision")

    @service.on_start
    async def open_state(svc: Service) -> None:
        rules = DeadlineRules.load(settings.deadline_rules_file)
        clock = Clock(controlled=settings.supervision_clock == "controlled")
        scheduler = Scheduler(
            svc.pool,
            clock,
            batch_size=settings.scheduler_batch_size,
            workers=settings.scheduler_workers,
            interval_s=settings.scheduler_interval_s,
            metrics=svc.metrics,
        )
        late.state = SupervisionState(svc.pool, rules, clock, scheduler)
        svc.background("deadline-scheduler", scheduler.run(), stop=scheduler.stop)

    def batches(
        model: type[E], what: str, apply: Callable[[asyncpg.Connection, list[E], timedelta], Awaitable[None]]
    ) -> EventBatches[E]:
        """Events not seen before applied in one transaction, as one batch (store.py), with the controlled
        clock's shift."""

        async def handle(events: list[E]) -> int:
            state = late()
            async with state.pool.acquire() as conn, conn.transaction():
                fresh = await inbox.first_time_many(conn, [e.event_id for e in events], source=what)
                if fresh:
                    shift = await state.clock.offset(conn)
                    await apply(conn, [e for e in events if e.event_id in fresh], shift)
            return len(fresh)

        return EventBatches(model, handle, service.dead_letter, service.limit(f"{what}:deadlines"))

    async def registered(conn: asyncpg.Connection, batch: list[Registered], shift: timedelta) -> None:
        facts = [
            RegisteredFacts(e.matter_id, e.registered_at, e.duplicate_of is not None or e.not_accepted_again)
            for e in batch
        ]
        await store.apply_registrations(conn, late().rules, facts, shift)

    async def status_changed(conn: asyncpg.Connection, batch: list[MatterStatusChanged], shift: timedelta) -> None:
        await store.apply_changes(conn, late().rules, batch, shift)

    # Each topic is read in batches, one transaction per batch; a matter's events on one topic keep their
    # order (same key, same partition). Feedback is not read here: routing validates it and publishes what
    # it changed on matters.status.v1 (with extension_days), in order with the matter's other changes.
    # Nor is matters.routed.v1: routing changes the status in the transaction that routes a matter (transferred,
    # or awaiting-assignment in the office's queue), and every status change carries the matter's office, set
    # there and never changed after; so the office is known from the change a routing's deadlines start on.
    for topics, handler in (
        (REGISTERED_TOPICS, batches(Registered, MATTERS_REGISTERED_V2.name, registered)),
        ((MATTERS_STATUS.name,), batches(MatterStatusChanged, MATTERS_STATUS.name, status_changed)),
    ):
        service.consume(*topics, consumer=f"{topics[0]}:deadlines")(handler.take)

    service.api.include_router(build_router(service, late))
    return service


def create_app() -> FastAPI:
    """What uvicorn serves (`factory=True`): nothing is built at import time."""
    return create_service(SupervisionSettings()).api
