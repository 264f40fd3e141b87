"""Routing on the real broker and database: every rule (table-driven, through the pipeline), category
inference, repeats, rule-file changes, redelivery, unit feedback (a reference city system over Kafka and a
unit over HTTP), objection and reassignment."""

from __future__ import annotations

import asyncio
import random
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.partitioner import murmur2
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import Tail, consumed_by, outbox_published, read_to_end, start_group_at_end
from tests.personal_data import People, RawLogCapture, capture_logs, log_leaks, span_leaks
from tests.reference.city import ReferenceCity
from tests.staff import staff_headers
from xinfang_routing.app import MIGRATIONS, create_service
from xinfang_routing.rules import DEFAULT_RULES
from xinfang_routing.settings import RoutingSettings
from xinfang_shared.contracts.events import MatterRegisteredV2, UnitFeedback, UnitInboxMessage
from xinfang_shared.contracts.reference import UNITS, DeadlineType, FeedbackAction
from xinfang_shared.contracts.topics import (
    FEEDBACK_REJECTED,
    MATTERS_REGISTERED_V2,
    MATTERS_ROUTED,
    MATTERS_STATUS,
    UNITS_FEEDBACK,
    unit_feedback_rejected_topic,
    unit_feedback_topic,
    unit_inbox_topic,
)
from xinfang_shared.db import migrate_dsn
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.service import Service
from xinfang_shared.telemetry import add_span_processor, configure_tracing
from xinfang_shared.tracking import new_tracking_code

OPERATOR = "operator-" + uuid.uuid4().hex
CONSOLE = "console-" + uuid.uuid4().hex
AUTH_OPERATOR = {"Authorization": f"Bearer {OPERATOR}"}
UNIT_KEYS = {"city-5101": "k5101-" + uuid.uuid4().hex, "city-5103": "k5103-" + uuid.uuid4().hex}


@dataclass
class Harness:
    service: Service
    http: httpx.AsyncClient
    tail: Tail
    bootstrap: str
    rules_file: Path
    producer: AIOKafkaProducer
    logs: RawLogCapture  # every log record, as logged (before formatting and redaction)
    spans: InMemorySpanExporter
    people: People  # every personal value the matters carried

    async def register(self, **overrides: Any) -> MatterRegisteredV2:
        registered_at = overrides.pop("registered_at", datetime.now(UTC))
        matter_id = overrides.pop("matter_id", None) or uuid.uuid4()
        extra = {
            k: overrides.pop(k)
            for k in ("duplicate_of", "not_accepted_again", "related_matter_id", "received_by")
            if k in overrides
        }
        overrides.setdefault("petitioner", self.people.petitioner())
        body = factories.submission(random.Random(), **overrides)
        self.people.record_submission(body)
        event: MatterRegisteredV2 = factories.registration(
            body, matter_id=matter_id, tracking_code=new_tracking_code(), registered_at=registered_at, **extra
        )
        await self.send(MATTERS_REGISTERED_V2.name, event)
        return event

    async def send(self, topic: str, event: Any) -> None:
        await self.producer.send_and_wait(topic, event.model_dump_json().encode(), key=str(event.matter_id).encode())

    async def feedback(self, feedback: UnitFeedback) -> None:
        """As the unit's system sends it: on its own feedback topic."""
        await self.send(unit_feedback_topic(feedback.unit), feedback)

    async def routed(self, matter_id: uuid.UUID, count: int = 1) -> list[dict[str, Any]]:
        found = await self.tail.wait(MATTERS_ROUTED.name, lambda r: r.key == str(matter_id).encode(), count=count)
        return [orjson.loads(r.value) for r in found]

    def statuses(self, matter_id: uuid.UUID) -> list[tuple[str, str | None]]:
        events = [orjson.loads(r.value) for r in self.tail.on(MATTERS_STATUS.name) if r.key == str(matter_id).encode()]
        return [(e["status"], e.get("action")) for e in events]

    async def status_reaches(self, matter_id: uuid.UUID, status: str) -> None:
        await eventually(lambda: status in [s for s, _ in self.statuses(matter_id)], timeout=30)

    def inbox(self, unit: str, matter_id: uuid.UUID) -> list[UnitInboxMessage]:
        return [
            UnitInboxMessage.model_validate_json(r.value)
            for r in self.tail.on(unit_inbox_topic(unit))
            if r.key == str(matter_id).encode()
        ]

    async def view(self, matter_id: uuid.UUID) -> dict[str, Any]:
        response = await self.http.get(f"/v1/matters/{matter_id}", headers={"Authorization": f"Bearer {OPERATOR}"})
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def ours(self, records: list[ConsumerRecord[Any, Any]]) -> list[ConsumerRecord[Any, Any]]:
        """The routed and status events (only) among `records` that this routing published: each has a history row
        of its matter at its time (routed_at, at). Another routing on the shared topics (another session's
        tests, a `make up` stack) routes the same matters and publishes events with the same keys."""
        events = [(r, orjson.loads(r.value)) for r in records]
        ids = list({uuid.UUID(e["matter_id"]) for _, e in events})
        rows = await self.service.pool.fetch("SELECT matter_id, at FROM history WHERE matter_id = ANY($1)", ids)
        stamps = {(row["matter_id"], row["at"]) for row in rows}
        return [
            r
            for r, e in events
            if (uuid.UUID(e["matter_id"]), datetime.fromisoformat(e.get("routed_at") or e["at"])) in stamps
        ]

    async def all_published_about(self, *matter_ids: uuid.UUID) -> None:
        """Once this returns, every event this routing published about `matter_ids` (routed, status) by now
        is in `tail`, whether or not there is any: proves that something did NOT happen without a sleep.

        Per partition they are on, a marker matter is registered after them on the same partition of
        matters.registered.v2 (same partitioner, same partition count, so the same partitions of
        matters.routed.v1 and matters.status.v1 for its events too): once routing has routed the marker, it
        has taken everything before it there. Then whatever it stored to publish by then is published, and
        the tail has read those partitions to their ends."""
        markers = []
        for partition in sorted({_partition(m) for m in matter_ids}):
            marker_id = next(m for m in iter(uuid.uuid4, None) if _partition(m) == partition)
            markers.append(await self.register(matter_id=marker_id))
        seen: list[ConsumerRecord[Any, Any]] = []
        for marker in markers:
            key = str(marker.matter_id).encode()

            def about(k: bytes = key) -> list[ConsumerRecord[Any, Any]]:
                return [r for t in (MATTERS_ROUTED.name, MATTERS_STATUS.name) for r in self.tail.on(t) if r.key == k]

            async def published(k: bytes = key) -> bool:
                return len(await self.ours(about(k))) >= 2  # routed, status

            await eventually(published, timeout=30)
            records = await self.ours(about())
            assert {r.partition for r in records} == {_partition(marker.matter_id)}, "the partitions computed"
            seen += records
        await outbox_published(self.service.pool)
        await read_to_end(self.tail, seen)


PARTITIONS = MATTERS_REGISTERED_V2.partitions
assert PARTITIONS == MATTERS_ROUTED.partitions == MATTERS_STATUS.partitions


def _partition(matter_id: uuid.UUID) -> int:
    """The partition of a record keyed by `matter_id`: murmur2, as aiokafka's default partitioner and the
    outbox relay's librdkafka (murmur2_random) both pick it."""
    return int(murmur2(str(matter_id).encode()) & 0x7FFFFFFF) % PARTITIONS


@pytest.fixture(scope="module")
async def routing(database: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    with capture_logs() as logs:
        configure_tracing("integration-tests", record=True)
        spans = InMemorySpanExporter()
        add_span_processor(SimpleSpanProcessor(spans))
        rules_file = tmp_path_factory.mktemp("rules") / "routing-rules.toml"
        shutil.copy(DEFAULT_RULES, rules_file)
        group = f"test-routing-{uuid.uuid4().hex[:8]}"
        await start_group_at_end(bootstrap, group, consumed_by("routing"))
        settings = RoutingSettings(
            database_url=database,
            kafka_bootstrap_servers=bootstrap,
            kafka_group_id=group,
            operator_api_key=SecretStr(OPERATOR),
            console_api_key=SecretStr(CONSOLE),
            routing_rules_file=rules_file,
            outbox_poll_interval_s=0.2,
            unit_api_keys={u: SecretStr(k) for u, k in UNIT_KEYS.items()},
            _env_file=None,  # type: ignore[call-arg]
        )
        await migrate_dsn(database, settings.db_schema, MIGRATIONS)
        service = create_service(settings)
        tail = Tail(
            bootstrap,
            [
                MATTERS_ROUTED.name,
                MATTERS_STATUS.name,
                FEEDBACK_REJECTED.name,
                *(unit_inbox_topic(u) for u in UNITS),
                *(unit_feedback_rejected_topic(u) for u in UNITS),
            ],
        )
        await tail.start()
        await service.start()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.api), base_url="http://routing")
        try:
            yield Harness(service, http, tail, bootstrap, rules_file, producer, logs, spans, People())
        finally:
            await http.aclose()
            await producer.stop()
            await service.stop()
            await tail.stop()
            spans.shutdown()  # stops collecting: later modules' spans are theirs


# Representatives of the group visits below: generated, so that each value is this run's own and is found
# only where it leaked (the harness remembers them from every body it registers).
REPS = [{"name": f"代表{uuid.uuid4().hex[:6]}", "id_number": factories.id_number(), "phone": factories.mobile()}]
# (case, submission fields, office, office rule, unit, unit rule)
CASES = [
    (
        "review request",
        {"kind": "review-request", "related_tracking_code": "0000-0000-0000-0000"},
        "supervision",
        "office-1-review",
        "office-supervision",
        "review-by-office",
    ),
    (
        "assigned by central leadership",
        {"assigned_by": "central-leadership"},
        "supervision",
        "office-2-central-leadership",
        "city-",
        "unit-4-territorial",
    ),
    (
        "deputy proposal",
        {"kind": "deputy-proposal", "category": "economy"},
        "policy",
        "office-3-deputy-proposal",
        "city-",
        "unit-4-territorial",
    ),
    (
        "visit to Beijing",
        {"channel": "visit", "visit": {"place": "beijing"}},
        "guidance",
        "office-4-special-visit",
        "city-",
        "unit-4-territorial",
    ),
    (
        "unusual visit",
        {"channel": "visit", "visit": {"place": "chengdu", "unusual": True}},
        "guidance",
        "office-4-special-visit",
        "city-",
        "unit-4-territorial",
    ),
    (
        "massive visit",
        {"channel": "visit", "visit": {"place": "chengdu"}, "headcount": 50, "representatives": REPS},
        "guidance",
        "office-4-special-visit",
        "city-",
        "unit-4-territorial",
    ),
    (
        "visit in a sensitive period",
        {"channel": "visit", "visit": {"place": "chengdu"}, "registered_at": datetime(2027, 2, 5, 10, tzinfo=UTC)},
        "guidance",
        "office-4-special-visit",
        "city-",
        "unit-4-territorial",
    ),
    (
        "group visit below the threshold",
        {
            "channel": "visit",
            "visit": {"place": "chengdu"},
            "headcount": 49,
            "representatives": REPS,
            # On a day in no sensitive period: registered now, it would go to guidance on one (e.g. in the
            # Spring Festival 2027 period that the case above uses).
            "registered_at": datetime(2027, 2, 20, 10, tzinfo=UTC),
        },
        "reception",
        "office-5-visit",
        "city-",
        "unit-4-territorial",
    ),
    (
        "mailbox",
        {"channel": "mailbox", "mailbox": "governor"},
        "letters-1",
        "office-6-mailbox",
        "city-",
        "unit-4-territorial",
    ),
    (
        "online to the secretary",
        {"channel": "online", "addressee": "secretary"},
        "letters-1",
        "office-7-to-leaders",
        "city-",
        "unit-4-territorial",
    ),
    ("letter", {"channel": "letter"}, "letters-2", "office-8-letter", "city-", "unit-4-territorial"),
    ("online", {"channel": "online"}, "online", "office-9-online", "city-", "unit-4-territorial"),
    (
        "litigation",
        {"category": "litigation"},
        "letters-2",
        "office-8-letter",
        "dept-political-legal",
        "unit-1-litigation",
    ),
    (
        "accusation",
        {"kind": "accusation", "category": "discipline"},
        "letters-2",
        "office-8-letter",
        "dept-discipline",
        "unit-2-accusation",
    ),
    (
        "litigation accusation: unit rule 1 first",
        {"kind": "accusation", "category": "litigation"},
        "letters-2",
        "office-8-letter",
        "dept-political-legal",
        "unit-1-litigation",
    ),
    (
        "provincial level",
        {"level": "provincial", "category": "health"},
        "letters-2",
        "office-8-letter",
        "dept-health",
        "unit-3-provincial",
    ),
    (
        "provincial level, no department for 'other'",
        {"level": "provincial", "category": "other", "location": {"region_code": "510302"}},
        "letters-2",
        "office-8-letter",
        "city-5103",
        "unit-4-territorial",
    ),
    (
        "territorial",
        {"location": {"region_code": "513401"}},
        "letters-2",
        "office-8-letter",
        "city-5134",
        "unit-4-territorial",
    ),
    ("no location: manual queue", {"location": None}, "letters-2", "office-8-letter", None, "unit-5-manual-queue"),
    (
        "review beats a visit to Beijing",
        {
            "kind": "review-request",
            "related_tracking_code": "0000-0000-0000-0000",
            "channel": "visit",
            "visit": {"place": "beijing"},
        },
        "supervision",
        "office-1-review",
        "office-supervision",
        "review-by-office",
    ),
]


async def test_every_routing_rule_on_the_pipeline(routing: Harness) -> None:
    sent = [
        (case, await routing.register(**dict(fields)), office, o_rule, unit, u_rule)
        for case, fields, office, o_rule, unit, u_rule in CASES
    ]
    for case, event, office, office_rule, unit, unit_rule in sent:
        routed = (await routing.routed(event.matter_id))[0]
        assert (routed["office"], routed["rule"]) == (office, office_rule), case
        view = await routing.view(event.matter_id)
        assert view["unit_rule"] == unit_rule, case
        if unit is None:
            assert routed["unit"] is None, case
            await routing.status_reaches(event.matter_id, "awaiting-assignment")
        else:
            assert routed["unit"].startswith(unit), case
            await routing.status_reaches(event.matter_id, "transferred")
            await eventually(lambda e=event, u=routed["unit"]: bool(routing.inbox(u, e.matter_id)), timeout=30)
        # The change it is routed by says what matters.routed.v1 says (intake, notify and stats read only that one).
        change = next(
            orjson.loads(r.value)
            for r in routing.tail.on(MATTERS_STATUS.name)
            if r.key == str(event.matter_id).encode() and orjson.loads(r.value)["action"] == "routed"
        )
        assert [change[k] for k in ("office", "unit", "category", "rule", "at")] == [
            routed[k] for k in ("office", "unit", "category", "rule", "routed_at")
        ], case
    # The unit of an accusation never learns who accused.
    accusation = next(e for c, e, *_ in sent if c == "accusation")
    message = routing.inbox("dept-discipline", accusation.matter_id)[0]
    assert message.petitioner is None and message.title == accusation.title
    letter = next(e for c, e, *_ in sent if c == "letter")
    city = (await routing.routed(letter.matter_id))[0]["unit"]
    transferred = routing.inbox(city, letter.matter_id)[0]
    assert transferred.petitioner is not None
    assert transferred.petitioner.id_number == letter.opened().petitioner.id_number
    assert set(transferred.respond_by) == {"acceptance", "objection"}
    # A unit names the matter by its id: the petitioner's tracking code (look-up, rating) is never on its inbox.
    for message in (transferred, *routing.inbox("dept-discipline", accusation.matter_id)):
        assert message.tracking_code is None
    raw = [r.value for r in routing.tail.on(unit_inbox_topic(city)) if r.key == str(letter.matter_id).encode()]
    assert raw and letter.opened().tracking_code.encode() not in b"".join(raw)


async def test_categories_are_inferred_when_absent_and_repeats_are_not_routed(routing: Harness) -> None:
    wages = await routing.register(
        category=None, title="反映某公司拖欠工资", content="公司拖欠我们工资三个月，多次讨要无果。"
    )
    routed = (await routing.routed(wages.matter_id))[0]
    assert (routed["category"], routed["category_inferred"]) == ("labor", True)
    vague = await routing.register(category=None, title="求助", content="请领导看看。")
    routed = (await routing.routed(vague.matter_id))[0]
    assert routed["category"] == "other"
    assert (await routing.view(vague.matter_id))["needs_review"] is True

    duplicate = await routing.register(duplicate_of=wages.matter_id)
    again = await routing.register(not_accepted_again=True)
    await routing.status_reaches(duplicate.matter_id, "duplicate")
    await routing.status_reaches(again.matter_id, "not-accepted-again")
    await routing.all_published_about(duplicate.matter_id, again.matter_id)
    keys = {r.key for r in routing.tail.on(MATTERS_ROUTED.name)}
    assert str(duplicate.matter_id).encode() not in keys and str(again.matter_id).encode() not in keys


async def test_a_redelivered_registration_changes_nothing(routing: Harness) -> None:
    event = await routing.register()
    # Copies in the same batch, and the same matter under another event id: none routes it again,
    # and none costs the batch (nothing dead-lettered).
    await routing.send(MATTERS_REGISTERED_V2.name, event)
    await routing.send(MATTERS_REGISTERED_V2.name, event)
    await routing.send(MATTERS_REGISTERED_V2.name, event.model_copy(update={"event_id": uuid.uuid4()}))
    await routing.routed(event.matter_id)
    await routing.all_published_about(event.matter_id)
    key = str(event.matter_id).encode()
    assert len(await routing.ours([r for r in routing.tail.on(MATTERS_ROUTED.name) if r.key == key])) == 1
    statuses = await routing.ours([r for r in routing.tail.on(MATTERS_STATUS.name) if r.key == key])
    assert [orjson.loads(r.value)["status"] for r in statuses] == ["transferred"]
    dead = routing.service.metrics.get_sample_value(
        "xinfang_dead_lettered_messages_total",
        {"topic": MATTERS_REGISTERED_V2.name, "error_type": "UniqueViolationError"},
    )
    assert not dead


async def test_a_visit_registered_at_reception_names_the_clerk_first_in_its_history_once(routing: Harness) -> None:
    """Issue 20: who registered it at reception (received_by, which intake believes from the console's key alone)
    is the first row of its history, at its registration; a redelivered registration adds nothing."""
    registered_at = datetime.now(UTC) - timedelta(minutes=5)
    event = await routing.register(
        channel="visit", visit={"place": "chengdu"}, received_by="staff:sun.reception", registered_at=registered_at
    )
    await routing.send(MATTERS_REGISTERED_V2.name, event.model_copy(update={"event_id": uuid.uuid4()}))
    await routing.routed(event.matter_id)
    await routing.all_published_about(event.matter_id)
    history = (await routing.view(event.matter_id))["history"]
    assert [(h["action"], h["actor"]) for h in history] == [("received", "staff:sun.reception"), ("routed", "routing")]
    assert datetime.fromisoformat(history[0]["at"]) == registered_at
    assert (history[0]["from_status"], history[0]["to_status"]) == (None, "registered")
    key = str(event.matter_id).encode()
    statuses = await routing.ours([r for r in routing.tail.on(MATTERS_STATUS.name) if r.key == key])
    assert len(statuses) == 1, "the row of who registered it publishes no status change"
    # A channel system's registration names nobody: its history starts with its routing, as before.
    plain = await routing.register()
    await routing.routed(plain.matter_id)
    assert [h["action"] for h in (await routing.view(plain.matter_id))["history"]] == ["routed"]


async def test_a_changed_rules_file_routes_new_matters_without_a_release(routing: Harness) -> None:
    before = await routing.register(channel="letter")
    assert (await routing.routed(before.matter_id))[0]["rule"] == "office-8-letter"
    text = routing.rules_file.read_text(encoding="utf-8")
    changed = text.replace(
        'id = "office-8-letter"\noffice = "letters-2"', 'id = "office-8b-letter-to-first"\noffice = "letters-1"'
    )
    assert changed != text
    routing.rules_file.write_text(changed, encoding="utf-8")
    try:
        after = await routing.register(channel="letter")
        routed = (await routing.routed(after.matter_id))[0]
        assert (routed["office"], routed["rule"]) == ("letters-1", "office-8b-letter-to-first")
    finally:
        routing.rules_file.write_text(text, encoding="utf-8")


async def test_a_city_system_over_kafka_takes_a_matter_to_its_conclusion(routing: Harness) -> None:
    city = ReferenceCity("city-5101", routing.bootstrap, group=f"test-city-{uuid.uuid4().hex[:6]}")
    await start_group_at_end(routing.bootstrap, city.group, [unit_inbox_topic("city-5101")])
    stop = asyncio.Event()
    running = asyncio.create_task(city.run(stop))
    try:
        event = await routing.register(location={"region_code": "510104"})
        await routing.status_reaches(event.matter_id, "concluded")
    finally:
        stop.set()
        await running
    assert [m.matter_id for m in city.seen] == [event.matter_id]
    assert routing.statuses(event.matter_id) == [
        ("transferred", "routed"),
        ("transferred", "received"),
        ("accepted", "accepted"),
        ("concluded", "concluded"),
    ]
    concluded = [
        orjson.loads(r.value)
        for r in routing.tail.on(MATTERS_STATUS.name)
        if r.key == str(event.matter_id).encode() and orjson.loads(r.value)["status"] == "concluded"
    ]
    assert concluded[0]["opinion"]["result"] == "support"
    history = (await routing.view(event.matter_id))["history"]
    assert [h["actor"] for h in history] == ["routing", "city-5101", "city-5101", "city-5101"]


OBJECTION_WINDOW = DeadlineRules.default()[DeadlineType.OBJECTION]


def _objection_window_closed(transferred_at: datetime, now: datetime) -> datetime:
    """`transferred_at` moved back by whole days to the latest day whose objection window had ended by `now`, the
    end as routing counts it (5 working days after the transfer's Beijing day, to 24:00 of the last one): ten
    calendar days back is not always past it (from the Thursday before the Spring Festival, 14 days are not)."""
    back = 1
    while OBJECTION_WINDOW.due(transferred_at - timedelta(days=back)) > now:
        back += 1
    return transferred_at - timedelta(days=back)


async def test_unit_feedback_is_refused_when_not_theirs_illegal_or_malformed(routing: Harness) -> None:
    event = await routing.register(location={"region_code": "510104"})
    await routing.status_reaches(event.matter_id, "transferred")

    async def post(unit: str, key: str, action: str, **extra: Any) -> httpx.Response:
        body = UnitFeedback(matter_id=event.matter_id, unit=unit, action=action, at=datetime.now(UTC), **extra)
        return await routing.http.post(
            f"/v1/units/{unit}/feedback", content=body.model_dump_json(), headers={"Authorization": f"Bearer {key}"}
        )

    assert (await post("city-5103", UNIT_KEYS["city-5103"], "accepted")).status_code == 403
    assert (await post("city-5101", UNIT_KEYS["city-5103"], "accepted")).status_code == 401
    illegal = await post(
        "city-5101", UNIT_KEYS["city-5101"], "concluded", opinion={"result": "support", "text": "已处理"}
    )
    assert illegal.status_code == 409 and illegal.json()["errors"][0]["field"] == "action"
    assert (await post("city-5101", UNIT_KEYS["city-5101"], "not-accepted")).status_code == 422  # no reason
    # Transferred long enough ago that the objection window (5 working days) has closed.
    transferred_at = await routing.service.pool.fetchval(
        "SELECT transferred_at FROM matters WHERE matter_id = $1", event.matter_id
    )
    await routing.service.pool.execute(
        "UPDATE matters SET transferred_at = $2 WHERE matter_id = $1",
        event.matter_id,
        _objection_window_closed(transferred_at, datetime.now(UTC)),
    )
    late = await post("city-5101", UNIT_KEYS["city-5101"], "objected", reason="不归我们管")
    assert late.status_code == 409 and "objection window" in late.json()["errors"][0]["message"]
    assert (await post("city-5101", UNIT_KEYS["city-5101"], "accepted")).status_code == 202
    missing_opinion = await post("city-5101", UNIT_KEYS["city-5101"], "concluded")
    assert missing_opinion.status_code == 422 and missing_opinion.json()["errors"][0]["field"] == "opinion"
    malformed = await routing.http.post(
        "/v1/units/city-5101/feedback",
        content=b'{"action": "maybe"}',
        headers={"Authorization": f"Bearer {UNIT_KEYS['city-5101']}"},
    )
    assert malformed.status_code == 422

    # Over Kafka the same refusals go to the unit's own rejected topic, and the consumer carries on.
    wrong_unit = UnitFeedback(
        matter_id=event.matter_id, unit="city-5103", action=FeedbackAction.RECEIVED, at=datetime.now(UTC)
    )
    await routing.feedback(wrong_unit)
    own = unit_feedback_topic("city-5103")
    await routing.producer.send_and_wait(own, b"not json", key=str(event.matter_id).encode())
    theirs = unit_feedback_rejected_topic("city-5103")
    rejected = await routing.tail.wait(theirs, lambda r: r.key == str(event.matter_id).encode(), count=1)
    assert orjson.loads(rejected[0].value)["errors"][0]["field"] == "unit"
    await routing.tail.wait(theirs, lambda r: b'"raw":"not json"' in r.value)
    # On the operators' shared topic, the body's unit is believed (only operators may write it), and a refusal
    # goes to the operators' shared rejected topic.
    await routing.send(UNITS_FEEDBACK.name, wrong_unit.model_copy(update={"event_id": uuid.uuid4()}))
    shared = await routing.tail.wait(FEEDBACK_REJECTED.name, lambda r: r.key == str(event.matter_id).encode())
    assert orjson.loads(shared[0].value)["errors"][0]["field"] == "unit"
    conclude = UnitFeedback(
        matter_id=event.matter_id,
        unit="city-5101",
        action=FeedbackAction.CONCLUDED,
        at=datetime.now(UTC),
        opinion={"result": "explain", "text": "已答复"},
    )
    await routing.feedback(conclude)
    await routing.status_reaches(event.matter_id, "concluded")


async def test_an_objection_reroutes_never_to_the_objector_and_an_operator_reassigns(routing: Harness) -> None:
    event = await routing.register(location={"region_code": "510104"})
    await routing.status_reaches(event.matter_id, "transferred")
    objection = UnitFeedback(
        matter_id=event.matter_id,
        unit="city-5101",
        action=FeedbackAction.OBJECTED,
        at=datetime.now(UTC),
        reason="地址属于自贡",
    )
    await routing.feedback(objection)
    await routing.status_reaches(event.matter_id, "awaiting-assignment")
    view = await routing.view(event.matter_id)
    assert view["unit"] is None and view["history"][-1]["rule"] == "objection-to-manual-queue"
    queue = await routing.http.get("/v1/queues/letters-2", headers={"Authorization": f"Bearer {OPERATOR}"})
    assert str(event.matter_id) in {q["matter_id"] for q in queue.json()}

    assert (
        await routing.http.post(
            f"/v1/matters/{event.matter_id}/reassign", json={"unit": "city-5103", "reason": "地址在自贡"}
        )
    ).status_code == 401
    reassigned = await routing.http.post(
        f"/v1/matters/{event.matter_id}/reassign",
        json={"unit": "city-5103", "reason": "地址在自贡"},
        headers={"Authorization": f"Bearer {OPERATOR}", "X-Operator": "li"},
    )
    assert reassigned.status_code == 200, reassigned.text
    await eventually(lambda: bool(routing.inbox("city-5103", event.matter_id)), timeout=30)
    last = (await routing.view(event.matter_id))["history"][-1]
    assert (last["actor"], last["action"], last["unit"], last["reason"]) == (
        "operator:li",
        "reassigned",
        "city-5103",
        "地址在自贡",
    )


async def test_review_goes_one_level_up_and_a_concluded_re_review_terminates(routing: Harness) -> None:
    async def act(matter_id: uuid.UUID, unit: str, action: str, **extra: Any) -> None:
        await routing.feedback(
            UnitFeedback(matter_id=matter_id, unit=unit, action=action, at=datetime.now(UTC), **extra)
        )

    opinion = {"result": "explain", "text": "已答复"}
    earlier = await routing.register(category="labor", location={"region_code": "510104"})
    await routing.status_reaches(earlier.matter_id, "transferred")
    await act(earlier.matter_id, "city-5101", "accepted")
    await act(earlier.matter_id, "city-5101", "concluded", opinion=opinion)
    await routing.status_reaches(earlier.matter_id, "concluded")

    # A city's matter is reviewed by the provincial department for its category.
    # Intake resolved the code the petitioner gave to the matter it names (related_matter_id).
    review = await routing.register(
        kind="review-request",
        related_tracking_code=earlier.opened().tracking_code.lower(),
        related_matter_id=earlier.matter_id,
    )
    routed = (await routing.routed(review.matter_id))[0]
    assert (routed["office"], routed["unit"]) == ("supervision", "dept-human-resources")
    assert (await routing.view(review.matter_id))["unit_rule"] == "review-city-to-department"
    await act(review.matter_id, "dept-human-resources", "accepted")
    await routing.status_reaches(review.matter_id, "in-review")
    await act(review.matter_id, "dept-human-resources", "concluded", opinion=opinion)
    await routing.status_reaches(review.matter_id, "review-concluded")

    # A department's decision is re-reviewed by the provincial government: the Supervision and Review Office
    # decides it as the handling unit, through its own inbox, and the review waits on it.
    re_review = await routing.register(
        kind="re-review-request",
        related_tracking_code=review.opened().tracking_code,
        related_matter_id=review.matter_id,
    )
    routed = (await routing.routed(re_review.matter_id))[0]
    assert (routed["office"], routed["unit"]) == ("supervision", "office-supervision")
    await routing.status_reaches(review.matter_id, "re-review-requested")
    await routing.status_reaches(re_review.matter_id, "transferred")
    await eventually(lambda: bool(routing.inbox("office-supervision", re_review.matter_id)))
    assert routing.inbox("office-supervision", re_review.matter_id)[0].type == "assign"
    await act(re_review.matter_id, "office-supervision", "accepted")
    await routing.status_reaches(re_review.matter_id, "in-re-review")
    await act(re_review.matter_id, "office-supervision", "concluded", opinion=opinion)
    # Final (三级终结): the re-review, the review and the original matter are all terminated.
    await routing.status_reaches(re_review.matter_id, "terminated")
    assert [s for s, _ in routing.statuses(re_review.matter_id)][-2:] == ["re-review-concluded", "terminated"]
    await routing.status_reaches(review.matter_id, "terminated")
    await routing.status_reaches(earlier.matter_id, "terminated")
    assert [s for s, _ in routing.statuses(earlier.matter_id)][-3:] == ["concluded", "review-requested", "terminated"]
    history = (await routing.view(earlier.matter_id))["history"]
    assert "三级终结" in (history[-1]["reason"] or "")


# --- what the console shows staff (before the personal-data check below, which covers these too) -------


def _person(user: str, role: str, office: str | None = None) -> dict[str, str]:
    return staff_headers(CONSOLE, user, role, office)


ROUTING_DEADLINE = DeadlineRules.default()[DeadlineType.ROUTING]


async def test_a_matter_shows_its_facts_and_its_people_in_clear_only_to_the_office_handling_it(
    routing: Harness,
) -> None:
    representatives = [routing.people.person(), routing.people.person()]
    # A group visit to the provincial government (reception), on a day in no sensitive period.
    event = await routing.register(
        channel="visit",
        visit={"place": "chengdu"},
        headcount=6,
        representatives=representatives,
        location={"region_code": "510104", "detail": "锦江区某街道"},
        registered_at=datetime(2027, 2, 20, 10, tzinfo=UTC),
    )
    assert (await routing.routed(event.matter_id))[0]["office"] == "reception"
    path = f"/v1/matters/{event.matter_id}"
    opened = event.opened()
    in_clear = {
        "masked": False,
        "petitioner": opened.petitioner.model_dump(mode="json"),
        "representatives": [r | {"address": None, "email": None} for r in representatives],
    }
    mine = [v for p in (opened.petitioner, *opened.representatives) for v in p.model_dump().values() if v]
    assert len(mine) == 5 + 2 * 3

    for who in (_person("sun.clerk", "clerk", "reception"), _person("qian.head", "head", "reception"), AUTH_OPERATOR):
        answer = await routing.http.get(path, headers=who)
        assert answer.status_code == 200, answer.text
        view = answer.json()
        assert view["personal"] == in_clear, who
    assert (view["kind"], view["title"], view["content"]) == ("complaint", event.title, event.content)
    assert (view["region_code"], view["headcount"]) == ("510104", 6)
    assert datetime.fromisoformat(view["registered_at"]) == event.registered_at

    # A leader reads it all, the people masked: that they are there, never who they are.
    led = await routing.http.get(path, headers=_person("zhao.leader", "leader"))
    assert led.status_code == 200
    masked = led.json()["personal"]
    assert masked["masked"] is True and len(masked["representatives"]) == 2
    name, id_number, phone = (opened.petitioner.name, opened.petitioner.id_number, opened.petitioner.phone)
    assert masked["petitioner"]["name"] == name[0] + "*" * (len(name) - 1)
    assert masked["petitioner"]["id_number"] == id_number[:3] + "*" * 11 + id_number[-4:]
    assert masked["petitioner"]["phone"] == phone[:3] + "****" + phone[-4:]
    assert masked["petitioner"]["email"].endswith("***@example.cn") and masked["petitioner"]["address"].endswith("****")
    assert not [v for v in mine if v in led.text], "a personal value in clear in a leader's view"
    assert led.json()["tracking_code"] is None, "nor the code that would let a leader act as the petitioner"
    assert (led.json()["title"], led.json()["headcount"]) == (event.title, 6), "the facts are not personal"

    # Another office's clerk sees nothing of it; nobody but the console names a person.
    stranger = await routing.http.get(path, headers=_person("wang.other", "clerk", "online"))
    assert stranger.status_code == 403 and not [v for v in mine if v in stranger.text]
    forged = AUTH_OPERATOR | {"X-Staff-User": "zhao.leader", "X-Staff-Role": "leader"}
    assert (await routing.http.get(path, headers=forged)).status_code == 403

    # A matter routing keeps no personal data of: none shown, to anyone.
    await routing.service.pool.execute("UPDATE matters SET personal_data = NULL WHERE matter_id = $1", event.matter_id)
    assert (await routing.http.get(path, headers=_person("sun.clerk", "clerk", "reception"))).json()["personal"] is None
    assert not (leaks := log_leaks(routing.logs, routing.people)), f"personal data in the logs: {leaks}"


async def test_a_queue_lists_kind_place_headcount_and_when_the_office_s_routing_deadline_falls_due(
    routing: Harness,
) -> None:
    now = datetime.now(UTC)
    unplaced = await routing.register(location=None, registered_at=now - timedelta(days=20))
    returned = await routing.register(location={"region_code": "510104"}, registered_at=now - timedelta(days=10))
    await routing.status_reaches(returned.matter_id, "transferred")
    await routing.feedback(
        UnitFeedback(
            matter_id=returned.matter_id, unit="city-5101", action=FeedbackAction.OBJECTED, at=now, reason="不归我们管"
        )
    )
    await routing.status_reaches(unplaced.matter_id, "awaiting-assignment")
    await routing.status_reaches(returned.matter_id, "awaiting-assignment")

    answer = await routing.http.get("/v1/queues/letters-2", headers=_person("li.clerk", "clerk", "letters-2"))
    assert answer.status_code == 200, answer.text
    entries = {uuid.UUID(e["matter_id"]): e for e in answer.json()}
    order = [uuid.UUID(e["matter_id"]) for e in answer.json()]
    assert order.index(unplaced.matter_id) < order.index(returned.matter_id), "oldest first"
    first, back = entries[unplaced.matter_id], entries[returned.matter_id]
    assert (first["kind"], first["region_code"], first["headcount"]) == ("complaint", None, 1)
    assert (back["kind"], back["region_code"], back["headcount"]) == ("complaint", "510104", 1)
    # Routing's deadline (register and transfer or assign, 15 days) from the registration; for a matter a unit
    # returned, from its return to the queue (it must be assigned again, in time).
    assert datetime.fromisoformat(first["due_at"]) == ROUTING_DEADLINE.due(unplaced.registered_at)
    returned_at = datetime.fromisoformat((await routing.view(returned.matter_id))["history"][-1]["at"])
    assert datetime.fromisoformat(back["due_at"]) == ROUTING_DEADLINE.due(returned_at)
    assert ROUTING_DEADLINE.due(returned_at) > ROUTING_DEADLINE.due(returned.registered_at)
    # The same to a leader; another office's clerk has no look at it.
    led = await routing.http.get("/v1/queues/letters-2", headers=_person("zhao.leader", "leader"))
    # The same entry, without the petitioner's tracking code (the handling office's, not a leader's).
    assert {uuid.UUID(e["matter_id"]): e for e in led.json()}[returned.matter_id] == back | {"tracking_code": None}
    assert back["tracking_code"]
    assert (
        await routing.http.get("/v1/queues/letters-2", headers=_person("wang", "head", "online"))
    ).status_code == 403


# --- personal data -----------------------------------------------------------------------------------


async def test_zz_no_personal_data_reached_logs_or_spans(routing: Harness) -> None:
    """Runs last in this module: every matter above carried its petitioner (with address and e-mail) and
    some representatives, which routing sealed and put in unit inbox messages. Log records are checked as
    the code logged them, before any formatter or redaction."""
    assert len(routing.people) > 20
    assert routing.people.kinds() == {"name", "id_number", "phone", "address", "email"}
    assert routing.logs.captured, "the capture saw the logs"
    assert any(c.record.name.startswith("xinfang") for c in routing.logs.captured), "and the service's among them"
    spans = routing.spans.get_finished_spans()
    assert spans, "the capture saw the service's spans"
    assert not (leaks := log_leaks(routing.logs, routing.people)), f"personal data in the logs: {leaks}"
    assert not (leaks := span_leaks(spans, routing.people)), f"personal data in a span: {leaks}"
    at_rest = await routing.service.pool.fetch("SELECT personal_data, details::text AS details FROM matters")
    assert at_rest
    for row in at_rest:
        for secret in routing.people.values:
            assert secret.encode() not in bytes(row["personal_data"] or b""), "sealed"
            assert secret not in row["details"]


async def test_staff_act_only_on_their_office_s_matters_and_only_the_console_names_a_person(routing: Harness) -> None:
    event = await routing.register(location=None)  # no location: letters-2's manual queue
    await routing.status_reaches(event.matter_id, "awaiting-assignment")
    matter, queue = f"/v1/matters/{event.matter_id}", "/v1/queues/letters-2"
    assign = {"unit": "city-5103", "reason": "地址在自贡"}
    stranger = _person("wang.other", "clerk", "online")
    leader = _person("zhao.leader", "leader")
    clerk, head = _person("li.clerk", "clerk", "letters-2"), _person("chen.head", "head", "letters-2")
    http = routing.http

    # Another office's clerk neither sees nor acts; a leader reads and changes nothing.
    assert (await http.get(queue, headers=stranger)).status_code == 403
    assert (await http.get(matter, headers=stranger)).status_code == 403
    assert (await http.post(f"{matter}/reassign", json=assign, headers=stranger)).status_code == 403
    led = await http.get(queue, headers=leader)
    assert led.status_code == 200 and str(event.matter_id) in {q["matter_id"] for q in led.json()}
    assert (await http.get(matter, headers=leader)).status_code == 200
    assert (await http.post(f"{matter}/reassign", json=assign, headers=leader)).status_code == 403

    # Nobody but the console names a person: not with the operator key, a unit's key, or no key.
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    forged = {"X-Staff-User": "li.clerk", "X-Staff-Role": "clerk", "X-Staff-Office": "letters-2"}
    assert (await http.post(f"{matter}/reassign", json=assign, headers=operator | forged)).status_code == 403
    unit = {"Authorization": f"Bearer {UNIT_KEYS['city-5103']}"}
    assert (await http.post(f"{matter}/reassign", json=assign, headers=unit | forged)).status_code == 401
    assert (await http.post(f"{matter}/reassign", json=assign, headers=forged)).status_code == 401
    # The console's key names a person, or nothing happens.
    nameless = {"Authorization": f"Bearer {CONSOLE}"}
    assert (await http.post(f"{matter}/reassign", json=assign, headers=nameless)).status_code == 422
    bad_office = _person("li.clerk", "clerk", "nowhere")
    assert (await http.post(f"{matter}/reassign", json=assign, headers=bad_office)).status_code == 422
    assert (await routing.view(event.matter_id))["status"] == "awaiting-assignment", "nothing above changed it"

    # The office's clerk assigns it from the queue; history names the person.
    assigned = await http.post(f"{matter}/reassign", json=assign, headers=clerk)
    assert assigned.status_code == 200, assigned.text
    last = (await routing.view(event.matter_id))["history"][-1]
    assert (last["actor"], last["action"], last["unit"]) == ("staff:li.clerk", "reassigned", "city-5103")
    # Transferred now: moving it to another unit is for the office's head.
    again = {"unit": "city-5101", "reason": "实为成都事项"}
    assert (await http.post(f"{matter}/reassign", json=again, headers=clerk)).status_code == 403
    moved = await http.post(f"{matter}/reassign", json=again, headers=head)
    assert moved.status_code == 200, moved.text
    assert (await routing.view(event.matter_id))["history"][-1]["actor"] == "staff:chen.head"
