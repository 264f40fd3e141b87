"""Integration tier: the real Kafka broker and PostgreSQL of deploy/local (started once, reused if up)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = ROOT / ".local" / "credentials.env"


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
def stack() -> dict[str, str]:
    """Kafka and PostgreSQL up (starting them if needed); returns the local credentials."""
    if not (_port_open(9092) and _port_open(5432) and CREDENTIALS.exists()):
        subprocess.run(["bash", str(ROOT / "deploy/local/infra.sh"), "up"], check=True)
    creds = _credentials()
    os.environ.setdefault("KAFKA_BOOTSTRAP_SERVERS", creds["KAFKA_BOOTSTRAP_SERVERS"])
    return creds


@pytest.fixture(scope="session")
def bootstrap(stack: dict[str, str]) -> str:
    return stack["KAFKA_BOOTSTRAP_SERVERS"]


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
