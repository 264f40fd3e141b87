"""Small guards, each on the real database or broker: a statement that never answers is abandoned; inbox records
older than the topics keep their records are pruned; a keyed topic never gets more partitions; the feedback
topics keep the broker's arrival time; every service's database role can touch its own schema only."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.integration.conftest import TopicFactory
from tests.integration.pipeline import MIGRATIONS
from tests.integration.processes import private_database
from xinfang_shared.contracts.topics import SERVICES, TopicSpec, unit_feedback_topic
from xinfang_shared.db import create_pool, ensure_service_role, migrate_dsn, service_role
from xinfang_shared.inbox import first_time_many, prune_inbox
from xinfang_shared.kafka_admin import ensure_topics


async def test_a_statement_that_does_not_answer_is_abandoned(database: str) -> None:
    await migrate_dsn(database, "hardening", MIGRATIONS["stats"])
    pool = await create_pool(database, "hardening", command_timeout_s=0.5)
    try:
        with pytest.raises(TimeoutError):
            await pool.fetchval("SELECT pg_sleep(30)")
        assert await pool.fetchval("SELECT 1") == 1, "the pool goes on"
    finally:
        await pool.close()


async def test_inbox_records_older_than_the_retention_are_pruned(database: str) -> None:
    await migrate_dsn(database, "hardening", MIGRATIONS["stats"])
    pool = await create_pool(database, "hardening")
    try:
        old, new = [uuid.uuid4() for _ in range(25)], [uuid.uuid4() for _ in range(5)]
        async with pool.acquire() as conn:
            await first_time_many(conn, old + new, source="test")
            await conn.execute(
                "UPDATE inbox SET processed_at = now() - interval '20 days' WHERE event_id = ANY($1)", old
            )
        assert await prune_inbox(pool, timedelta(days=14), batch=10) == 25  # in batches
        left = {
            r["event_id"] for r in await pool.fetch("SELECT event_id FROM inbox WHERE event_id = ANY($1)", old + new)
        }
        assert left == set(new)
        async with pool.acquire() as conn:  # what is still remembered is still refused as a redelivery
            assert await first_time_many(conn, new, source="test") == set()
    finally:
        await pool.close()


async def test_a_keyed_topic_never_gets_more_partitions(bootstrap: str, new_topic: TopicFactory) -> None:
    keyed = await new_topic("keyed", partitions=3, dlq=False)
    unkeyed = await new_topic("dlq-like", partitions=1, dlq=False)
    done = await ensure_topics(bootstrap, {keyed: TopicSpec(12), unkeyed: TopicSpec(3, keyed=False)})
    assert done.short == [(keyed, 3, 12)] and done.grown == [unkeyed]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics([keyed, unkeyed])}
    finally:
        await admin.close()
    assert described == {keyed: 3, unkeyed: 3}, "a matter's key stays on its partition"


async def test_the_feedback_topics_keep_the_broker_s_arrival_time(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        answers = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, name)
                for name in (unit_feedback_topic("city-5101"), "units.feedback.v1")
            ]
        )
    finally:
        await admin.close()
    found = {
        (resource[3], entry[0]): entry[1]
        for answer in answers
        for resource in answer.resources
        for entry in resource[4]
    }
    for topic in (unit_feedback_topic("city-5101"), "units.feedback.v1"):
        assert found[(topic, "message.timestamp.type")] == "LogAppendTime", topic


@pytest.fixture
async def roles(stack: dict[str, str]) -> AsyncIterator[dict[str, str]]:
    """A fresh database where each service's schema is made by ensure_service_role, as deploy/local/database.py
    makes the stack's; yields each service's DSN there (its own role; the roles are the cluster's own)."""
    async with private_database(stack["DATABASE_URL"]) as database:
        admin = await asyncpg.connect(database)
        dsns: dict[str, str] = {}
        try:
            for service in SERVICES:
                known = os.environ.get(f"DATABASE_URL_{service.upper()}") or stack.get(
                    f"DATABASE_URL_{service.upper()}"
                )
                password = urlsplit(known).password if known else None
                assert password, f"DATABASE_URL_{service.upper()} in .local/credentials.env (make up writes it)"
                await ensure_service_role(admin, service, password, may_create=service == "stats")
                url = urlsplit(database)
                netloc = f"{service_role(service)}:{quote(password)}@{url.hostname}:{url.port}"
                dsns[service] = urlunsplit(url._replace(netloc=netloc))
        finally:
            await admin.close()
        for service, dsn in dsns.items():
            await migrate_dsn(dsn, service, MIGRATIONS[service])
        yield dsns


async def test_each_service_s_role_touches_its_own_schema_only(roles: dict[str, str]) -> None:
    for service, dsn in roles.items():
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval(f"SELECT count(*) FROM {service}.outbox") >= 0
            for other in SERVICES:
                if other == service:
                    continue
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetchval(f"SELECT count(*) FROM {other}.outbox")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(f"CREATE TABLE {other}.planted (x int)")
            if service != "stats":
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute("CREATE SCHEMA planted")
        finally:
            await conn.close()
