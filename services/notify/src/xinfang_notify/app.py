"""The notify service: registrations, routings, lifecycle changes, deadline events and surge alerts in;
e-mail, SMS and unit inbox reminders out, each (matter, notice, recipient) once.

Each topic is read in batches: one transaction per batch plans the notices (rules.py), each once on its unique
key, so redelivery plans nothing twice; the senders (sender.py) send what is planned, on their own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from aiokafka import ConsumerRecord
from fastapi import FastAPI

from xinfang_shared.batching import EventBatches
from xinfang_shared.contracts.events import (
    DeadlineEvent,
    Event,
    MatterRegisteredV2,
    MatterRouted,
    MatterStatusChanged,
    StatsAlert,
)
from xinfang_shared.contracts.topics import (
    DEADLINES_EVENTS,
    MATTERS_ROUTED,
    MATTERS_STATUS,
    STATS_ALERTS,
)
from xinfang_shared.db import create_pool
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.personal import PersonalDataVault, TransportSeal
from xinfang_shared.registrations import REGISTERED_TOPICS, registration_parser
from xinfang_shared.service import Late, Service

from . import store
from .api import build_router
from .channels import Email, Sms
from .registry import Contacts, load_notices
from .render import Renderer
from .rules import Planned, Rules
from .sender import Sender
from .settings import NotifySettings

MIGRATIONS = Path(__file__).with_name("migrations")
E = TypeVar("E", bound=Event)


class State:
    def __init__(self, pool: asyncpg.Pool, rules: Rules, vault: PersonalDataVault, sender: Sender) -> None:
        self.pool = pool
        self.rules = rules
        self.vault = vault
        self.sender = sender


# What a batch of events of one topic plans (inside the batch's transaction).
Planner = Callable[[asyncpg.Connection, State, list[E]], Awaitable[list[Planned]]]


def create_service(settings: NotifySettings) -> Service:
    service = Service(settings, migrations=MIGRATIONS, title="xinfang notify")
    late: Late[State] = Late("notify")
    tasks: list[asyncio.Task[None]] = []
    pools: list[asyncpg.Pool] = []
    # Checked at start-up: a notice table or contact registry that does not load stops the service.
    table, contacts = load_notices(settings.notices_file), Contacts.load(settings.contacts_file)

    @service.on_start
    async def open_state(svc: Service) -> None:
        vault = PersonalDataVault.from_settings(settings)
        # The senders' bookkeeping: its writes need not wait for the WAL's flush (sender.py says why).
        sends = await create_pool(
            settings.database_url,
            settings.db_schema,
            max_size=settings.senders + 1,
            settings={"synchronous_commit": "off"},
            command_timeout_s=settings.database_command_timeout_s,
        )
        pools.append(sends)
        sender = Sender(
            settings,
            sends,
            vault,
            contacts,
            Renderer(),
            Email(settings.smtp_url, settings.smtp_from, settings.smtp_timeout_s, keep=settings.senders),
            Sms(
                settings.sms_gateway_url,
                settings.sms_sign_name,
                settings.sms_access_key.get_secret_value(),
                settings.sms_timeout_s,
            ),
            svc.limit("senders:compose"),
            svc.metrics,
        )
        late.state = State(svc.pool, Rules(table, DeadlineRules.load(settings.deadline_rules_file)), vault, sender)
        tasks.append(asyncio.create_task(sender.run(), name="notify-senders"))

    @service.on_stop
    async def stop_senders(_: Service) -> None:
        if late.state is not None:
            late.state.sender.stop()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 15)
        if late.state is not None:
            await late.state.sender.sms.close()
            await late.state.sender.email.close()
        for pool in pools:
            await pool.close()

    def consume(
        topics: tuple[str, ...],
        model: type[E],
        plan: Planner[E],
        *,
        parse: Callable[[ConsumerRecord[Any, Any]], E] | None = None,
    ) -> None:
        consumer = f"{topics[0]}:notify"

        async def handle(events: list[E]) -> int:
            # No inbox records: what an event does here is idempotent by itself (a notice is planned once, on
            # its unique key; a matter is kept once), so a redelivered event changes nothing. Returns how many
            # notices are new.
            state = late()
            async with state.pool.acquire() as conn, conn.transaction():
                return await store.plan(conn, await plan(conn, state, events))

        batches = EventBatches(model, handle, service.dead_letter, service.limit(consumer), parse=parse)
        service.batch_subscriber(*topics, consumer=consumer, max_records=500)(batches.take)

    def each(rule: Callable[[State, E], list[Planned]]) -> Planner[E]:
        """A planner that applies `rule` to each event of the batch."""

        async def plan(_: asyncpg.Connection, state: State, events: list[E]) -> list[Planned]:
            return [p for e in events for p in rule(state, e)]

        return plan

    async def registered(conn: asyncpg.Connection, state: State, events: list[MatterRegisteredV2]) -> list[Planned]:
        await store.save_matters(conn, events, state.vault)
        return [p for e in events for p in state.rules.registered(e)]

    opened = registration_parser(TransportSeal.from_settings(settings), settings.topic)
    consume(REGISTERED_TOPICS, MatterRegisteredV2, registered, parse=opened)
    consume((MATTERS_ROUTED.name,), MatterRouted, each(lambda state, e: state.rules.routed(e)))
    consume((MATTERS_STATUS.name,), MatterStatusChanged, each(lambda state, e: state.rules.status(e)))
    consume((DEADLINES_EVENTS.name,), DeadlineEvent, each(lambda state, e: state.rules.deadline(e)))
    consume((STATS_ALERTS.name,), StatsAlert, each(lambda state, e: state.rules.alert(e)))

    service.api.include_router(
        build_router(service, lambda: late().pool, settings.sms_receipt_token.get_secret_value())
    )
    return service


def create_app() -> FastAPI:
    """What uvicorn serves (`factory=True`): nothing is built at import time."""
    return create_service(NotifySettings()).api
