"""The routing service: registrations and unit feedback in (and supervision's word that a request
window lapsed); routed matters, unit inboxes and every lifecycle change out."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from fastapi import FastAPI
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from xinfang_shared import inbox, outbox
from xinfang_shared.batching import EventBatches
from xinfang_shared.contracts.events import (
    Event,
    FeedbackRejected,
    FieldError,
    MatterRegisteredV2,
    UnitFeedback,
    field_errors,
    utc_now,
)
from xinfang_shared.contracts.reference import DeadlineState, DeadlineType
from xinfang_shared.contracts.topics import (
    DEADLINE_WARNINGS,
    DEADLINES_EVENTS,
    FEEDBACK_REJECTED,
    MATTERS_REGISTERED_V2,
    UNIT_FEEDBACK,
    UNIT_OF_FEEDBACK_TOPIC,
    UNITS_FEEDBACK,
    unit_feedback_rejected_topic,
)
from xinfang_shared.deadlines import REQUEST_WINDOWS, DeadlineRules
from xinfang_shared.personal import PersonalDataVault, TransportSeal
from xinfang_shared.registrations import REGISTERED_TOPICS, registration_parser
from xinfang_shared.service import Late, Service

from .api import build_router
from .categories import CategoryInference
from .feedback import FeedbackHandler, Refused
from .routing import Router
from .rules import RuleBook
from .settings import RoutingSettings
from .state import RoutingState

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")
RAW_LIMIT = 64 * 1024


class DeadlineSeen(Event):
    """The part of deadlines.warnings.v1 routing reads: whether a petitioner's request window lapsed."""

    matter_id: uuid.UUID
    deadline: DeadlineType
    state: DeadlineState
    window: bool = False

    @property
    def request_window_lapsed(self) -> bool:
        return self.state == DeadlineState.CLOSED and self.window and self.deadline in REQUEST_WINDOWS


def create_service(settings: RoutingSettings) -> Service:
    service = Service(settings, migrations=MIGRATIONS, title="xinfang routing")
    late: Late[RoutingState] = Late("routing")

    @service.on_start
    async def open_state(svc: Service) -> None:
        router = Router(
            RuleBook(settings.routing_rules_file),
            CategoryInference(settings.category_lexicon_file, min_confidence=settings.category_min_confidence),
            PersonalDataVault.from_settings(settings),
            DeadlineRules.load(settings.deadline_rules_file),
        )
        keys = {unit: key.get_secret_value() for unit, key in settings.unit_api_keys.items()}
        late.state = RoutingState(svc.pool, router, FeedbackHandler(router), keys)

    route = "matters.registered:route"
    batches = EventBatches(
        MatterRegisteredV2,
        lambda events: _route(late(), events),
        service.dead_letter,
        service.limit(route),
        parse=registration_parser(TransportSeal.from_settings(settings), settings.topic),
    )
    service.consume(*REGISTERED_TOPICS, consumer=route)(batches.take)

    lapsed = "deadlines.warnings.v1:close lapsed"
    windows = EventBatches(
        DeadlineSeen, lambda events: _close(late(), events), service.dead_letter, service.limit(lapsed)
    )
    service.consume(DEADLINE_WARNINGS.name, consumer=lapsed)(windows.take)

    # Each unit writes its own topic, and only it may (the broker's ACLs): the unit is the topic's. The shared
    # topic is for operators, who may act in any unit's name.
    unit_of_topic = {settings.topic(name): unit for name, unit in UNIT_OF_FEEDBACK_TOPIC.items()}
    feedback_topics = (UNITS_FEEDBACK.name, *(t.name for t in UNIT_FEEDBACK.values()))

    @service.subscriber(*feedback_topics, title="units feedback:apply")
    async def take_feedback(_: Any, msg: KafkaMessage) -> None:
        record: ConsumerRecord[Any, Any] = msg.raw_message
        raw = record.value or b""
        unit = unit_of_topic.get(record.topic)
        try:
            feedback = UnitFeedback.model_validate_json(raw)
        except ValidationError as exc:
            await _reject(late(), raw, field_errors(exc), None, unit)
            return
        if unit is not None and feedback.unit != unit:
            errors = [FieldError(field="unit", message=f"must be {unit}: a unit sends feedback in its own name only")]
            await _reject(late(), raw, errors, feedback, unit)
            return
        try:
            await late().take_feedback(feedback, arrived_at=arrival(record))
        except Refused as refused:
            await _reject(late(), raw, refused.errors, feedback, unit)

    service.api.include_router(build_router(service, late))
    service.document_schemas(UnitFeedback)
    return service


async def _route(state: RoutingState, events: list[MatterRegisteredV2]) -> int:
    """Route the events not seen before, in one transaction; returns how many."""
    now = utc_now()
    async with state.pool.acquire() as conn, conn.transaction():
        fresh = await inbox.first_time_many(conn, [e.event_id for e in events], source=MATTERS_REGISTERED_V2.name)
        await state.router.route_registered(conn, [e for e in events if e.event_id in fresh], now)
    return len(fresh)


async def _close(state: RoutingState, events: list[DeadlineSeen]) -> int:
    """Close the matters whose request window lapsed (the other warnings are not about that: skipped)."""
    lapsed = [e for e in events if e.request_window_lapsed]
    if not lapsed:
        return 0
    now = utc_now()
    async with state.pool.acquire() as conn, conn.transaction():
        # Kept under the name of deadlines.events.v1, whose events these are (the same event ids): one handled from
        # there before the warnings topic existed is not handled again from it.
        fresh = await inbox.first_time_many(conn, [e.event_id for e in lapsed], source=DEADLINES_EVENTS.name)
        for event in lapsed:
            if event.event_id in fresh:
                await state.router.window_lapsed(conn, event.matter_id, event.deadline, now)
    return len(fresh)


def arrival(record: ConsumerRecord[Any, Any]) -> datetime:
    """When the record reached the system: the broker's own stamp on a topic that keeps the arrival time
    (LogAppendTime, as every feedback topic is created). Otherwise the producer's clock wrote the stamp, which a
    unit sets as it likes: then the time routing reads it, which is never earlier than the arrival."""
    if record.timestamp_type == LOG_APPEND_TIME and record.timestamp > 0:
        return datetime.fromtimestamp(record.timestamp / 1000, UTC)
    return utc_now()


# ConsumerRecord.timestamp_type: 0 the producer's CreateTime, 1 the broker's LogAppendTime.
LOG_APPEND_TIME = 1


async def _reject(
    state: RoutingState, raw: bytes, errors: list[FieldError], feedback: UnitFeedback | None, unit: str | None
) -> None:
    """A refusal to the unit's own rejected topic when the feedback came on its topic; to the operators' shared
    one when it came on units.feedback.v1 (the unit a body names is not told: that may be anyone's name)."""
    event = FeedbackRejected(
        matter_id=feedback.matter_id if feedback else None,
        unit=unit or (feedback.unit if feedback else _field(raw, "unit")),
        errors=errors,
        raw=raw[:RAW_LIMIT].decode("utf-8", "replace"),
    )
    topic = unit_feedback_rejected_topic(unit) if unit is not None else FEEDBACK_REJECTED.name
    async with state.pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, topic, event, key=str(event.matter_id or ""))
    log.info("feedback refused", extra={"unit": event.unit, "errors": [e.field for e in errors]})


def _field(raw: bytes, name: str) -> str | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    found = value.get(name) if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


def create_app() -> FastAPI:
    """What uvicorn serves (`factory=True`): nothing is built at import time."""
    return create_service(RoutingSettings()).api
