"""Supervision end to end on the real broker and database: registered matters go through the real routing
service, units answer on their own units.<unit>.feedback.v1, and supervision's controlled clock walks them through
weeks.

- a matter nobody accepts: due-soon, overdue (with a supervision order in the unit's inbox), escalated;
- an accepted matter: its 60-day handling deadline, one extension, a second one refused with a reason;
- a paused re-review does not go overdue while paused, and its due time moves by the pause;
- repeats get no deadline; lists by stage, office and unit; on-time figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import Tail, consumed_by, outbox_published, read_to_end, start_group_at_end
from tests.personal_data import People, RawLogCapture, capture_logs, log_leaks, span_leaks
from tests.staff import staff_headers
from xinfang_routing.app import MIGRATIONS as ROUTING_MIGRATIONS
from xinfang_routing.app import create_service as create_routing
from xinfang_routing.settings import RoutingSettings
from xinfang_shared.contracts.events import MatterRegisteredV2, UnitFeedback, UnitInboxMessage
from xinfang_shared.contracts.reference import REVIEW_OFFICE_UNIT, DeadlineType, FeedbackAction
from xinfang_shared.contracts.topics import (
    DEADLINES_EVENTS,
    MATTERS_REGISTERED_V2,
    MATTERS_ROUTED,
    MATTERS_STATUS,
    unit_feedback_rejected_topic,
    unit_feedback_topic,
    unit_inbox_topic,
)
from xinfang_shared.db import migrate_dsn
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.periods import extend_period, period_end
from xinfang_shared.service import Service
from xinfang_shared.telemetry import add_span_processor, configure_tracing
from xinfang_shared.tracking import new_tracking_code
from xinfang_shared.workdays import CHINA
from xinfang_supervision.app import MIGRATIONS as SUPERVISION_MIGRATIONS
from xinfang_supervision.app import create_service as create_supervision
from xinfang_supervision.settings import SupervisionSettings

OPERATOR = "operator-" + uuid.uuid4().hex
CONSOLE = "console-" + uuid.uuid4().hex
# The units the matters here go to, whose refusals (each on its own topic) the tests read.
REFUSED_TO = ("city-5101", "dept-human-resources", REVIEW_OFFICE_UNIT)
AUTH = {"Authorization": f"Bearer {OPERATOR}"}
DAY = 86_400
UNIT = "city-5101"  # where a matter located in Chengdu (510104) goes


@dataclass
class Pipeline:
    routing: Service
    supervision: Service
    routing_http: httpx.AsyncClient
    http: httpx.AsyncClient
    tail: Tail
    producer: AIOKafkaProducer
    logs: RawLogCapture  # every log record, as logged (before formatting and redaction)
    spans: InMemorySpanExporter
    people: People  # every personal value the matters carried
    # event_id of every event this supervision stored to publish (noted by a trigger on its outbox): another
    # pipeline on the shared topics (another session's tests, a `make up` stack) processes these matters too
    # and publishes its own deadline events and orders about them, with the same keys.
    published: set[uuid.UUID] = field(default_factory=set)

    async def note_published(self) -> None:
        rows = await self.supervision.pool.fetch("SELECT event_id FROM test_published")
        self.published.update(r["event_id"] for r in rows)

    def ours(self, value: bytes) -> bool:
        return uuid.UUID(orjson.loads(value)["event_id"]) in self.published

    async def register(self, **overrides: Any) -> MatterRegisteredV2:
        extra = {
            k: overrides.pop(k) for k in ("duplicate_of", "not_accepted_again", "related_matter_id") if k in overrides
        }
        overrides.setdefault("petitioner", self.people.petitioner())
        body = factories.submission(random.Random(), location={"region_code": "510104"}, **overrides)
        self.people.record_submission(body)
        event: MatterRegisteredV2 = factories.registration(body, tracking_code=new_tracking_code(), **extra)
        await self.send(MATTERS_REGISTERED_V2.name, event)
        return event

    async def send(self, topic: str, event: Any) -> None:
        await self.producer.send_and_wait(topic, event.model_dump_json().encode(), key=str(event.matter_id).encode())

    async def feedback(self, matter_id: uuid.UUID, action: FeedbackAction, unit: str = UNIT, **fields: Any) -> None:
        fields.setdefault("at", datetime.now(UTC))
        event = UnitFeedback(matter_id=matter_id, unit=unit, action=action, **fields)
        await self.send(unit_feedback_topic(unit), event)

    def deadline_events(self, matter_id: uuid.UUID) -> list[dict[str, Any]]:
        """This supervision's deadline events about the matter, in the order published."""
        key = str(matter_id).encode()
        return [
            orjson.loads(r.value) for r in self.tail.on(DEADLINES_EVENTS.name) if r.key == key and self.ours(r.value)
        ]

    def states(self, matter_id: uuid.UUID, deadline: str) -> list[str]:
        return [e["state"] for e in self.deadline_events(matter_id) if e["deadline"] == deadline]

    async def reaches(self, matter_id: uuid.UUID, deadline: str, state: str, timeout: float = 30) -> dict[str, Any]:
        await eventually(lambda: state in self.states(matter_id, deadline), timeout=timeout)
        return next(e for e in self.deadline_events(matter_id) if e["deadline"] == deadline and e["state"] == state)

    async def advance(self, seconds: float) -> dict[str, Any]:
        response = await self.http.post("/v1/admin/clock/advance", json={"seconds": int(seconds)}, headers=AUTH)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def deadlines(self, matter_id: uuid.UUID) -> dict[str, dict[str, Any]]:
        response = await self.http.get(f"/v1/matters/{matter_id}/deadlines", headers=AUTH)
        assert response.status_code == 200, response.text
        return {d["deadline"]: d for d in response.json()["deadlines"]}

    async def now(self) -> datetime:
        response = await self.http.get("/v1/admin/clock", headers=AUTH)
        return datetime.fromisoformat(response.json()["now"])

    async def advance_past(self, when: datetime, margin: timedelta = timedelta(minutes=1)) -> None:
        """Move supervision's clock to just past `when` (due times are days' ends, not start + N days)."""
        await self.advance(max((when + margin - await self.now()).total_seconds(), 0))

    def orders(self, matter_id: uuid.UUID) -> list[UnitInboxMessage]:
        messages = [UnitInboxMessage.model_validate_json(r.value) for r in self.tail.on(unit_inbox_topic(UNIT))]
        return [
            m
            for m in messages
            if m.matter_id == matter_id and m.type == "supervision-order" and m.event_id in self.published
        ]

    async def settled(self, matter_id: uuid.UUID) -> None:
        """Once this returns, every deadline event and supervision order about `matter_id` that supervision
        had stored to publish by now is in `tail`: what is not there did NOT happen (so far). An advance of
        the clock answers once its checks ran (their events stored); the relay deletes a row once Kafka
        acknowledged it; then the tail reads the matter's partitions (of the records it has about it: same
        key, same partition) to their ends."""
        await outbox_published(self.supervision.pool)
        key = str(matter_id).encode()
        topics = (DEADLINES_EVENTS.name, unit_inbox_topic(UNIT))
        seen = [r for t in topics for r in self.tail.on(t) if r.key == key]
        assert seen, "a record of the matter shows its partition"
        await read_to_end(self.tail, seen)
        await self.note_published()


# Notes the event_id of every event the supervision under test stores to publish (test instrumentation).
NOTE_PUBLISHED = """
CREATE TABLE test_published (event_id uuid PRIMARY KEY);
CREATE FUNCTION test_note_published() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO test_published VALUES ((convert_from(NEW.value, 'UTF8')::jsonb ->> 'event_id')::uuid)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER test_note_published AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION test_note_published();
"""


async def _keep_noting(pipeline: Pipeline) -> None:
    while True:
        await pipeline.note_published()
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def pipeline(database: str, bootstrap: str) -> AsyncIterator[Pipeline]:
    with capture_logs() as logs:
        configure_tracing("integration-tests", record=True)
        spans = InMemorySpanExporter()
        add_span_processor(SimpleSpanProcessor(spans))
        run = uuid.uuid4().hex[:8]
        routing_group, supervision_group = f"test-routing-{run}", f"test-supervision-{run}"
        await start_group_at_end(bootstrap, routing_group, consumed_by("routing"))
        await start_group_at_end(bootstrap, supervision_group, consumed_by("supervision"))
        common: dict[str, Any] = {
            "database_url": database,
            "kafka_bootstrap_servers": bootstrap,
            "operator_api_key": SecretStr(OPERATOR),
            "console_api_key": SecretStr(CONSOLE),
            "outbox_poll_interval_s": 0.2,
            "_env_file": None,
        }
        routing_settings = RoutingSettings(kafka_group_id=routing_group, **common)
        supervision_settings = SupervisionSettings(
            kafka_group_id=supervision_group, supervision_clock="controlled", scheduler_interval_s=0.2, **common
        )
        await migrate_dsn(database, routing_settings.db_schema, ROUTING_MIGRATIONS)
        await migrate_dsn(database, supervision_settings.db_schema, SUPERVISION_MIGRATIONS)
        conn = await asyncpg.connect(database, server_settings={"search_path": supervision_settings.db_schema})
        try:
            await conn.execute(NOTE_PUBLISHED)
        finally:
            await conn.close()
        routing, supervision = create_routing(routing_settings), create_supervision(supervision_settings)
        tail = Tail(
            bootstrap,
            [
                DEADLINES_EVENTS.name,
                MATTERS_STATUS.name,
                unit_inbox_topic(UNIT),
                *(unit_feedback_rejected_topic(u) for u in REFUSED_TO),
            ],
        )
        await tail.start()
        await routing.start()
        await supervision.start()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        routing_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=routing.api), base_url="http://routing")
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=supervision.api), base_url="http://supervision")
        pipeline = Pipeline(routing, supervision, routing_http, http, tail, producer, logs, spans, People())
        noting = asyncio.create_task(_keep_noting(pipeline))
        try:
            yield pipeline
        finally:
            noting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await noting
            await http.aclose()
            await routing_http.aclose()
            await producer.stop()
            await supervision.stop()
            await routing.stop()
            await tail.stop()
            spans.shutdown()  # stops collecting: later modules' spans are theirs


def _at(event: dict[str, Any], field: str = "due_at") -> datetime:
    return datetime.fromisoformat(event[field])


RULES = DeadlineRules.default()
D = DeadlineType


async def test_a_matter_nobody_accepts_goes_due_soon_overdue_then_escalated(pipeline: Pipeline) -> None:
    matter = (await pipeline.register()).matter_id
    # Routing transferred it at once: the routing deadline is met, acceptance and objection run for the unit.
    assert (await pipeline.reaches(matter, "routing", "met"))["on_time"] is True
    acceptance = await pipeline.reaches(matter, "acceptance", "set")
    await pipeline.reaches(matter, "objection", "set")
    assert acceptance["unit"] == UNIT
    assert acceptance["office"] is not None
    due = _at(acceptance)
    # 15 days as the law counts them: from the next day, to 24:00 Beijing time of the last one.
    assert due == RULES[D.ACCEPTANCE].due(_at(acceptance, "at")) == period_end(_at(acceptance, "at"), 15)
    assert due.astimezone(CHINA).time() == time(0)

    # Three days before it is due: due soon, nothing more.
    await pipeline.advance_past(due - timedelta(days=3))
    soon = await pipeline.reaches(matter, "acceptance", "due-soon")
    assert _at(soon, "at") == due - timedelta(days=3)
    listed = await pipeline.http.get("/v1/deadlines", params={"stage": "due-soon", "unit": UNIT}, headers=AUTH)
    assert matter in {uuid.UUID(r["matter_id"]) for r in listed.json()}
    await pipeline.settled(matter)
    assert "overdue" not in pipeline.states(matter, "acceptance")

    # Past the due time: overdue, and a supervision order in the unit's inbox. The objection window (5
    # working days) lapsed meanwhile: closed, and never overdue (it binds nobody).
    await pipeline.advance_past(due)
    overdue = await pipeline.reaches(matter, "acceptance", "overdue")
    assert _at(overdue, "at") == due
    await eventually(lambda: len(pipeline.orders(matter)) >= 1)
    await pipeline.settled(matter)
    assert len(pipeline.orders(matter)) == 1
    order = pipeline.orders(matter)[0]
    assert order.unit == UNIT
    escalates = RULES[D.ACCEPTANCE].escalate_at(due)
    assert escalates is not None and escalates >= due + timedelta(days=7)
    assert order.respond_by["acceptance"] == escalates
    assert "督办" in (order.order_text or "")
    assert pipeline.states(matter, "objection") == ["set", "closed"]
    lapsed = next(
        e for e in pipeline.deadline_events(matter) if e["deadline"] == "objection" and e["state"] == "closed"
    )
    assert lapsed["window"] is True and lapsed["at"] == lapsed["due_at"]
    assert "escalated" not in pipeline.states(matter, "acceptance")

    # Still overdue after the second period (7 days, counted on): escalated to the Supervision and Review Office.
    await pipeline.advance_past(escalates)
    escalated = await pipeline.reaches(matter, "acceptance", "escalated")
    assert _at(escalated, "at") == escalates
    view = await pipeline.deadlines(matter)
    assert view["acceptance"]["state"] == "escalated" and view["acceptance"]["open"] is True
    assert view["objection"]["state"] == "closed"
    listed = await pipeline.http.get("/v1/deadlines", params={"stage": "escalated"}, headers=AUTH)
    assert matter in {uuid.UUID(r["matter_id"]) for r in listed.json()}
    # Each warning once, however many passes ran meanwhile.
    await pipeline.settled(matter)
    assert len(pipeline.orders(matter)) == 1
    assert pipeline.states(matter, "acceptance") == ["set", "due-soon", "overdue", "escalated"]

    # Accepting late meets it, late.
    await pipeline.feedback(matter, FeedbackAction.ACCEPTED)
    met = await pipeline.reaches(matter, "acceptance", "met")
    assert met["on_time"] is False


async def test_an_accepted_matter_gets_60_days_one_extension_and_no_second(pipeline: Pipeline) -> None:
    matter = (await pipeline.register()).matter_id
    await pipeline.reaches(matter, "acceptance", "set")
    await pipeline.advance(2 * DAY)
    await pipeline.feedback(matter, FeedbackAction.ACCEPTED)
    assert (await pipeline.reaches(matter, "acceptance", "met"))["on_time"] is True
    handling = await pipeline.reaches(matter, "handling", "set")
    assert _at(handling) == RULES[D.HANDLING].due(_at(handling, "at"))
    await pipeline.settled(matter)
    assert pipeline.states(matter, "objection") == ["set", "closed"]  # accepted: the window closes unused

    await pipeline.feedback(matter, FeedbackAction.EXTENSION_REQUESTED, extension_days=20, reason="需要现场核查")
    extended = await pipeline.reaches(matter, "handling", "extended")
    # 20 more days counted on from the last day (moved past a rest day if it falls on one).
    assert _at(extended) == extend_period(_at(handling), 20)

    await pipeline.feedback(matter, FeedbackAction.EXTENSION_REQUESTED, extension_days=5, reason="再延期")
    await eventually(lambda: any(uuid.UUID(r["matter_id"]) == matter for r in _refusals(pipeline)))
    refusal = next(r for r in _refusals(pipeline) if uuid.UUID(r["matter_id"]) == matter)
    assert refusal["errors"][0]["field"] == "extension_days"
    assert "already extended" in refusal["errors"][0]["message"]
    view = await pipeline.deadlines(matter)
    assert _at(view["handling"]) == _at(extended)
    assert view["handling"]["extended_days"] == 20

    # Concluded within the extended time: met, on time.
    await pipeline.advance(70 * DAY)
    await pipeline.settled(matter)
    assert "overdue" not in pipeline.states(matter, "handling")
    await pipeline.feedback(matter, FeedbackAction.CONCLUDED, opinion={"result": "support", "text": "已解决"})
    assert (await pipeline.reaches(matter, "handling", "met"))["on_time"] is True


async def test_a_late_conclusion_dated_early_counts_late(pipeline: Pipeline) -> None:
    """The time that counts is the system's: a conclusion reaching the system 30 days after its handling deadline,
    dated by the unit the day before it, is met late; the unit's date is kept beside it, for the record."""
    matter = (await pipeline.register()).matter_id
    await pipeline.reaches(matter, "acceptance", "set")
    await pipeline.feedback(matter, FeedbackAction.ACCEPTED)
    await pipeline.reaches(matter, "handling", "set")
    await pipeline.settled(matter)
    # The matter was accepted 90 days ago: its handling deadline (60 days) passed a month ago. (Moved back in both
    # services' rows, with the scheduler's next look taken away so that it does not urge in the meantime.)
    ago = timedelta(days=90)
    await pipeline.routing.pool.execute(
        "UPDATE matters SET status_at = status_at - $2::interval WHERE matter_id = $1", matter, ago
    )
    due = await pipeline.supervision.pool.fetchval(
        "UPDATE deadlines SET started_at = started_at - $2::interval, due_at = due_at - $2::interval,"
        " warn_at = warn_at - $2::interval, escalate_at = escalate_at - $2::interval, next_check_at = NULL"
        " WHERE matter_id = $1 AND deadline = 'handling'"
        " RETURNING due_at",
        matter,
        ago,
    )
    # Dated the day before the deadline, as supervision's clock counts (it may run ahead of the real one here).
    shift = await pipeline.now() - datetime.now(UTC)
    claimed = due - shift - timedelta(days=1)
    sent = datetime.now(UTC)
    await pipeline.feedback(
        matter, FeedbackAction.CONCLUDED, opinion={"result": "support", "text": "已解决"}, at=claimed.isoformat()
    )
    met = await pipeline.reaches(matter, "handling", "met")
    assert met["on_time"] is False, "a late conclusion dated early was counted on time"
    status = next(
        orjson.loads(r.value)
        for r in pipeline.tail.on(MATTERS_STATUS.name)
        if r.key == str(matter).encode() and orjson.loads(r.value)["status"] == "concluded"
    )
    assert datetime.fromisoformat(status["at"]) >= sent - timedelta(seconds=5), "the change counts from its arrival"
    assert datetime.fromisoformat(status["reported_at"]) == claimed, "the unit's own time is kept beside it"
    history = await pipeline.routing_http.get(f"/v1/matters/{matter}", headers=AUTH)
    last = history.json()["history"][-1]
    assert last["action"] == "concluded" and datetime.fromisoformat(last["reported_at"]) == claimed


async def test_a_review_one_level_up_gets_its_30_day_deadline(pipeline: Pipeline) -> None:
    earlier = await pipeline.register(category="labor")
    await pipeline.reaches(earlier.matter_id, "acceptance", "set")
    await pipeline.feedback(earlier.matter_id, FeedbackAction.ACCEPTED)
    await pipeline.reaches(earlier.matter_id, "handling", "set")
    await pipeline.feedback(earlier.matter_id, FeedbackAction.CONCLUDED, opinion={"result": "explain", "text": "答复"})
    await pipeline.reaches(earlier.matter_id, "handling", "met")
    # The petitioner asks for a review: the department for labour matters reviews the city's handling.
    review = await pipeline.register(
        kind="review-request", related_tracking_code=earlier.opened().tracking_code, related_matter_id=earlier.matter_id
    )
    acceptance = await pipeline.reaches(review.matter_id, "acceptance", "set")
    assert acceptance["unit"] == "dept-human-resources"
    await pipeline.feedback(review.matter_id, FeedbackAction.ACCEPTED, unit="dept-human-resources")
    deadline = await pipeline.reaches(review.matter_id, "review", "set")
    assert _at(deadline) == RULES[D.REVIEW].due(_at(deadline, "at"))
    assert deadline["window"] is False
    await pipeline.settled(review.matter_id)
    assert "handling" not in {e["deadline"] for e in pipeline.deadline_events(review.matter_id)}
    # A review's deadline is not extended.
    await pipeline.feedback(
        review.matter_id, FeedbackAction.EXTENSION_REQUESTED, unit="dept-human-resources", extension_days=5, reason="x"
    )
    await eventually(lambda: any(uuid.UUID(r["matter_id"]) == review.matter_id for r in _refusals(pipeline)))
    refusal = next(r for r in _refusals(pipeline) if uuid.UUID(r["matter_id"]) == review.matter_id)
    assert "cannot be extended" in refusal["errors"][0]["message"]


async def test_an_extension_longer_than_30_days_is_refused(pipeline: Pipeline) -> None:
    matter = (await pipeline.register()).matter_id
    await pipeline.reaches(matter, "acceptance", "set")
    await pipeline.feedback(matter, FeedbackAction.ACCEPTED)
    await pipeline.reaches(matter, "handling", "set")
    await pipeline.feedback(matter, FeedbackAction.EXTENSION_REQUESTED, extension_days=31, reason="太复杂")
    await eventually(lambda: any(uuid.UUID(r["matter_id"]) == matter for r in _refusals(pipeline)))
    refusal = next(r for r in _refusals(pipeline) if uuid.UUID(r["matter_id"]) == matter)
    assert "1 to 30 days" in refusal["errors"][0]["message"]
    await pipeline.settled(matter)
    assert "extended" not in pipeline.states(matter, "handling")


async def _re_review_in_hand(pipeline: Pipeline) -> tuple[uuid.UUID, dict[str, Any]]:
    """A re-review whose earlier review routing cannot find goes one level up, to the Supervision and Review
    Office as its handling unit, which accepts it: the re-review deadline (30 days) runs."""
    event = await pipeline.register(kind="re-review-request", related_tracking_code="0000-0000-0000-0000")
    matter = event.matter_id
    acceptance = await pipeline.reaches(matter, "acceptance", "set")
    assert acceptance["unit"] == REVIEW_OFFICE_UNIT
    await pipeline.feedback(matter, FeedbackAction.ACCEPTED, unit=REVIEW_OFFICE_UNIT)
    return matter, await pipeline.reaches(matter, "re-review", "set")


async def test_a_paused_re_review_does_not_go_overdue_while_paused(pipeline: Pipeline) -> None:
    matter, re_review = await _re_review_in_hand(pipeline)
    due = _at(re_review)
    assert due == RULES[D.RE_REVIEW].due(_at(re_review, "at"))

    hearing = {"reason": "听证会 2026-12-01"}
    pause = await pipeline.http.post(
        f"/v1/matters/{matter}/deadlines/re-review/pause", json=hearing, headers={**AUTH, "X-Operator": "tester"}
    )
    assert pause.status_code == 200, pause.text
    await pipeline.reaches(matter, "re-review", "paused")
    again = await pipeline.http.post(
        f"/v1/matters/{matter}/deadlines/re-review/pause", json=hearing, headers={**AUTH, "X-Operator": "tester"}
    )
    assert again.status_code == 409

    # Forty days of hearings: past the due time, yet not due soon, not overdue.
    await pipeline.advance(40 * DAY)
    await pipeline.settled(matter)
    assert pipeline.states(matter, "re-review") == ["set", "paused"]
    resume = await pipeline.http.post(
        f"/v1/matters/{matter}/deadlines/re-review/resume", json=hearing, headers={**AUTH, "X-Operator": "tester"}
    )
    assert resume.status_code == 200, resume.text
    resumed = await pipeline.reaches(matter, "re-review", "resumed")
    moved = _at(resumed) - due
    assert timedelta(days=40) <= moved < timedelta(days=40, minutes=5)

    # The clock runs again: due soon, then overdue at the moved due time.
    await pipeline.advance_past(_at(resumed))
    overdue = await pipeline.reaches(matter, "re-review", "overdue")
    assert _at(overdue, "at") == _at(resumed)
    # The handling deadline's rule does not pause.
    response = await pipeline.http.post(
        f"/v1/matters/{matter}/deadlines/handling/pause", json=hearing, headers={**AUTH, "X-Operator": "tester"}
    )
    assert response.status_code == 404


async def test_concluded_during_a_hearing_is_on_time_and_an_overdue_one_cannot_be_paused(pipeline: Pipeline) -> None:
    matter, re_review = await _re_review_in_hand(pipeline)
    hearing, operator = {"reason": "听证会"}, {**AUTH, "X-Operator": "tester"}
    await pipeline.advance(20 * DAY)
    pause = await pipeline.http.post(f"/v1/matters/{matter}/deadlines/re-review/pause", json=hearing, headers=operator)
    assert pause.status_code == 200, pause.text
    await pipeline.advance(20 * DAY)  # past the due time, all of it hearings
    await pipeline.feedback(
        matter, FeedbackAction.CONCLUDED, unit=REVIEW_OFFICE_UNIT, opinion={"result": "explain", "text": "复核意见"}
    )
    met = await pipeline.reaches(matter, "re-review", "met")
    assert met["on_time"] is True
    assert _at(met) - _at(re_review) >= timedelta(days=20)  # the hearing moved the due time
    view = (await pipeline.deadlines(matter))["re-review"]
    assert (view["on_time"], view["paused"], view["open"]) == (True, False, False)

    other, running = await _re_review_in_hand(pipeline)
    await pipeline.advance_past(_at(running))
    await pipeline.reaches(other, "re-review", "overdue")
    late = await pipeline.http.post(f"/v1/matters/{other}/deadlines/re-review/pause", json=hearing, headers=operator)
    assert late.status_code == 409 and "too late" in late.json()["detail"]


async def test_an_objection_back_to_the_queue_runs_the_routing_deadline_again(pipeline: Pipeline) -> None:
    matter = (await pipeline.register()).matter_id
    await pipeline.reaches(matter, "acceptance", "set")
    await pipeline.feedback(matter, FeedbackAction.OBJECTED, reason="不属于本单位")
    # Routed again, never to the objector: the Chengdu matter goes to its office's queue.
    objected = await pipeline.reaches(matter, "objection", "met")
    assert (objected["window"], objected["on_time"]) == (True, None), "a window used: in no on-time figure"
    await eventually(lambda: pipeline.states(matter, "routing") == ["set", "met", "set"])
    view = await pipeline.deadlines(matter)
    assert view["routing"]["open"] and view["acceptance"]["state"] == "closed"


async def test_the_office_comes_with_the_status_changes_alone(pipeline: Pipeline) -> None:
    """Supervision does not read matters.routed.v1: the deadlines that start when a matter is routed (acceptance,
    the objection window, routing again from the office's queue) and the scheduler's warnings name the office
    routing chose, from the status changes."""
    assert MATTERS_ROUTED.name not in consumed_by("supervision")
    matter = (await pipeline.register()).matter_id
    await pipeline.reaches(matter, "objection", "set")
    office = (await pipeline.routing_http.get(f"/v1/matters/{matter}", headers=AUTH)).json()["office"]
    assert office is not None
    for deadline, state in (("routing", "met"), ("acceptance", "set"), ("objection", "set")):
        assert (await pipeline.reaches(matter, deadline, state))["office"] == office, (deadline, state)
    await pipeline.feedback(matter, FeedbackAction.OBJECTED, reason="不属于本单位")
    await eventually(lambda: pipeline.states(matter, "routing") == ["set", "met", "set"])
    again = [e for e in pipeline.deadline_events(matter) if e["deadline"] == "routing"][-1]
    assert again["office"] == office, "routing again, from the office's queue"
    await pipeline.advance_past(_at(again) - timedelta(days=3))
    assert (await pipeline.reaches(matter, "routing", "due-soon"))["office"] == office
    view = (await pipeline.http.get(f"/v1/matters/{matter}/deadlines", headers=AUTH)).json()
    assert view["office"] == office
    assert next(d for d in view["deadlines"] if d["deadline"] == "routing")["open"]


async def test_a_repeat_gets_no_deadline_and_the_api_needs_the_operator_key(pipeline: Pipeline) -> None:
    first = await pipeline.register()
    await pipeline.reaches(first.matter_id, "acceptance", "set")
    repeat = await pipeline.register(duplicate_of=first.matter_id)
    await eventually(
        lambda: any(
            orjson.loads(r.value)["status"] == "duplicate"
            for r in pipeline.tail.on(MATTERS_STATUS.name)
            if r.key == str(repeat.matter_id).encode()
        )
    )
    view = await pipeline.http.get(f"/v1/matters/{repeat.matter_id}/deadlines", headers=AUTH)
    assert view.status_code == 200
    assert view.json()["deadlines"] == []
    assert (await pipeline.http.get(f"/v1/matters/{first.matter_id}/deadlines")).status_code == 401
    assert (await pipeline.http.get(f"/v1/matters/{uuid.uuid4()}/deadlines", headers=AUTH)).status_code == 404
    figures = await pipeline.http.get("/v1/deadlines/on-time", params={"group_by": "unit"}, headers=AUTH)
    row = next(r for r in figures.json()["rows"] if r["key"] == UNIT)
    assert row["met"] == row["on_time"] + row["late"] and row["met"] >= 1


def _refusals(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for u in REFUSED_TO for r in pipeline.tail.on(unit_feedback_rejected_topic(u))]


# --- the bureau's staff, through the console ----------------------------------------------------------


def _staff(user: str, role: str, office: str | None = None) -> dict[str, str]:
    return staff_headers(CONSOLE, user, role, office)


def _other_office(office: str) -> str:
    return "online" if office != "online" else "reception"


async def test_an_office_reads_its_matters_deadlines_and_lists_with_the_supervision_orders_sent(
    pipeline: Pipeline,
) -> None:
    matter = (await pipeline.register()).matter_id
    acceptance = await pipeline.reaches(matter, "acceptance", "set")
    office = acceptance["office"]
    other = _other_office(office)
    path = f"/v1/matters/{matter}/deadlines"
    http = pipeline.http

    assert (await http.get(path, headers=_staff("sun", "clerk", office))).status_code == 200
    assert (await http.get(path, headers=_staff("zhao", "leader"))).status_code == 200
    assert (await http.get(path, headers=_staff("wang", "head", other))).status_code == 403
    forged = AUTH | {"X-Staff-User": "sun", "X-Staff-Role": "clerk", "X-Staff-Office": office}
    assert (await http.get(path, headers=forged)).status_code == 403
    assert (await http.get(path)).status_code == 401

    # Overdue: a supervision order to the unit, shown with the deadline.
    due = _at(acceptance)
    await pipeline.advance_past(due)
    await pipeline.reaches(matter, "acceptance", "overdue")
    await eventually(lambda: len(pipeline.orders(matter)) == 1)
    view = (await http.get(path, headers=_staff("sun", "clerk", office))).json()
    shown = next(d for d in view["deadlines"] if d["deadline"] == "acceptance")
    assert (shown["orders"], _at(shown, "ordered_at")) == (1, due)
    assert next(d for d in view["deadlines"] if d["deadline"] == "routing")["orders"] == 0, "met in time"

    async def listed(headers: dict[str, str], **params: str) -> httpx.Response:
        return await http.get("/v1/deadlines", params={"stage": "overdue", "limit": "1000", **params}, headers=headers)

    # An office's clerk lists their own office's (asked for or not); another office's only by its own staff.
    own = await listed(_staff("sun", "clerk", office))
    assert own.status_code == 200, own.text
    assert {r["office"] for r in own.json()} == {office}
    row = next(r for r in own.json() if uuid.UUID(r["matter_id"]) == matter and r["deadline"] == "acceptance")
    assert (row["orders"], _at(row, "ordered_at"), _at(row, "overdue_at"), row["unit"]) == (1, due, due, UNIT)
    assert (await listed(_staff("sun", "clerk", office), office=office)).json() == own.json()
    assert (await listed(_staff("sun", "clerk", office), office=other)).status_code == 403
    assert (await listed(_staff("qian", "head", office), office=other)).status_code == 403
    theirs = await listed(_staff("wang", "clerk", other))
    assert theirs.status_code == 200 and matter not in {uuid.UUID(r["matter_id"]) for r in theirs.json()}
    assert (await listed(forged)).status_code == 403
    # A leader and an operator: every office's, or the one asked for.
    for everyone in (_staff("zhao", "leader"), AUTH):
        assert matter in {uuid.UUID(r["matter_id"]) for r in (await listed(everyone)).json()}
        assert matter in {uuid.UUID(r["matter_id"]) for r in (await listed(everyone, office=office)).json()}


async def test_the_office_s_head_extends_handling_once_where_the_rules_allow_and_nobody_else_may(
    pipeline: Pipeline,
) -> None:
    matter = (await pipeline.register()).matter_id
    office = (await pipeline.reaches(matter, "acceptance", "set"))["office"]
    head = _staff("qian.head", "head", office)
    reason = {"days": 20, "reason": "需要现场核查"}

    def extend(deadline: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        return pipeline.http.post(f"/v1/matters/{matter}/deadlines/{deadline}/extend", json=body, headers=headers)

    # Only the handling deadline's rule allows an extension: not acceptance's, and there is no handling yet.
    refused = await extend("acceptance", reason, head)
    assert refused.status_code == 409 and "cannot be extended" in refused.json()["detail"]
    assert (await extend("handling", reason, head)).status_code == 404
    await pipeline.feedback(matter, FeedbackAction.ACCEPTED)
    handling = await pipeline.reaches(matter, "handling", "set")

    # Not the office's clerk, not a leader, not another office's head, not a person the console did not name.
    for someone in (
        _staff("sun.clerk", "clerk", office),
        _staff("zhao.leader", "leader"),
        _staff("wang.head", "head", _other_office(office)),
        AUTH | {"X-Staff-User": "qian.head", "X-Staff-Role": "head", "X-Staff-Office": office},
    ):
        assert (await extend("handling", reason, someone)).status_code == 403, someone
    # Within what the rule allows (1 to 30 days), with a reason.
    too_long = await extend("handling", {"days": 31, "reason": "太复杂"}, head)
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["field"] == "days"
    assert "1 to 30 days" in too_long.json()["errors"][0]["message"]
    assert (await extend("handling", {"days": 0, "reason": "x"}, head)).status_code == 422
    assert (await extend("handling", {"days": 5, "reason": ""}, head)).status_code == 422
    await pipeline.settled(matter)
    assert "extended" not in pipeline.states(matter, "handling"), "nothing above extended it"

    granted = await extend("handling", reason, head)
    assert granted.status_code == 200, granted.text
    shown = next(d for d in granted.json()["deadlines"] if d["deadline"] == "handling")
    assert _at(shown) == extend_period(_at(handling), 20) and shown["extended_days"] == 20
    # As a unit's extension is granted: the event the petitioner is told by, with the reason; history names who.
    extended = await pipeline.reaches(matter, "handling", "extended")
    assert (extended["extension_days"], extended["reason"], _at(extended)) == (20, "需要现场核查", _at(shown))
    details = await pipeline.supervision.pool.fetch(
        "SELECT detail FROM deadline_history WHERE matter_id = $1 AND state = 'extended'", matter
    )
    assert [d["detail"] for d in details] == ["staff:qian.head: 需要现场核查"]
    # Once.
    again = await extend("handling", {"days": 5, "reason": "再延期"}, head)
    assert again.status_code == 409 and "already extended" in again.json()["detail"]


# --- personal data -----------------------------------------------------------------------------------


async def test_zz_no_personal_data_reached_logs_or_spans(pipeline: Pipeline) -> None:
    """Runs last in this module: every matter above carried its petitioner (with address and e-mail) through
    routing (which sealed it and put it in the unit's inbox) and supervision (which reads the registered
    event and must drop the petitioner). Log records are checked as the code logged them, before any
    formatter or redaction."""
    assert len(pipeline.people) > 20
    assert pipeline.people.kinds() == {"name", "id_number", "phone", "address", "email"}
    loggers = {c.record.name for c in pipeline.logs.captured}
    assert any(name.startswith("xinfang") for name in loggers), f"the capture saw the services' logs: {loggers}"
    spans = pipeline.spans.get_finished_spans()
    assert spans, "the capture saw the services' spans"
    assert not (leaks := log_leaks(pipeline.logs, pipeline.people)), f"personal data in the logs: {leaks}"
    assert not (leaks := span_leaks(spans, pipeline.people)), f"personal data in a span: {leaks}"
    # At rest: supervision keeps none at all; routing keeps it sealed.
    kept = await pipeline.supervision.pool.fetch("SELECT m::text AS row FROM matters m")
    assert kept
    for row in kept:
        for secret in pipeline.people.values:
            assert secret not in row["row"]
    sealed = await pipeline.routing.pool.fetch("SELECT personal_data, details::text AS details FROM matters")
    for row in sealed:
        for secret in pipeline.people.values:
            assert secret.encode() not in bytes(row["personal_data"] or b"") and secret not in row["details"]


async def test_a_hearing_is_paused_only_by_the_staff_of_the_matter_s_office_and_history_names_them(
    pipeline: Pipeline,
) -> None:
    matter, _ = await _re_review_in_hand(pipeline)  # in the Supervision and Review Office
    path = f"/v1/matters/{matter}/deadlines/re-review/pause"
    hearing = {"reason": "听证会 2026-12-09"}

    assert (await pipeline.http.post(path, json=hearing, headers=_staff("wang", "clerk", "online"))).status_code == 403
    assert (await pipeline.http.post(path, json=hearing, headers=_staff("zhao", "leader"))).status_code == 403
    forged = AUTH | {"X-Staff-User": "xu", "X-Staff-Role": "clerk", "X-Staff-Office": "supervision"}
    assert (await pipeline.http.post(path, json=hearing, headers=forged)).status_code == 403
    paused = await pipeline.http.post(path, json=hearing, headers=_staff("xu", "clerk", "supervision"))
    assert paused.status_code == 200, paused.text
    await pipeline.reaches(matter, "re-review", "paused")
    details = await pipeline.supervision.pool.fetch(
        "SELECT detail FROM deadline_history WHERE matter_id = $1 AND state = 'paused'", matter
    )
    assert [d["detail"] for d in details] == ["staff:xu: 听证会 2026-12-09"], "one pause, by the office's clerk"
