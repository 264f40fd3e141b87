"""Creates every topic in the registry (and its .dlq) with its partitions; raises partition counts that are
lower than the registry's. Idempotent. Usage: uv run python deploy/local/topics.py
"""

from __future__ import annotations

import asyncio
import os
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

from xinfang_shared.contracts.topics import topics_to_create


async def ensure_topics(bootstrap: str, wanted: dict[str, int]) -> tuple[list[str], list[str]]:
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


def main() -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    wanted = topics_to_create()
    created, grown = asyncio.run(ensure_topics(bootstrap, wanted))
    print(
        f"[xinfang] topics: {len(wanted)} in the registry, {len(created)} created, {len(grown)} given more partitions",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
