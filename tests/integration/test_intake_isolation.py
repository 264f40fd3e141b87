"""One bad record never sinks its neighbours, on the real database (and broker): in a channel batch, in a
batch of concurrent HTTP requests; and a failure of every record halts the consumer instead of rejecting the
whole topic.

"Bad" comes in two kinds: values validation refuses (NUL, control characters, lone surrogates, out-of-range
numbers and dates), and values validation lets through that the database still refuses. The second kind is
what the isolation is the safety net for; here a trigger on the matters table plays it (a row whose title
holds POISON fails with check_violation), which is how a column constraint or a new encoding rule would fail.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import ConsumerRecord
from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import Tail, start_group_at_end
from xinfang_intake.app import CHANNEL_CONSUMER, MIGRATIONS, create_asgi
from xinfang_intake.ingest import Intake
from xinfang_intake.registration import Registrar
from xinfang_intake.settings import IntakeSettings
from xinfang_shared.contracts.reference import Channel
from xinfang_shared.contracts.topics import CHANNEL_SUBMITTED, MATTERS_REGISTERED_V2, SUBMISSION_REJECTED
from xinfang_shared.db import create_pool, migrate_dsn
from xinfang_shared.dlq_limit import DeadLetterLimit
from xinfang_shared.service import Service

KEY = "isolation-key-" + uuid.uuid4().hex
OPERATOR = "isolation-operator-" + uuid.uuid4().hex
TOPIC = CHANNEL_SUBMITTED[Channel.ONLINE].name
POISON = "POISON"

# A row of refuse_all makes every insert fail: a bug (or a broken dependency) that fails every record.
REFUSE_POISON = f"""
CREATE TABLE IF NOT EXISTS refuse_all (since timestamptz NOT NULL DEFAULT now());
CREATE OR REPLACE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.details->>'title' LIKE '%{POISON}%' OR EXISTS (SELECT 1 FROM refuse_all) THEN
        RAISE check_violation USING MESSAGE = 'refused by the test trigger';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS refuse_poison ON matters;
CREATE TRIGGER refuse_poison BEFORE INSERT ON matters FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""
DROP_POISON = "DROP TRIGGER IF EXISTS refuse_poison ON matters; DROP TABLE IF EXISTS refuse_all;"


def body(rng: random.Random | None = None, **overrides: Any) -> dict[str, Any]:
    return factories.submission(rng or random.Random(), channel="online", **overrides)


# --- the batch path alone, on its own schema (no relay: what it would publish stays in the outbox) -----


@dataclass
class Lane:
    intake: Intake
    pool: asyncpg.Pool
    offsets: int = 0

    def records(self, bodies: list[dict[str, Any]]) -> list[ConsumerRecord[Any, Any]]:
        """Records as a channel system sends them (key: the external id). json (not orjson) writes what its
        JSON may hold: integers of any size, and lone surrogates as \\u escapes."""
        out = []
        for b in bodies:
            self.offsets += 1
            key, value = b["external_id"].encode(), json.dumps(b).encode()
            out.append(ConsumerRecord(TOPIC, 0, self.offsets, 0, 0, key, value, None, len(key), len(value), []))
        return out


@pytest.fixture(scope="module")
async def lane(database: str) -> AsyncIterator[Lane]:
    schema = f"intake_iso_{uuid.uuid4().hex[:6]}"
    await migrate_dsn(database, schema, MIGRATIONS)
    pool = await create_pool(database, schema)
    await pool.execute(REFUSE_POISON)
    settings = IntakeSettings(database_url=database, _env_file=None)  # type: ignore[call-arg]
    registrar = Registrar.from_settings(settings)
    # A loose limit: these batches are mostly bad on purpose.
    intake = Intake(settings, registrar, pool, DeadLetterLimit("lane", max_share=1.0, max_in_a_row=10**6))
    try:
        yield Lane(intake, pool)
    finally:
        await pool.close()


def _unstorable(rng: random.Random) -> dict[str, Any]:
    """Refused by validation, naming the field."""
    kind = rng.randrange(5)
    if kind == 0:
        return body(rng, content="工资\x00拖欠")
    if kind == 1:
        return body(rng, title="bell \x07")
    if kind == 2:
        return body(rng, headcount=10**30)
    if kind == 3:
        return body(rng, submitted_at="0001-01-01T00:00:00+08:00")
    return body(rng, content="lone \ud800")


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(st.sampled_from(["valid", "valid", "valid", "invalid", "poison", "again"]), min_size=1, max_size=40))
async def test_every_valid_record_of_a_mixed_batch_is_registered_once_and_every_bad_one_rejected_once(
    lane: Lane, plan: list[str]
) -> None:
    rng = random.Random(len(plan))
    bodies: list[dict[str, Any]] = []
    for step in plan:
        if step == "again" and bodies:
            bodies.append(bodies[-1])  # the channel sent the same submission twice
        elif step == "invalid":
            bodies.append(_unstorable(rng))
        elif step == "poison":
            bodies.append(body(rng, title=f"{POISON} {uuid.uuid4().hex[:6]}"))
        else:
            bodies.append(body(rng))
    records = lane.records(bodies)
    await lane.intake.take_records(records)
    await lane.intake.take_records(records)  # redelivered after a crash: changes nothing

    ids = list({b["external_id"] for b in bodies})
    stored = dict(
        await lane.pool.fetch(
            "SELECT external_id, count(*) FROM matters WHERE external_id = ANY($1) GROUP BY external_id", ids
        )
    )
    rows = await lane.pool.fetch("SELECT topic, value FROM outbox")
    published = [(r["topic"], orjson.loads(r["value"])) for r in rows]
    registered = [v["external_id"] for t, v in published if t == MATTERS_REGISTERED_V2.name]
    rejected = [v for t, v in published if t == SUBMISSION_REJECTED.name and v["external_id"] in ids]
    good = {b["external_id"] for b in bodies if _valid(b)}
    for external_id in good:
        assert stored.get(external_id) == 1, "a valid submission is stored once"
        assert registered.count(external_id) == 1, "and published once"
    bad = [b for b in bodies if not _valid(b)]
    assert len(rejected) == len(bad), "every bad record is rejected once (the redelivery adds nothing)"
    for b in bad:
        assert b["external_id"] not in stored
    reasons = {r["external_id"]: r["errors"] for r in rejected}
    for b in bad:
        errors = reasons[b["external_id"]]
        if POISON in b["title"]:  # let through by validation: refused by the safety net
            assert [e["field"] for e in errors] == ["<message>"] and "could not be registered" in errors[0]["message"]
        elif "\ud800" in b["content"]:  # escaped in the JSON: not JSON text at all
            assert [e["field"] for e in errors] == ["<message>"] and "not JSON" in errors[0]["message"]
        else:
            assert "<message>" not in {e["field"] for e in errors}, "validation names the field"


def _valid(b: dict[str, Any]) -> bool:
    return (
        POISON not in b["title"]
        and "\x00" not in b["content"]
        and "\x07" not in b["title"]
        and "\ud800" not in b["content"]
        and b.get("headcount", 1) < 10**6
        and not str(b["submitted_at"]).startswith("0001")
    )


# --- the running service: Kafka lanes, HTTP coalescer, the dead-letter limit ---------------------------


@dataclass
class Harness:
    service: Service
    http: httpx.AsyncClient
    tail: Tail
    bootstrap: str

    async def post(self, b: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/v1/submissions", json=b, headers={"Authorization": f"Bearer {KEY}"})

    async def stored(self, external_ids: list[str]) -> int:
        return int(
            await self.service.pool.fetchval("SELECT count(*) FROM matters WHERE external_id = ANY($1)", external_ids)
        )

    def rejections(self, external_ids: set[str]) -> list[dict[str, Any]]:
        found = [orjson.loads(r.value) for r in self.tail.on(SUBMISSION_REJECTED.name)]
        return [r for r in found if r["external_id"] in external_ids]

    async def health(self, *, operator: bool = False) -> dict[str, Any]:
        """/health as anyone sees it, or (`operator`) with each failure's text."""
        headers = {"Authorization": f"Bearer {OPERATOR}"} if operator else {}
        return dict((await self.http.get("/health", headers=headers)).json())


@pytest.fixture(scope="module")
async def intake(database: str, bootstrap: str) -> AsyncIterator[Harness]:
    group = f"test-isolation-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(bootstrap, group, [t.name for t in CHANNEL_SUBMITTED.values()])
    settings = IntakeSettings(
        database_url=database,
        kafka_bootstrap_servers=bootstrap,
        kafka_group_id=group,
        channel_api_key=SecretStr(KEY),
        operator_api_key=SecretStr(OPERATOR),
        outbox_poll_interval_s=0.2,
        halt_probe_after_s=1.0,
        halt_probe_max_s=4.0,
        halt_poll_s=0.3,
        _env_file=None,  # type: ignore[call-arg]
    )
    await migrate_dsn(database, settings.db_schema, MIGRATIONS)
    service, _ = create_asgi(settings, fast_path=False)
    tail = Tail(bootstrap, [SUBMISSION_REJECTED.name, MATTERS_REGISTERED_V2.name, TOPIC + ".dlq"])
    await tail.start()
    await service.start()
    await service.pool.execute(REFUSE_POISON)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.api), base_url="http://intake")
    try:
        yield Harness(service, http, tail, bootstrap)
    finally:
        await service.pool.execute(DROP_POISON)
        await http.aclose()
        await service.stop()
        await tail.stop()


def _produce(bootstrap: str, values: list[tuple[str, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in values:
        producer.produce(TOPIC, value=value, key=key.encode())
    assert producer.flush(30) == 0


async def test_one_bad_record_among_61_on_a_channel_topic_costs_the_others_nothing(intake: Harness) -> None:
    good = [body() for _ in range(59)]
    nul = body(content="某公司拖欠工资\x00三个月")  # what PostgreSQL cannot store: refused by validation
    poison = body(title=f"{POISON} 数据库不收的记录")  # passes validation, refused by the database
    batch = [*good[:30], nul, *good[30:45], poison, *good[45:]]
    await asyncio.to_thread(_produce, intake.bootstrap, [(b["external_id"], orjson.dumps(b)) for b in batch])

    ids = [b["external_id"] for b in good]
    await eventually(lambda: _count_is(intake, ids, len(good)), timeout=60)
    bad = {nul["external_id"], poison["external_id"]}
    # (Exactly once is the mixed-batch test's, on the outbox: other intakes may read these shared topics too.)
    await eventually(lambda: {r["external_id"] for r in intake.rejections(bad)} == bad, timeout=30)
    reasons = {r["external_id"]: r["errors"] for r in intake.rejections(bad)}
    assert [e["field"] for e in reasons[nul["external_id"]]] == ["content"]
    assert "U+0000" in reasons[nul["external_id"]][0]["message"]
    assert [e["field"] for e in reasons[poison["external_id"]]] == ["<message>"]
    assert "could not be registered" in reasons[poison["external_id"]][0]["message"]
    assert not intake.rejections(set(ids))
    # Each good one published; nothing went to the dead-letter topic.
    await eventually(lambda: set(ids) <= _registered(intake))
    assert not [r for r in intake.tail.on(TOPIC + ".dlq") if r.key and r.key.decode() in {*ids, *bad}]
    assert (await intake.health())["status"] == "ok"


def _registered(intake: Harness) -> set[str]:
    return {orjson.loads(r.value)["external_id"] for r in intake.tail.on(MATTERS_REGISTERED_V2.name)}


async def _count_is(intake: Harness, ids: list[str], n: int) -> bool:
    return await intake.stored(ids) == n


async def test_concurrent_http_submissions_with_one_bad_one_answer_202_and_one_422(intake: Harness) -> None:
    good = [body() for _ in range(24)]
    poison = body(title=f"{POISON} over HTTP")
    answers = await asyncio.gather(*(intake.post(b) for b in [*good[:12], poison, *good[12:]]))
    codes = [a.status_code for a in answers]
    assert codes.count(202) == 24 and codes[12] == 422, codes
    assert answers[12].json()["errors"][0]["field"] == "<message>"
    assert await intake.stored([b["external_id"] for b in good]) == 24
    nul = await intake.post(body(content="\x00"))
    assert nul.status_code == 422 and nul.json()["errors"][0]["field"] == "content"


async def test_a_failure_of_every_record_halts_the_consumer_and_resumes_when_the_cause_is_gone(
    intake: Harness,
) -> None:
    limit = intake.service.limit(CHANNEL_CONSUMER)
    await intake.service.pool.execute("INSERT INTO refuse_all DEFAULT VALUES")  # a bug that fails every record
    try:
        await _halt_and_resume(intake, limit)
    finally:
        await intake.service.pool.execute("DELETE FROM refuse_all")  # a failure here must not halt the next tests


async def _halt_and_resume(intake: Harness, limit: DeadLetterLimit) -> None:
    batch = [body() for _ in range(40)]
    ids = [b["external_id"] for b in batch]
    await asyncio.to_thread(_produce, intake.bootstrap, [(b["external_id"], orjson.dumps(b)) for b in batch])
    await eventually(lambda: limit.halt is not None, timeout=60)

    health = await intake.health(operator=True)
    assert health["status"] == "degraded"
    assert "records" in health["checks"][f"consumer:{CHANNEL_CONSUMER}"]
    # Without the key, what failed, not its text (which can quote a record): the error's type.
    told = (await intake.health())["checks"][f"consumer:{CHANNEL_CONSUMER}"]
    assert told.startswith("halted since") and told.endswith(": CheckViolationError"), told
    stored_halt = await intake.service.pool.fetchval(
        "SELECT reason FROM consumer_halts WHERE consumer = $1", CHANNEL_CONSUMER
    )
    assert stored_halt is not None, "kept in PostgreSQL for every instance and across restarts"
    metrics = (await intake.http.get("/metrics")).text
    assert f'xinfang_consumer_halted{{consumer="{CHANNEL_CONSUMER}"}} 1.0' in metrics
    # Over HTTP the same bug answers 503 (retry later), not 422 (your fault).
    assert (await intake.post(body())).status_code in (422, 503)
    answers = [await intake.post(body()) for _ in range(25)]
    assert answers[-1].status_code == 503 and answers[-1].headers["retry-after"]

    # While halted and probing (every second here) without success, nothing is rejected or dead-lettered. The
    # 40 usually come in one fetch, and none is refused. On a loaded machine the first fetch may hold only some:
    # each failure then looks like poison until max_in_a_row of them have failed in a row, so fewer than that
    # many are refused (as poison would be) before the halt, and none after.
    await asyncio.sleep(3)
    refused = {r["external_id"] for r in intake.rejections(set(ids))}
    assert len(refused) < limit.max_in_a_row, refused
    assert await intake.stored(ids) == 0

    # The cause is mended: the next probe takes the records, registers all the others, and the halt ends. (A
    # refusal from before the halt can reach the topic after the look above, on a loaded machine: every record is
    # registered or refused, and the refused stay fewer than max_in_a_row.)
    await intake.service.pool.execute("DELETE FROM refuse_all")

    async def each_registered_or_refused() -> bool:
        refused.update(r["external_id"] for r in intake.rejections(set(ids)))
        return await _count_is(intake, ids, len(ids) - len(refused))

    await eventually(each_registered_or_refused, timeout=90)
    await eventually(lambda: limit.halt is None, timeout=30)
    assert len(refused) < limit.max_in_a_row, refused
    assert {r["external_id"] for r in intake.rejections(set(ids))} == refused, "nothing more of the batch refused"
    # HTTP's own halt ends with its next request after a probe is due.
    await eventually(_http_registers(intake), timeout=30)
    await eventually(lambda: _no_halts_stored(intake), timeout=10)
    await eventually(_healthy(intake), timeout=10)


def _http_registers(intake: Harness) -> Any:
    async def check() -> bool:
        return (await intake.post(body())).status_code == 202

    return check


async def _no_halts_stored(intake: Harness) -> bool:
    return await intake.service.pool.fetchval("SELECT count(*) FROM consumer_halts") == 0


def _healthy(intake: Harness) -> Any:
    async def check() -> bool:
        return (await intake.health())["status"] == "ok"

    return check


async def test_an_operator_resumes_a_halted_consumer(intake: Harness) -> None:
    headers = {"Authorization": f"Bearer {OPERATOR}", "X-Operator": "wang.gong"}
    assert (await intake.http.get("/v1/admin/consumers")).status_code == 401
    listed = (await intake.http.get("/v1/admin/consumers", headers=headers)).json()
    assert listed[CHANNEL_CONSUMER] == "ok"
    not_halted = await intake.http.post(f"/v1/admin/consumers/{CHANNEL_CONSUMER}/resume", headers=headers)
    assert not_halted.status_code == 409
    unknown = await intake.http.post("/v1/admin/consumers/nope/resume", headers=headers)
    assert unknown.status_code == 404

    limit = intake.service.limit(CHANNEL_CONSUMER)
    for _ in range(limit.max_in_a_row):
        limit.admit([True], RuntimeError("simulated"))
    assert limit.halted
    await eventually(lambda: _halt_stored(intake), timeout=10)
    resumed = await intake.http.post(f"/v1/admin/consumers/{CHANNEL_CONSUMER}/resume", headers=headers)
    assert resumed.status_code == 200 and resumed.json()["state"] == "ok"
    assert not limit.halted
    late = body()
    await asyncio.to_thread(_produce, intake.bootstrap, [(late["external_id"], orjson.dumps(late))])
    await eventually(lambda: _count_is(intake, [late["external_id"]], 1), timeout=30)


async def _halt_stored(intake: Harness) -> bool:
    return bool(await intake.service.pool.fetchval("SELECT count(*) FROM consumer_halts"))
