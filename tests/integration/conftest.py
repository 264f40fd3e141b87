"""Integration tier: a real Kafka broker and a real PostgreSQL.

Where a Docker engine answers, they are containers (testcontainers: Kafka in KRaft mode, PostgreSQL 17), started
for the session and removed after it; otherwise (these machines) PostgreSQL of deploy/local (started once, reused
if up) and a private Kafka broker from the stack's jars, secured as the stack's is. The session's header says
which (`infrastructure: ...`); `TEST_INFRA=local` forces the local scripts. The containers' Kafka has no SCRAM
listener: the tests of the broker's ACLs skip there, as with TEST_KAFKA_BOOTSTRAP_SERVERS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import Producer

from tests.infra import INFRA
from xinfang_shared.contracts.acls import acls, principals
from xinfang_shared.contracts.topics import topics_to_create
from xinfang_shared.db import create_pool, migrate_dsn
from xinfang_shared.kafka_admin import apply_security, ensure_topics
from xinfang_shared.kafka_auth import KafkaConnection

ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = ROOT / ".local" / "credentials.env"
WARM_UP = "test.warm-up.v1"  # the broker is ready once an idempotent producer's record to it is acknowledged


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _credentials() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in CREDENTIALS.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    """PostgreSQL (and, locally, the stack's Kafka) up, starting them if needed; the credentials, of which the
    tests read DATABASE_URL (an administrator's)."""
    if INFRA == "testcontainers":
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:17-alpine", driver=None) as postgres:
            yield {"DATABASE_URL": postgres.get_connection_url()}
        return
    if not (_port_open(9092) and _port_open(5432) and CREDENTIALS.exists()):
        subprocess.run(["bash", str(ROOT / "deploy/local/infra.sh"), "up"], check=True)
    yield _credentials()


def _idempotent_producer_acknowledged(bootstrap: str) -> None:
    """Waits until the broker acknowledges an idempotent producer: a fresh broker answers "coordinator load in
    progress" to the first ones for a while, and the tests' time limits are for the services, not for that."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "message.timeout.ms": 120_000}
    )
    failed: list[Any] = []
    producer.produce(WARM_UP, b"warm-up", on_delivery=lambda error, _: failed.append(error) if error else None)
    assert producer.flush(130) == 0 and not failed, f"the tests' Kafka broker does not acknowledge: {failed}"


@dataclass(frozen=True)
class Secured:
    """The tests' broker as the local stack secures it: its SCRAM listener, where every principal of the registry
    (service-<service>, unit-<unit>, channel-<channel>) has its password and the registry's ACLs apply."""

    bootstrap: str
    passwords: dict[str, str]

    def principal(self, name: str) -> KafkaConnection:
        return KafkaConnection(self.bootstrap).as_principal(name, self.passwords[name])


async def _every_principal_signs_in(secured: Secured, within_s: float = 60.0) -> None:
    """Waits until each principal's password is taken: the broker applies SCRAM credentials through its metadata
    log, so a sign-in right after they were set may be refused (a test that ran first failed that way)."""
    deadline = asyncio.get_running_loop().time() + within_s
    for name in secured.passwords:
        while True:
            admin = AIOKafkaAdminClient(**secured.principal(name).aiokafka())
            try:
                await admin.start()
                break
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
            finally:
                await admin.close()


@pytest.fixture(scope="session")
def kafka_broker(
    stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Secured | None]]:
    """The tests' own Kafka broker: a private one for the session (the stack's jars, other ports, its data in a
    temporary folder), with every registry topic created, so no test leaves a record on the topics a `make up`
    stack reads; secured as the stack's is (its open listener for the tests' tools, its SCRAM listener with the
    registry's ACLs). TEST_KAFKA_BOOTSTRAP_SERVERS names a broker to use instead (its topics created; no SCRAM)."""
    from tests.integration.private_kafka import PrivateKafka  # here: it imports this module

    given = os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS")
    container = None
    if not given and INFRA == "testcontainers":
        from testcontainers.community.kafka import KafkaContainer

        container = KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft()
        container.start()
        given = container.get_bootstrap_server()
    kafka = None if given else PrivateKafka(tmp_path_factory.mktemp("kafka"), heap="1g", sasl=True)
    if kafka is not None:
        kafka.start()
    address = given or (kafka.bootstrap if kafka else "")
    asyncio.run(ensure_topics(address, topics_to_create() | {WARM_UP: 1}))
    _idempotent_producer_acknowledged(address)
    secured = None
    if kafka is not None:
        passwords = {p: secrets.token_urlsafe(18) for p in principals()}
        asyncio.run(apply_security(address, passwords, acls()))
        secured = Secured(kafka.sasl_bootstrap, passwords)
        asyncio.run(_every_principal_signs_in(secured))
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = address  # for the processes the tests start
    try:
        yield address, secured
    finally:
        if container is not None:
            container.stop()
        if kafka is not None:
            kafka.stop()
            shutil.rmtree(kafka.home, ignore_errors=True)


@pytest.fixture(scope="session")
def bootstrap(kafka_broker: tuple[str, Secured | None]) -> str:
    return kafka_broker[0]


@pytest.fixture(scope="session")
def secured(kafka_broker: tuple[str, Secured | None]) -> Secured:
    if kafka_broker[1] is None:
        pytest.skip("TEST_KAFKA_BOOTSTRAP_SERVERS names a broker of its own: no SCRAM listener to test")
    return kafka_broker[1]


@pytest.fixture(scope="session")
async def database(stack: dict[str, str]) -> AsyncIterator[str]:
    """A fresh database for this test run; dropped afterwards. Yields its DSN."""
    admin_dsn = stack["DATABASE_URL"]
    name = f"xinfang_test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    yield admin_dsn.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


TopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def new_topic(bootstrap: str) -> AsyncIterator[TopicFactory]:
    """Creates uniquely named topics (and their .dlq) for one test; deletes them afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    created: list[str] = []

    async def make(stem: str = "t", partitions: int = 3, *, dlq: bool = True) -> str:
        name = f"test.{stem}.{uuid.uuid4().hex[:8]}.v1"
        names = [name, name + ".dlq"] if dlq else [name]
        await admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
        created.extend(names)
        return name

    yield make
    if created:
        await admin.delete_topics(created)
    await admin.close()


async def read_topic(
    bootstrap: str, topic: str, *, expect: int, timeout: float = 20.0, settle: float = 0.0
) -> list[Any]:
    """Every record of `topic` from the beginning, once `expect` arrived (and `settle` more seconds passed)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and len(records) < expect:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
        end = loop.time() + settle
        while loop.time() < end:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def committed(admin_dsn: str, database: str) -> int:
    """Transactions committed in `database` so far (pg_stat_database's xact_commit), read from the administrator's
    database so that reading adds none. A backend reports its counts lazily (up to seconds after), but at the
    latest as it exits: so this waits until no session is connected to `database` any more (the caller has
    closed its own) and reads then."""
    conn = await asyncpg.connect(admin_dsn)
    try:

        async def nobody_connected() -> bool:
            sessions = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database)
            return bool(sessions == 0)

        await eventually(nobody_connected, timeout=10)
        await asyncio.sleep(0.2)  # gone from pg_stat_activity a moment before its counts are in
        count: int = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database)
        return count
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def schema_pool(database: str, prefix: str, migrations: Path) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh schema of the test database (`<prefix>_<random>`), migrated: one test's tables alone."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    await migrate_dsn(database, schema, migrations)
    pool = await create_pool(database, schema)
    try:
        yield pool
    finally:
        await pool.close()
