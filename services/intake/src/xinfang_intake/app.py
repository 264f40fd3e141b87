"""The intake service: channel topics and POST /v1/submissions in, matters.registered.v2 out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from aiokafka import ConsumerRecord
from fastapi import FastAPI

from xinfang_shared.batching import Coalescer, EventBatches
from xinfang_shared.consuming import Lane
from xinfang_shared.contracts.events import DeadlineEvent, Event, MatterStatusChanged, Submission
from xinfang_shared.contracts.reference import Channel
from xinfang_shared.contracts.topics import CHANNEL_SUBMITTED, DEADLINES_EVENTS, MATTERS_STATUS
from xinfang_shared.service import Late, Service

from . import lifecycle
from .api import build_router
from .channel_keys import ChannelKeys, add_key
from .ingest import Intake
from .registration import Registrar
from .settings import IntakeSettings
from .state import IntakeState
from .submissions import FastPath

E = TypeVar("E", bound=Event)
# The consumers' names (as before: halts are kept by them).
TRACKED = {MATTERS_STATUS.name: "status", DEADLINES_EVENTS.name: "deadlines"}

MIGRATIONS = Path(__file__).with_name("migrations")
CHANNEL_CONSUMER = "channel topics:register"
HTTP_CONSUMER = "POST /v1/submissions:register"


def create_service(settings: IntakeSettings) -> Service:
    return create_asgi(settings)[0]


def create_asgi(settings: IntakeSettings, *, fast_path: bool | None = None) -> tuple[Service, FastAPI | FastPath]:
    """The service, and what the server serves: submissions take the fast path unless spans are recorded
    (see submissions.py), or as `fast_path` says."""
    service = Service(settings, migrations=MIGRATIONS, title="xinfang intake")
    late: Late[IntakeState] = Late("intake")

    @service.on_start
    async def open_state(svc: Service) -> None:
        registrar = Registrar.from_settings(settings)
        intake = Intake(settings, registrar, svc.pool, svc.limit(CHANNEL_CONSUMER))
        http_limit = svc.limit(HTTP_CONSUMER)
        coalescer = Coalescer(
            intake.register_http,
            limit=http_limit,
            max_batch=settings.http_batch_max,
            workers=settings.http_flushers,
            max_queue=settings.http_queue_max,
        )
        coalescer.start()
        keys = ChannelKeys(svc.pool, refresh_s=settings.channel_keys_refresh_s)
        if settings.channel_api_key is not None:
            async with svc.pool.acquire() as conn:
                await add_key(
                    conn, system="local-dev", channels=list(Channel), key=settings.channel_api_key.get_secret_value()
                )
        await keys.reload()
        late.state = IntakeState(
            svc.pool, registrar, intake, keys, coalescer, http_limit, svc.recording, settings.console_system
        )

    @service.on_stop
    async def close_state(_: Service) -> None:
        if late.state is not None:
            await late.state.coalescer.stop()

    # The front door has a lane of its own: its records never wait behind what intake learns back, and its
    # fetches gather a fuller batch (one transaction each) rather than answer every fetch at once.
    channels = Lane(
        "channels", fetch_min_bytes=128 * 1024, fetch_max_wait_ms=200, max_records=settings.consume_batch_max
    )

    @service.consume(*(t.name for t in CHANNEL_SUBMITTED.values()), consumer=CHANNEL_CONSUMER, lane=channels)
    async def take_submissions(records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        await late().intake.take_records(records)

    def track(topic: str, model: type[E], apply: Callable[[asyncpg.Connection, list[E]], Awaitable[None]]) -> None:
        """What intake learns back (lifecycle.py), a batch at a time; a bad event is dead-lettered alone."""
        consumer = f"{topic}:track {TRACKED[topic]}"

        async def handle(events: list[E]) -> int:
            async with late().pool.acquire() as conn, conn.transaction():
                await apply(conn, events)
            return len(events)

        batches = EventBatches(model, handle, service.dead_letter, service.limit(consumer))
        service.consume(topic, consumer=consumer)(batches.take)

    track(MATTERS_STATUS.name, MatterStatusChanged, lifecycle.apply_status)
    track(DEADLINES_EVENTS.name, DeadlineEvent, lifecycle.apply_deadline)

    service.api.include_router(build_router(late, settings))
    service.document_schemas(Submission)
    if fast_path if fast_path is not None else not service.recording:
        return service, FastPath(service.api, late, settings.max_message_bytes, service.http_metrics)
    return service, service.api


def create_app() -> FastAPI | FastPath:
    """What uvicorn serves (`factory=True`): nothing is built at import time."""
    return create_asgi(IntakeSettings())[1]
