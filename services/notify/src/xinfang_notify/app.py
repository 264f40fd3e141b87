"""The notify service: registrations, routings, lifecycle changes, deadline events, surge alerts and reports in;
e-mail, SMS and unit inbox reminders out, each (matter, notice, recipient) once.

Each topic is read in batches: the rules (rules.py, pure) plan a batch's notices, and one statement stores them,
each once on its unique key, so redelivery plans nothing twice (registrations keep their matters in the same
transaction); a batch that plans nothing and keeps nothing touches no database. The senders (sender.py) send
what is planned, on their own."""

from __future__ import annotations

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
    MatterStatusChanged,
    StatsAlert,
    StatsReport,
)
from xinfang_shared.contracts.topics import (
    DEADLINE_WARNINGS,
    MATTERS_STATUS,
    STATS_ALERTS,
    STATS_REPORTS,
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
from .report_fetch import ReportFetcher
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


# What a batch of events of one topic plans: the rules only, no I/O.
Planner = Callable[[State, list[E]], list[Planned]]
# What a batch of events of one topic keeps besides, in the transaction that stores its notices.
Keeper = Callable[[asyncpg.Connection, State, list[E]], Awaitable[None]]


async def handle(state: State, events: list[E], plan: Planner[E], keep: Keeper[E] | None = None) -> int:
    """Plan a batch's notices and store the new ones; returns how many are new. No inbox records: what an event
    does here is idempotent by itself (a notice is planned once, on its unique key; a matter is kept once), so a
    redelivered event changes nothing. Planning reads nothing, so it comes first: a batch that plans nothing and
    keeps nothing (most deadline and routed events) takes no connection and opens no transaction, and one that
    only plans is one INSERT, atomic by itself."""
    planned = plan(state, events)
    if keep is None:
        if not planned:
            return 0
        async with state.pool.acquire() as conn:
            return await store.plan(conn, planned)
    async with state.pool.acquire() as conn, conn.transaction():
        await keep(conn, state, events)
        return await store.plan(conn, planned)


def create_service(settings: NotifySettings) -> Service:
    service = Service(settings, migrations=MIGRATIONS, title="xinfang notify")
    service.gauge_by(
        "notify_notices_waiting",
        "Notices not yet sent: pending (due or retrying) and held (quiet hours); what became of the others is"
        " xinfang_notices",
        "status",
        "SELECT status, count(*) FROM notifications WHERE status IN ('pending', 'held') GROUP BY status",
        every=("pending", "held"),
    )
    late: Late[State] = Late("notify")
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
            ReportFetcher(
                settings.stats_url, settings.operator_api_key.get_secret_value(), settings.report_fetch_timeout_s
            ),
        )
        rules = Rules(table, DeadlineRules.load(settings.deadline_rules_file), tuple(contacts.leaders))
        late.state = State(svc.pool, rules, vault, sender)
        svc.background("senders", sender.run(), stop=sender.stop)

    @service.on_stop
    async def close_senders(_: Service) -> None:
        if late.state is not None:
            await late.state.sender.sms.close()
            await late.state.sender.email.close()
        for pool in pools:
            await pool.close()

    def consume(
        topics: tuple[str, ...],
        model: type[E],
        rule: Callable[[State, E], list[Planned]],
        *,
        keep: Keeper[E] | None = None,
        parse: Callable[[ConsumerRecord[Any, Any]], E] | None = None,
    ) -> None:
        """Read `topics` in batches, planning each event's notices by `rule`."""
        consumer = f"{topics[0]}:notify"

        def plan(state: State, events: list[E]) -> list[Planned]:
            return [p for e in events for p in rule(state, e)]

        async def take(events: list[E]) -> int:
            return await handle(late(), events, plan, keep)

        batches = EventBatches(model, take, service.dead_letter, service.limit(consumer), parse=parse)
        service.consume(*topics, consumer=consumer)(batches.take)

    async def save_matters(conn: asyncpg.Connection, state: State, events: list[MatterRegisteredV2]) -> None:
        await store.save_matters(conn, events, state.vault)

    opened = registration_parser(TransportSeal.from_settings(settings), settings.topic)
    consume(
        REGISTERED_TOPICS,
        MatterRegisteredV2,
        lambda state, e: state.rules.registered(e),
        keep=save_matters,
        parse=opened,
    )
    consume((MATTERS_STATUS.name,), MatterStatusChanged, lambda state, e: state.rules.status(e))
    consume((DEADLINE_WARNINGS.name,), DeadlineEvent, lambda state, e: state.rules.deadline(e))
    consume((STATS_ALERTS.name,), StatsAlert, lambda state, e: state.rules.alert(e))
    consume((STATS_REPORTS.name,), StatsReport, lambda state, e: state.rules.report(e))

    service.api.include_router(
        build_router(service, lambda: late().pool, settings.sms_receipt_token.get_secret_value(), contacts)
    )
    return service


def create_app() -> FastAPI:
    """What uvicorn serves (`factory=True`): nothing is built at import time."""
    return create_service(NotifySettings()).api
