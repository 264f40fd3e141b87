"""The stats service: every event topic in, folded into one fact row per matter and hourly counts (fold.py);
the figures the bureau owes over HTTP (api.py) and on the dashboard at `/`; surge alerts on stats.alerts.v1
(watch.py);
analysis reports made in the background, the monthly one published on stats.reports.v1 (report.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord
from fastapi import FastAPI

from xinfang_shared.batching import EventBatches
from xinfang_shared.contracts.events import Event
from xinfang_shared.contracts.topics import DEADLINES_EVENTS, MATTERS_REGISTERED_V2
from xinfang_shared.registrations import REGISTERED_TOPICS
from xinfang_shared.service import Late, Service

from . import fold
from .api import build_router
from .dashboard import mount_dashboard
from .report import ReportWorker
from .report_api import build_reports_router
from .report_facts import keep_supervision
from .settings import StatsSettings
from .watch import SurgeWatch, mark_folded

MIGRATIONS = Path(__file__).with_name("migrations")


def create_service(settings: StatsSettings) -> Service:
    service = Service(settings, migrations=MIGRATIONS, title="xinfang stats")
    service.gauge_by(
        "stats_surge_alerts_open",
        "Surge alerts open now, by the window they were raised in",
        "window",
        "SELECT window_, count(*) FROM alerts WHERE state = 'open' GROUP BY window_",
    )
    late: Late[asyncpg.Pool] = Late("stats")

    @service.on_start
    async def open_state(svc: Service) -> None:
        late.state = svc.pool
        watch = SurgeWatch(settings, svc.pool, svc.metrics)
        svc.background("surge-watch", watch.run(), stop=watch.stop)
        reports = ReportWorker(settings, svc.pool)
        svc.background("reports", reports.run(), stop=reports.stop)

    def consume(topic: str, model: type[Event], apply: fold.Fold) -> None:
        consumer = f"{topic}:stats"

        async def handle(events: list[Event]) -> int:
            folded = await fold.fold_events(late(), topic, apply, events)
            if topic == DEADLINES_EVENTS.name:  # and the supervision orders and escalations, for the reports
                await keep_supervision(late(), events)
            return folded

        batches = EventBatches(model, handle, service.dead_letter, service.limit(consumer))
        take = batches.take
        topics: tuple[str, ...] = (topic,)
        if topic == MATTERS_REGISTERED_V2.name:
            topics = REGISTERED_TOPICS  # and what is left on the retired v1 (registrations.py)
            v2 = settings.topic(topic)

            async def take(records: Sequence[ConsumerRecord[Any, Any]]) -> int:
                handled = await batches.take(records)
                # The surge watch's event time (watch.py): its watermarks follow v2's partitions.
                await mark_folded(late(), [r for r in records if r.topic == v2])
                return handled

        service.consume(*topics, consumer=consumer)(take)

    for topic, model, apply in fold.FOLDS:
        consume(topic, model, apply)

    service.api.include_router(build_router(service, late))
    service.api.include_router(build_reports_router(service, late))
    mount_dashboard(service.api)
    return service


def create_app() -> FastAPI:
    """What uvicorn serves (`factory=True`): nothing is built at import time."""
    return create_service(StatsSettings()).api
