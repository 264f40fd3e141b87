"""Intake on the real broker and database: both paths, idempotency, repeats, reviews, look-up, rating, and
no personal data in logs or spans. Channel messages are produced with confluent-kafka (librdkafka), a Kafka
client that is not ours, the way a channel system would."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from confluent_kafka import Producer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import Tail, outbox_published, read_to_end, start_group_at_end
from tests.personal_data import People, RawLogCapture, capture_logs, log_leaks, span_leaks
from xinfang_intake.app import MIGRATIONS, create_asgi
from xinfang_intake.channel_keys import add_key
from xinfang_intake.settings import IntakeSettings
from xinfang_shared.contracts.events import (
    DeadlineEvent,
    MatterRegisteredV2,
    MatterStatusChanged,
    Opinion,
    SealedPersonal,
)
from xinfang_shared.contracts.reference import Channel, DeadlineType
from xinfang_shared.contracts.topics import (
    CHANNEL_SUBMITTED,
    DEADLINES_EVENTS,
    MATTERS_RATED,
    MATTERS_REGISTERED_V2,
    MATTERS_STATUS,
    SUBMISSION_REJECTED,
    channel_rejected_topic,
)
from xinfang_shared.db import migrate_dsn
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.periods import china_date, period_last_day
from xinfang_shared.personal import TransportSeal
from xinfang_shared.service import Service
from xinfang_shared.settings import LOCAL_DEV_SECRET
from xinfang_shared.telemetry import add_span_processor, configure_tracing
from xinfang_shared.workdays import CHINA

KEY = "test-channel-key-" + uuid.uuid4().hex
# The console's system in this module's intake (settings.console_system), and the console's channel key.
CONSOLE_SYSTEM = "console-" + uuid.uuid4().hex[:8]
CONSOLE_KEY = "test-console-channel-key-" + uuid.uuid4().hex
CONSUMED = [
    *(t.name for t in CHANNEL_SUBMITTED.values()),
    MATTERS_STATUS.name,
    DEADLINES_EVENTS.name,
]
PRODUCED = [
    MATTERS_REGISTERED_V2.name,
    SUBMISSION_REJECTED.name,
    channel_rejected_topic(Channel.LETTER),
    MATTERS_RATED.name,
]
# The transport key the intake of these tests seals with (its settings read no credentials file: the dev key).
SEAL = TransportSeal(LOCAL_DEV_SECRET)


@dataclass
class Harness:
    service: Service
    http: httpx.AsyncClient
    tail: Tail
    bootstrap: str
    logs: RawLogCapture  # every log record, as logged (before formatting and redaction)
    spans: InMemorySpanExporter
    people: People  # every name, ID number, phone, address and e-mail address the tests used
    fast: httpx.AsyncClient  # the same app behind submissions' fast path (what the server serves)

    def person(self, rng: random.Random | None = None) -> dict[str, str]:
        """A person (a representative, or a petitioner without address and e-mail), remembered."""
        return self.people.person(rng)

    def body(self, **overrides: Any) -> dict[str, Any]:
        """A submission; every personal value in it (generated or given) is remembered."""
        overrides.setdefault("petitioner", self.people.petitioner())
        body = factories.submission(**overrides)
        self.people.record_submission(body)
        return body

    async def post(self, body: dict[str, Any], key: str = KEY) -> httpx.Response:
        return await self.http.post("/v1/submissions", json=body, headers={"Authorization": f"Bearer {key}"})

    async def publish(self, topic: str, event: Any) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, event.model_dump_json().encode(), key=str(event.matter_id).encode())
        finally:
            await producer.stop()

    async def registered(self, matter_id: str) -> list[dict[str, Any]]:
        """The registered events of the matter as published, each with its sealed block opened (`opened`)."""
        found = await self.tail.wait(MATTERS_REGISTERED_V2.name, lambda r: r.key == matter_id.encode())
        return [_opened(record.value) for record in found]

    async def look_up(self, code: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/matters/{code}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def published_so_far(self, *seen: ConsumerRecord[Any, Any]) -> None:
        """Once this returns, whatever this intake had stored to publish by now is on Kafka, and the tail
        has read the partitions of `seen` (records it has) past it: a later copy of one of them (same key,
        same partition) would be in `tail` now. Proves that something did NOT arrive without a sleep."""
        await outbox_published(self.service.pool)
        await read_to_end(self.tail, seen)

    async def key_known(self, key: str) -> None:
        """Wait until a channel key just added is accepted (keys are reloaded when an unknown one comes,
        at most once a second). Probes with a body that is not JSON: 401 while the key is unknown."""

        async def known() -> bool:
            probe = await self.http.post(
                "/v1/submissions", content=b"{not json", headers={"Authorization": f"Bearer {key}"}
            )
            return probe.status_code != 401

        await eventually(known, timeout=30)


@contextmanager
def _at_debug(logger: str) -> Iterator[None]:
    own = logging.getLogger(logger)
    level = own.level
    own.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        own.setLevel(level)


@pytest.fixture(scope="module")
async def intake(database: str, bootstrap: str) -> AsyncIterator[Harness]:
    # The service's own debug lines (its per-batch ones) are captured too, and checked for personal data.
    with capture_logs() as logs, _at_debug("xinfang_intake"):
        configure_tracing("integration-tests", record=True)
        spans = InMemorySpanExporter()
        add_span_processor(SimpleSpanProcessor(spans))

        group = f"test-intake-{uuid.uuid4().hex[:8]}"
        await start_group_at_end(bootstrap, group, CONSUMED)
        settings = IntakeSettings(
            database_url=database,
            kafka_bootstrap_servers=bootstrap,
            kafka_group_id=group,
            channel_api_key=SecretStr(KEY),
            console_system=CONSOLE_SYSTEM,
            outbox_poll_interval_s=0.2,
            _env_file=None,  # type: ignore[call-arg]
        )
        await migrate_dsn(database, settings.db_schema, MIGRATIONS)
        service, fast_path = create_asgi(settings, fast_path=True)
        tail = Tail(bootstrap, PRODUCED)
        await tail.start()
        await service.start()
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.api), base_url="http://intake")
        fast = httpx.AsyncClient(transport=httpx.ASGITransport(app=fast_path), base_url="http://intake")
        try:
            yield Harness(service, http, tail, bootstrap, logs, spans, People(), fast)
        finally:
            await fast.aclose()
            await http.aclose()
            await service.stop()
            await tail.stop()
            spans.shutdown()  # stops collecting: later modules' spans are theirs


# --- HTTP --------------------------------------------------------------------------------------------


async def test_a_submission_is_registered_once_and_answered_idempotently(intake: Harness) -> None:
    body = intake.body()
    first = await intake.post(body)
    assert first.status_code == 202, first.text
    answer = first.json()
    assert answer["status"] == "registered"
    again = await intake.post(body)
    assert (again.status_code, again.json()) == (200, answer)
    other = await intake.post(body | {"title": "another title"})
    assert other.status_code == 409
    assert other.json()["errors"][0]["field"] == "external_id"

    key = answer["matter_id"].encode()
    await intake.registered(answer["matter_id"])
    # A second copy (of the repeated or the conflicting POST) would have been stored before they were
    # answered, and published on the same partition: everything published there by now has been read.
    await intake.published_so_far(*(r for r in intake.tail.on(MATTERS_REGISTERED_V2.name) if r.key == key))
    events = [_opened(r.value) for r in intake.tail.on(MATTERS_REGISTERED_V2.name) if r.key == key]
    assert len(events) == 1
    event = events[0]
    assert (event["opened"]["tracking_code"], event["external_id"], event["channel"]) == (
        answer["tracking_code"],
        body["external_id"],
        "letter",
    )
    assert event["duplicate_of"] is None
    # In clear: the matter, never the person nor the code that opens the look-up.
    assert not {"tracking_code", "petitioner", "representatives", "related_tracking_code"} & set(event)
    assert event["opened"]["petitioner"] == body["petitioner"]
    for secret in (*body["petitioner"].values(), answer["tracking_code"]):
        assert secret not in intake.tail.on(MATTERS_REGISTERED_V2.name)[-1].value.decode()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"petitioner": {"name": "x", "id_number": "11010519491231002Y", "phone": "13812345678"}},
            "petitioner.id_number",
        ),
        ({"petitioner": {"name": "x", "id_number": "11010519491231002X", "phone": "12345"}}, "petitioner.phone"),
        ({"location": {"region_code": "519999"}}, "location.region_code"),
        ({"location": {"region_code": "110101"}}, "location.region_code"),
        ({"channel": "mailbox"}, "mailbox"),
        ({"channel": "visit"}, "visit"),
        ({"headcount": 8}, "representatives"),
        ({"submitted_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, "submitted_at"),
        ({"submitted_at": "2026-11-01T09:00:00"}, "submitted_at"),
        ({"kind": "review-request"}, "related_tracking_code"),
        ({"title": ""}, "title"),
        ({"channel": "fax"}, "channel"),
        ({"content": None}, "content"),
    ],
)
async def test_invalid_submissions_get_422_naming_the_field(
    intake: Harness, change: dict[str, Any], field: str
) -> None:
    response = await intake.post(intake.body(**change))
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert field in {e["field"] for e in errors}, errors
    assert all(e["message"] for e in errors)


async def test_more_than_five_representatives_are_refused(intake: Harness) -> None:
    reps = [intake.person() for _ in range(6)]
    response = await intake.post(intake.body(headcount=30, representatives=reps))
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "representatives", "message": "at most 5 representatives (statutory); got 6"}
    ]
    ok = await intake.post(intake.body(headcount=30, representatives=reps[:5]))
    assert ok.status_code == 202


async def test_keys_are_required_and_limited_to_their_channels(intake: Harness) -> None:
    body = intake.body(channel="online")
    assert (await intake.post(body, key="wrong")).status_code == 401
    assert (await intake.http.post("/v1/submissions", json=body)).status_code == 401
    letters_only = "letters-" + uuid.uuid4().hex
    async with intake.service.pool.acquire() as conn:
        await add_key(
            conn, system="letters-registry-" + uuid.uuid4().hex[:4], channels=[Channel.LETTER], key=letters_only
        )
    await intake.key_known(letters_only)  # a new key is seen on the next reload (at most one a second)
    forbidden = await intake.post(body, key=letters_only)
    assert forbidden.status_code == 403
    assert (await intake.post(intake.body(channel="letter"), key=letters_only)).status_code == 202
    stored = await intake.service.pool.fetchval(
        "SELECT count(*) FROM channel_keys WHERE key_hash = $1", letters_only.encode()
    )
    assert stored == 0, "keys are stored hashed"


async def test_the_fast_path_answers_every_case_as_the_documented_route_does(intake: Harness) -> None:
    """The server serves POST /v1/submissions through FastPath (past FastAPI); the FastAPI route documents it.
    Both must answer alike: statuses, bodies and headers."""
    letters_only = "letters-" + uuid.uuid4().hex
    async with intake.service.pool.acquire() as conn:
        await add_key(conn, system="letters-" + uuid.uuid4().hex[:4], channels=[Channel.LETTER], key=letters_only)
    await intake.key_known(letters_only)
    cases: list[tuple[str, Any, dict[str, str]]] = [
        ("new", intake.body(), {"Authorization": f"Bearer {KEY}"}),
        ("invalid", intake.body(title="", petitioner={"name": "x"}), {"Authorization": f"Bearer {KEY}"}),
        ("not JSON", b"{not json", {"Authorization": f"Bearer {KEY}"}),
        ("too large", b"{" + b" " * (300 * 1024) + b"}", {"Authorization": f"Bearer {KEY}"}),
        ("no key", intake.body(), {}),
        ("wrong scheme", intake.body(), {"Authorization": f"Basic {KEY}"}),
        ("other channel", intake.body(channel="online"), {"Authorization": f"Bearer {letters_only}"}),
    ]
    again = intake.body()
    for name, body, headers in cases:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        route = await intake.http.post("/v1/submissions", content=content, headers=headers)
        if name == "new":  # each path registers a submission of its own
            content = orjson.dumps(again)
        fast = await intake.fast.post("/v1/submissions", content=content, headers=headers)
        assert fast.status_code == route.status_code, name
        assert fast.headers.get("www-authenticate") == route.headers.get("www-authenticate"), name
        assert fast.headers["content-type"] == "application/json", name
        if name == "new":
            assert fast.status_code == 202 and fast.json().keys() == route.json().keys()
        else:
            assert fast.json() == route.json(), name
    first = await intake.fast.post("/v1/submissions", json=again, headers={"Authorization": f"Bearer {KEY}"})
    assert first.status_code == 200
    changed = await intake.fast.post(
        "/v1/submissions", json=again | {"title": "changed"}, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert changed.status_code == 409 and changed.json()["errors"][0]["field"] == "external_id"
    # Everything else passes through to FastAPI.
    assert (await intake.fast.get("/health")).status_code == 200
    assert (await intake.fast.get("/v1/submissions")).status_code == 405


def _staff(user: str, role: str, office: str | None) -> dict[str, str]:
    return {"X-Staff-User": user, "X-Staff-Role": role} | ({"X-Staff-Office": office} if office else {})


async def test_only_the_consoles_key_names_who_registered_a_visit_and_only_someone_of_reception(
    intake: Harness,
) -> None:
    """Issue 20: a visit registered at reception names the clerk (received_by), believed from the console's own
    channel key alone; both paths (the documented route and the fast path) answer alike."""
    async with intake.service.pool.acquire() as conn:
        await add_key(conn, system=CONSOLE_SYSTEM, channels=[Channel.VISIT], key=CONSOLE_KEY)
    await intake.key_known(CONSOLE_KEY)
    clerk = _staff("sun.reception", "clerk", "reception")

    def visit() -> bytes:
        return orjson.dumps(intake.body(channel="visit", visit={"place": "chengdu"}))

    refused: list[tuple[str, str, dict[str, str], int]] = [
        ("another system's key", KEY, clerk, 403),
        ("another system's key, one header", KEY, {"X-Staff-User": "sun.reception"}, 403),
        ("a clerk of another office", CONSOLE_KEY, _staff("li.clerk", "clerk", "letters-2"), 403),
        ("a leader", CONSOLE_KEY, _staff("zhao.leader", "leader", None), 403),
        ("no such role", CONSOLE_KEY, _staff("sun.reception", "boss", "reception"), 422),
        ("no such office", CONSOLE_KEY, _staff("sun.reception", "clerk", "nowhere"), 422),
        ("a user name with a newline", CONSOLE_KEY, _staff("sun.reception\n", "clerk", "reception"), 422),
        ("no user", CONSOLE_KEY, {"X-Staff-Role": "clerk", "X-Staff-Office": "reception"}, 422),
    ]
    for name, key, staff, expected in refused:
        for path in (intake.http, intake.fast):
            answered = await path.post(
                "/v1/submissions", content=visit(), headers={"Authorization": f"Bearer {key}"} | staff
            )
            assert answered.status_code == expected, (name, path is intake.fast, answered.text)
            assert answered.json()["detail"], name
    refused_by_other = await intake.fast.post(
        "/v1/submissions", content=visit(), headers={"Authorization": f"Bearer {KEY}"} | clerk
    )
    assert "only the console's key names a person" in refused_by_other.json()["detail"]
    none_stored = await intake.service.pool.fetchval(
        "SELECT count(*) FROM matters WHERE received_by IS NOT NULL AND received_by <> 'staff:sun.reception'"
    )
    assert none_stored == 0

    named: dict[str, dict[str, Any]] = {}
    for path, staff in (
        (intake.http, clerk),
        (intake.fast, _staff("zhou.head", "head", "reception")),
        (intake.fast, {}),
    ):
        answered = await path.post(
            "/v1/submissions", content=visit(), headers={"Authorization": f"Bearer {CONSOLE_KEY}"} | staff
        )
        assert answered.status_code == 202, answered.text
        named[answered.json()["matter_id"]] = staff
    for matter_id, staff in named.items():
        expected_by = f"staff:{staff['X-Staff-User']}" if staff else None
        stored = await intake.service.pool.fetchval(
            "SELECT received_by FROM matters WHERE matter_id = $1", uuid.UUID(matter_id)
        )
        assert stored == expected_by
        (event,) = await intake.registered(matter_id)
        assert event["received_by"] == expected_by, "in clear, outside the sealed block"
        assert MatterRegisteredV2.model_validate(event).received_by == expected_by
    # The console's key registers visits only (its channels), a person named or not.
    letter = await intake.fast.post(
        "/v1/submissions", json=intake.body(), headers={"Authorization": f"Bearer {CONSOLE_KEY}"} | clerk
    )
    assert letter.status_code == 403


# --- Kafka -------------------------------------------------------------------------------------------


def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in messages:
        producer.produce(topic, value=value, key=key)
    assert producer.flush(30) == 0


async def test_channel_topics_register_the_valid_and_reject_the_rest_without_stalling(intake: Harness) -> None:
    good_before, good_after = intake.body(), intake.body()
    wrong_channel = intake.body(channel="online")
    bad_shape = intake.body(petitioner={"name": "x"})
    too_large = intake.body(content="长" * 20_000, title="t" * 200, petitioner=intake.person())
    too_large["padding"] = "x" * 300_000
    conflict = good_before | {"title": "changed afterwards"}
    topic = CHANNEL_SUBMITTED[Channel.LETTER].name
    messages = [
        (good_before["external_id"].encode(), json.dumps(good_before).encode()),
        (b"not-json", b"{this is not json"),
        (b"not-utf8", b"\xff\xfe\x00garbage"),
        (b"array", b"[1, 2, 3]"),
        (wrong_channel["external_id"].encode(), json.dumps(wrong_channel).encode()),
        (bad_shape["external_id"].encode(), json.dumps(bad_shape).encode()),
        (too_large["external_id"].encode(), json.dumps(too_large).encode()),
        (good_before["external_id"].encode(), json.dumps(good_before).encode()),  # redelivered by the channel
        (conflict["external_id"].encode(), json.dumps(conflict).encode()),
        (good_after["external_id"].encode(), json.dumps(good_after).encode()),
    ]
    await asyncio.to_thread(_produce, intake.bootstrap, topic, messages)

    # Other consumers of the shared channel topics (a running `make up` stack, say) register the same
    # messages in their own databases and publish too: count only what this intake registered.
    async def registered_here(ext: str) -> list[Any]:
        ours = {r["matter_id"] for r in await intake.service.pool.fetch("SELECT matter_id FROM matters")}

        def match(r: Any) -> bool:
            event = orjson.loads(r.value)
            return bool(event["external_id"] == ext and uuid.UUID(event["matter_id"]) in ours)

        return await intake.tail.wait(MATTERS_REGISTERED_V2.name, match, timeout=5)

    await eventually(lambda: _registered_in_db(intake, good_after["external_id"]), timeout=30)
    rejected_keys = {
        b"not-json",
        b"not-utf8",
        b"array",
        *(m[0] for m in messages[4:7]),
        conflict["external_id"].encode(),
    }
    rejected = await intake.tail.wait(SUBMISSION_REJECTED.name, lambda r: r.key in rejected_keys, count=7)
    # The conflict's rejection is the marker: it came after the redelivered copy on the same partition (same
    # key), so the copy has been taken. Whatever it caused is stored by now; once published, it would be on
    # the partition of the first registered event (same matter, same key): read those to their ends.
    rows = await intake.service.pool.fetch(
        "SELECT matter_id FROM matters WHERE external_id = ANY($1)",
        [good_before["external_id"], good_after["external_id"]],
    )
    assert len(rows) == 2, "the redelivered submission is registered once"
    ours = {str(r["matter_id"]).encode() for r in rows}
    await eventually(lambda: {r.key for r in intake.tail.on(MATTERS_REGISTERED_V2.name)} >= ours, timeout=30)
    await intake.published_so_far(*(r for r in intake.tail.on(MATTERS_REGISTERED_V2.name) if r.key in ours))
    for ext in (good_before["external_id"], good_after["external_id"]):
        assert len(await registered_here(ext)) == 1, "and published once"

    reasons: dict[bytes, set[str]] = {}
    for record in rejected:
        event = orjson.loads(record.value)
        reasons.setdefault(record.key, set()).update(e["field"] for e in event["errors"])
        assert event["channel"] == "letter" and event["raw"]
    assert reasons[b"not-json"] == reasons[b"not-utf8"] == reasons[b"array"] == {"<message>"}
    assert "channel" in reasons[wrong_channel["external_id"].encode()]
    assert {"petitioner.id_number", "petitioner.phone"} <= set(reasons[bad_shape["external_id"].encode()])
    assert reasons[too_large["external_id"].encode()] == {"<message>"}
    assert reasons[conflict["external_id"].encode()] == {"external_id"}
    # The letter channel's system reads the same refusals on its own topic (no other channel's), and the text it
    # sent comes back with its personal fields masked: operators and channels see the shape, not the people.
    own = await intake.tail.wait(channel_rejected_topic(Channel.LETTER), lambda r: r.key in rejected_keys, count=7)
    assert {r.key for r in own} == {r.key for r in rejected}
    shaped = next(orjson.loads(r.value) for r in own if r.key == conflict["external_id"].encode())
    assert "petitioner" in shaped["raw"] and conflict["title"] in shaped["raw"]
    for secret in conflict["petitioner"].values():
        assert secret not in shaped["raw"], "a personal value in a refusal's text"


# --- repeats -----------------------------------------------------------------------------------------


async def test_repeats_are_marked_as_duplicates_of_an_open_matter(intake: Harness) -> None:
    """(A terminated chain's repeat, not accepted again, is tested through the real services in
    test_finality.py: only routing's concluded re-review terminates a chain.)"""
    person = intake.person()
    text = {
        "title": "关于某小区拆迁补偿款未发放的反映",
        "content": "我家在某街道某小区，2024年拆迁后补偿款至今未发放，多次询问无果，请求督促发放。",
    }
    original = (await intake.post(intake.body(petitioner=person, **text))).json()
    assert original["status"] == "registered"

    # One letter to many addressees (一信多投): the copy is a duplicate of the original.
    copy = await intake.post(intake.body(petitioner=person, addressee="governor", **text))
    assert copy.status_code == 202 and copy.json()["status"] == "duplicate"
    event = (await intake.registered(copy.json()["matter_id"]))[0]
    assert event["duplicate_of"] == original["matter_id"]

    # The same text from another petitioner, and another matter from the same one, are new matters.
    assert (await intake.post(intake.body(**text))).json()["status"] == "registered"
    different = {
        "title": "反映某工厂夜间噪音扰民",
        "content": "某工业园区的工厂每天夜里两点还在施工，噪音严重影响休息。",
    }
    assert (await intake.post(intake.body(petitioner=person, **different))).json()["status"] == "registered"


async def _registered_in_db(intake: Harness, external_id: str) -> bool:
    return bool(await intake.service.pool.fetchval("SELECT count(*) FROM matters WHERE external_id = $1", external_id))


async def _conclude(intake: Harness, matter: dict[str, Any], opinion: Opinion) -> None:
    """Routing's word that the matter is concluded, as intake learns it."""
    await intake.publish(
        MATTERS_STATUS.name,
        MatterStatusChanged(
            matter_id=matter["matter_id"],
            status="concluded",
            previous_status="accepted",
            unit="city-5101",
            at=datetime.now(UTC),
            opinion=opinion,
        ),
    )
    await eventually(lambda: _status(intake, matter["tracking_code"], "concluded"), timeout=30)


async def _status(intake: Harness, code: str, status: str) -> bool:
    return (await intake.look_up(code))["status"] == status


REVIEW_WINDOW = DeadlineRules.default().request_window(DeadlineType.REVIEW)


def _opinions_either_side_of_the_window_end(now: datetime) -> tuple[datetime, datetime]:
    """(outside, inside): the latest opinion (noon, Beijing) whose review window had ended by `now`, and the earliest
    whose window is still open an hour after `now`. The ends come from the window's rule, as intake applies it
    (from the next Beijing day, to 24:00 of the last one, moved past rest days), never from days counted here."""

    def at(day: date) -> datetime:
        return datetime.combine(day, time(12), tzinfo=CHINA)

    day = china_date(now)  # concluded today: open
    while REVIEW_WINDOW.due(at(day - timedelta(days=1))) > now + timedelta(hours=1):
        day -= timedelta(days=1)
    inside = at(day)
    while REVIEW_WINDOW.due(at(day)) > now:
        day -= timedelta(days=1)
    return at(day), inside


async def _concluded_at(intake: Harness, matter: dict[str, Any], when: datetime) -> None:
    await intake.service.pool.execute(
        "UPDATE matters SET concluded_at = $2 WHERE matter_id = $1", uuid.UUID(matter["matter_id"]), when
    )


# --- reviews, look-up, rating ------------------------------------------------------------------------


async def test_review_requests_link_to_a_concluded_matter_within_its_window(intake: Harness) -> None:
    person = intake.person()
    earlier = (await intake.post(intake.body(petitioner=person))).json()
    review = {"kind": "review-request", "petitioner": person}

    unknown = await intake.post(intake.body(related_tracking_code="0000-0000-0000-0000", **review))
    assert unknown.status_code == 422, unknown.text
    assert "no matter has this tracking code" in unknown.json()["errors"][0]["message"]

    open_one = await intake.post(intake.body(related_tracking_code=earlier["tracking_code"], **review))
    assert open_one.status_code == 422 and "not concluded" in open_one.json()["errors"][0]["message"]

    opinion = Opinion(result="explain", text="经核查，补偿款已于本月发放。")
    await _conclude(intake, earlier, opinion)
    accepted = await intake.post(intake.body(related_tracking_code=earlier["tracking_code"].lower(), **review))
    assert accepted.status_code == 202, accepted.text

    # Either side of the window's end as the law counts it: 31 days back is still inside when the 30th day was a
    # rest day (concluded on a Thursday, asked on the Sunday after the Saturday it ended on).
    outside, inside = _opinions_either_side_of_the_window_end(datetime.now(UTC))
    late, edge = [(await intake.post(intake.body(petitioner=intake.person()))).json() for _ in range(2)]
    for matter, when in ((late, outside), (edge, inside)):
        await _conclude(intake, matter, opinion)
        await _concluded_at(intake, matter, when)
    too_late = await intake.post(intake.body(related_tracking_code=late["tracking_code"], kind="review-request"))
    assert too_late.status_code == 422, too_late.text
    refusal = too_late.json()["errors"][0]
    assert refusal["field"] == "related_tracking_code" and "window" in refusal["message"]
    assert period_last_day(REVIEW_WINDOW.due(outside)).isoformat() in refusal["message"]
    in_time = await intake.post(intake.body(related_tracking_code=edge["tracking_code"], kind="review-request"))
    assert in_time.status_code == 202, in_time.text

    re_review = await intake.post(
        intake.body(related_tracking_code=earlier["tracking_code"], kind="re-review-request", petitioner=person)
    )
    assert re_review.status_code == 422 and "concluded review" in re_review.json()["errors"][0]["message"]


async def test_the_petitioner_sees_progress_without_personal_data_and_rates_once(intake: Harness) -> None:
    person = intake.person()
    body = intake.body(petitioner=person)
    answer = (await intake.post(body)).json()
    code, matter_id = answer["tracking_code"], answer["matter_id"]
    now = datetime.now(UTC)

    assert (await intake.http.post(f"/v1/matters/{code}/rating", json={"rating": "satisfied"})).status_code == 409
    # Routed: the change carries the office and the category (intake reads no matters.routed.v1).
    await intake.publish(
        MATTERS_STATUS.name,
        MatterStatusChanged(
            matter_id=matter_id,
            status="transferred",
            previous_status="registered",
            unit="city-5101",
            at=now,
            action="routed",
            office="letters-2",
            category="labor",
            rule="office-8",
        ),
    )
    await intake.publish(
        DEADLINES_EVENTS.name,
        DeadlineEvent(
            matter_id=matter_id,
            deadline="acceptance",
            state="set",
            due_at=now + timedelta(days=15),
            unit="city-5101",
            at=now,
        ),
    )
    await intake.publish(
        MATTERS_STATUS.name,
        MatterStatusChanged(
            matter_id=matter_id,
            status="concluded",
            previous_status="accepted",
            unit="city-5101",
            at=now + timedelta(seconds=1),
            opinion=Opinion(result="support", text="诉求合理，已责成企业补发工资。"),
        ),
    )
    await eventually(lambda: _status(intake, code, "concluded"), timeout=30)
    await eventually(lambda: _has_deadline(intake, code), timeout=30)

    response = await intake.http.get(f"/v1/matters/{code.replace('-', '').lower()}")
    view = response.json()
    assert (view["office"], view["unit"], view["category"]) == ("letters-2", "city-5101", "labor")
    assert view["deadlines"][0]["deadline"] == "acceptance"
    assert view["opinion"]["result"] == "support"
    for secret in (person["id_number"], person["phone"], person["name"], body["petitioner"]["name"]):
        assert secret not in response.text

    rated = await intake.http.post(f"/v1/matters/{code}/rating", json={"rating": "basically-satisfied"})
    assert rated.status_code == 200
    assert (await intake.http.post(f"/v1/matters/{code}/rating", json={"rating": "satisfied"})).status_code == 409
    assert (await intake.http.post(f"/v1/matters/{code}/rating", json={"rating": "great"})).status_code == 422
    event = await intake.tail.wait(MATTERS_RATED.name, lambda r: r.key == matter_id.encode())
    assert orjson.loads(event[0].value)["rating"] == "basically-satisfied"
    assert (await intake.http.get("/v1/matters/0000-0000-0000-0000")).status_code == 404


def _opened(value: bytes) -> dict[str, Any]:
    """A registered event as JSON, with what its sealed block holds under `opened`."""
    event = MatterRegisteredV2.model_validate_json(value)  # every one keeps the contract
    opened = SealedPersonal.model_validate_json(SEAL.open(event.sealed, matter_id=event.matter_id))
    return dict(orjson.loads(value)) | {"opened": opened.model_dump(mode="json")}


async def _has_deadline(intake: Harness, code: str) -> bool:
    return bool((await intake.look_up(code))["deadlines"])


# --- personal data -----------------------------------------------------------------------------------


async def test_zz_no_personal_data_reached_logs_or_spans(intake: Harness) -> None:
    """Runs last in this module: everything above went through the service with these people. Log records
    are checked as the code logged them (message, arguments, exception, extra fields), before the formatter
    masks ID numbers and phones; names, addresses and e-mail addresses are never masked."""
    assert len(intake.people) > 20
    assert intake.people.kinds() == {"name", "id_number", "phone", "address", "email"}
    assert "channel batch" in intake.logs.messages(), "the capture saw the service's logs"
    spans = intake.spans.get_finished_spans()
    assert spans, "the capture saw the service's spans"
    assert not (leaks := log_leaks(intake.logs, intake.people)), f"personal data in the logs: {leaks}"
    assert not (leaks := span_leaks(spans, intake.people)), f"personal data in a span: {leaks}"
    at_rest = await intake.service.pool.fetch("SELECT personal_data, details::text AS details FROM matters")
    for row in at_rest:
        for secret in intake.people.values:
            assert secret.encode() not in bytes(row["personal_data"]) and secret not in row["details"]
