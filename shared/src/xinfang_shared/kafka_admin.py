"""Creating and deleting topics with the Kafka admin API (deploy/local/topics.py, the tests' private broker, the
benchmark's namespaces)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic


async def ensure_topics(bootstrap: str, wanted: dict[str, int]) -> tuple[list[str], list[str]]:
    """Creates the topics of `wanted` (name -> partitions) that are missing and raises partition counts lower
    than wanted; answers (created, grown). Idempotent."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="xinfang-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(name, num_partitions=wanted[name], replication_factor=1) for name in missing]
            )
        grown: list[str] = []
        present = [name for name in wanted if name in existing]
        if present:
            described = await admin.describe_topics(present)
            for topic in described:
                have = len(topic["partitions"])
                if have < wanted[topic["topic"]]:
                    grown.append(topic["topic"])
            if grown:
                await admin.create_partitions({name: NewPartitions(wanted[name]) for name in grown})
        return missing, grown
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: list[str]) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="xinfang-topics")
    await admin.start()
    try:
        present = [name for name in names if name in set(await admin.list_topics())]
        if present:
            await admin.delete_topics(present)
        return present
    finally:
        await admin.close()
