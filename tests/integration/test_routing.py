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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import Tail, start_group_at_end
from tests.reference.city import ReferenceCity
from xinfang_routing.app import MIGRATIONS, create_service
from xinfang_routing.rules import DEFAULT_RULES
from xinfang_routing.settings import RoutingSettings
from xinfang_shared.contracts.events import MatterRegistered, Submission, UnitFeedback, UnitInboxMessage
from xinfang_shared.contracts.reference import UNITS, FeedbackAction
from xinfang_shared.contracts.topics import (
    FEEDBACK_REJECTED,
    MATTERS_REGISTERED,
    MATTERS_ROUTED,
    MATTERS_STATUS,
    UNITS_FEEDBACK,
    unit_inbox_topic,
)
from xinfang_shared.db import migrate_dsn
from xinfang_shared.service import Service
from xinfang_shared.tracking import new_tracking_code

OPERATOR = "operator-" + uuid.uuid4().hex
UNIT_KEYS = {"city-5101": "k5101-" + uuid.uuid4().hex, "city-5103": "k5103-" + uuid.uuid4().hex}


@dataclass
class Harness:
    service: Service
    http: httpx.AsyncClient
    tail: Tail
    bootstrap: str
    rules_file: Path
    producer: AIOKafkaProducer

    async def register(self, **overrides: Any) -> MatterRegistered:
        registered_at = overrides.pop("registered_at", datetime.now(UTC))
        extra = {k: overrides.pop(k) for k in ("duplicate_of", "not_accepted_again") if k in overrides}
        body = factories.submission(random.Random(), **overrides)
        submission = Submission.model_validate(body)
        event = MatterRegistered(
            matter_id=uuid.uuid4(),
            tracking_code=new_tracking_code(),
            registered_at=registered_at,
            **dict(submission),
            **extra,
        )
        await self.send(MATTERS_REGISTERED.name, event)
        return event

    async def send(self, topic: str, event: Any) -> None:
        await self.producer.send_and_wait(topic, event.model_dump_json().encode(), key=str(event.matter_id).encode())

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


@pytest.fixture(scope="module")
async def routing(database: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    rules_file = tmp_path_factory.mktemp("rules") / "routing-rules.toml"
    shutil.copy(DEFAULT_RULES, rules_file)
    group = f"test-routing-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(bootstrap, group, [MATTERS_REGISTERED.name, UNITS_FEEDBACK.name])
    settings = RoutingSettings(
        database_url=database,
        kafka_bootstrap_servers=bootstrap,
        kafka_group_id=group,
        operator_api_key=SecretStr(OPERATOR),
        routing_rules_file=rules_file,
        outbox_poll_interval_s=0.2,
        unit_api_keys={u: SecretStr(k) for u, k in UNIT_KEYS.items()},
        _env_file=None,  # type: ignore[call-arg]
    )
    await migrate_dsn(database, settings.db_schema, MIGRATIONS)
    service = create_service(settings)
    tail = Tail(
        bootstrap,
        [MATTERS_ROUTED.name, MATTERS_STATUS.name, FEEDBACK_REJECTED.name, *(unit_inbox_topic(u) for u in UNITS)],
    )
    await tail.start()
    await service.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.api), base_url="http://routing")
    try:
        yield Harness(service, http, tail, bootstrap, rules_file, producer)
    finally:
        await http.aclose()
        await producer.stop()
        await service.stop()
        await tail.stop()


REPS = [{"name": "代表", "id_number": "11010519491231002X", "phone": "13800138000"}]
# (case, submission fields, office, office rule, unit, unit rule)
CASES = [
    (
        "review request",
        {"kind": "review-request", "related_tracking_code": "0000-0000-0000-0000"},
        "supervision",
        "office-1-review",
        None,
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
        {"channel": "visit", "visit": {"place": "chengdu"}, "headcount": 49, "representatives": REPS},
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
        None,
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
    # The unit of an accusation never learns who accused.
    accusation = next(e for c, e, *_ in sent if c == "accusation")
    message = routing.inbox("dept-discipline", accusation.matter_id)[0]
    assert message.petitioner is None and message.title == accusation.title
    letter = next(e for c, e, *_ in sent if c == "letter")
    city = (await routing.routed(letter.matter_id))[0]["unit"]
    transferred = routing.inbox(city, letter.matter_id)[0]
    assert transferred.petitioner is not None and transferred.petitioner.id_number == letter.petitioner.id_number
    assert set(transferred.respond_by) == {"acceptance", "objection"}


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
    await asyncio.sleep(1)
    keys = {r.key for r in routing.tail.on(MATTERS_ROUTED.name)}
    assert str(duplicate.matter_id).encode() not in keys and str(again.matter_id).encode() not in keys


async def test_a_redelivered_registration_changes_nothing(routing: Harness) -> None:
    event = await routing.register()
    # Copies in the same batch, and the same matter under another event id: none routes it again,
    # and none costs the batch (nothing dead-lettered).
    await routing.send(MATTERS_REGISTERED.name, event)
    await routing.send(MATTERS_REGISTERED.name, event)
    await routing.send(MATTERS_REGISTERED.name, event.model_copy(update={"event_id": uuid.uuid4()}))
    await routing.routed(event.matter_id)
    await asyncio.sleep(2)
    assert len(await routing.routed(event.matter_id)) == 1
    assert [s for s, _ in routing.statuses(event.matter_id)] == ["transferred"]
    dead = routing.service.metrics.get_sample_value(
        "xinfang_dead_lettered_messages_total", {"topic": MATTERS_REGISTERED.name, "error_type": "UniqueViolationError"}
    )
    assert not dead


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
    # Six working days later the objection window (5 working days) has closed.
    await routing.service.pool.execute(
        "UPDATE matters SET transferred_at = transferred_at - interval '10 days' WHERE matter_id = $1", event.matter_id
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

    # Over Kafka the same refusals go to units.feedback.rejected.v1, and the consumer carries on.
    wrong_unit = UnitFeedback(
        matter_id=event.matter_id, unit="city-5103", action=FeedbackAction.RECEIVED, at=datetime.now(UTC)
    )
    await routing.send(UNITS_FEEDBACK.name, wrong_unit)
    await routing.producer.send_and_wait(UNITS_FEEDBACK.name, b"not json", key=str(event.matter_id).encode())
    rejected = await routing.tail.wait(
        FEEDBACK_REJECTED.name, lambda r: r.key == str(event.matter_id).encode(), count=1
    )
    assert orjson.loads(rejected[0].value)["errors"][0]["field"] == "unit"
    await routing.tail.wait(FEEDBACK_REJECTED.name, lambda r: b'"raw":"not json"' in r.value)
    conclude = UnitFeedback(
        matter_id=event.matter_id,
        unit="city-5101",
        action=FeedbackAction.CONCLUDED,
        at=datetime.now(UTC),
        opinion={"result": "explain", "text": "已答复"},
    )
    await routing.send(UNITS_FEEDBACK.name, conclude)
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
    await routing.send(UNITS_FEEDBACK.name, objection)
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
        await routing.send(
            UNITS_FEEDBACK.name,
            UnitFeedback(matter_id=matter_id, unit=unit, action=action, at=datetime.now(UTC), **extra),
        )

    opinion = {"result": "explain", "text": "已答复"}
    earlier = await routing.register(category="labor", location={"region_code": "510104"})
    await routing.status_reaches(earlier.matter_id, "transferred")
    await act(earlier.matter_id, "city-5101", "accepted")
    await act(earlier.matter_id, "city-5101", "concluded", opinion=opinion)
    await routing.status_reaches(earlier.matter_id, "concluded")

    # A city's matter is reviewed by the provincial department for its category.
    review = await routing.register(kind="review-request", related_tracking_code=earlier.tracking_code.lower())
    routed = (await routing.routed(review.matter_id))[0]
    assert (routed["office"], routed["unit"]) == ("supervision", "dept-human-resources")
    assert (await routing.view(review.matter_id))["unit_rule"] == "review-city-to-department"
    await act(review.matter_id, "dept-human-resources", "accepted")
    await routing.status_reaches(review.matter_id, "in-review")
    await act(review.matter_id, "dept-human-resources", "concluded", opinion=opinion)
    await routing.status_reaches(review.matter_id, "review-concluded")

    # A department's decision is re-reviewed by the Supervision and Review Office itself: its queue.
    re_review = await routing.register(kind="re-review-request", related_tracking_code=review.tracking_code)
    routed = (await routing.routed(re_review.matter_id))[0]
    assert (routed["office"], routed["unit"]) == ("supervision", None)
    await routing.status_reaches(re_review.matter_id, "awaiting-assignment")
    # Handled through an assignment the office makes; once concluded, the matter is terminated (final).
    await routing.http.post(
        f"/v1/matters/{re_review.matter_id}/reassign",
        json={"unit": "dept-discipline", "reason": "复核委托"},
        headers={"Authorization": f"Bearer {OPERATOR}"},
    )
    await routing.status_reaches(re_review.matter_id, "transferred")
    await act(re_review.matter_id, "dept-discipline", "accepted")
    await routing.status_reaches(re_review.matter_id, "in-re-review")
    await act(re_review.matter_id, "dept-discipline", "concluded", opinion=opinion)
    await routing.status_reaches(re_review.matter_id, "terminated")
    assert [s for s, _ in routing.statuses(re_review.matter_id)][-2:] == ["re-review-concluded", "terminated"]
