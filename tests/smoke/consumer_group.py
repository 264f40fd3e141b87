"""Checks, with Kafka's own DescribeGroups (aiokafka's admin client), how a consumer group splits a topic.

    uv run --frozen python tests/smoke/consumer_group.py GROUP TOPIC MEMBERS [--timeout SECONDS]

Waits (a rebalance takes a moment) until GROUP is stable with exactly MEMBERS members subscribed to TOPIC, each
holding at least one of its partitions and all together every partition once; prints the split and exits 0, or
prints the last state seen and exits 1. One member per instance: each service subscribes to a topic once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata


async def split(admin: AIOKafkaAdminClient, group: str, topic: str) -> tuple[str, dict[str, list[int]]]:
    """The group's state and, per member subscribed to `topic`, the partitions of `topic` it holds."""
    [response] = await admin.describe_consumer_groups([group])
    [described] = [g for g in response.to_object()["groups"] if g["group"] == group]
    held: dict[str, list[int]] = {}
    for member in described["members"]:
        metadata = member["member_metadata"]
        if not metadata or topic not in ConsumerProtocolMemberMetadata.decode(metadata).subscription:
            continue
        assignment = member["member_assignment"]
        partitions: list[int] = []
        if assignment:
            for name, numbers in ConsumerProtocolMemberAssignment.decode(assignment).assignment:
                if name == topic:
                    partitions.extend(numbers)
        held[f"{member['member_id']} ({member['client_host']})"] = sorted(partitions)
    return str(described["state"]), held


def problem(state: str, held: dict[str, list[int]], members: int, partitions: int) -> str | None:
    everyone = [p for ps in held.values() for p in ps]
    if state != "Stable":
        return f"group state {state}"
    if len(held) != members:
        return f"{len(held)} members subscribed, want {members}"
    if any(not ps for ps in held.values()):
        return "a member holds no partition"
    if sorted(everyone) != list(range(partitions)):
        return f"partitions held {sorted(everyone)}, want each of 0..{partitions - 1} once"
    return None


async def main(group: str, topic: str, members: int, timeout: float) -> int:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"), client_id="xinfang-smoke"
    )
    await admin.start()
    try:
        described: list[dict[str, Any]] = await admin.describe_topics([topic])
        partitions = len(described[0]["partitions"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            state, held = await split(admin, group, topic)
            why = problem(state, held, members, partitions)
            if why is None:
                how = "1 member holds all" if members == 1 else f"{members} members split the"
                print(f"[xinfang] {group}: {how} {partitions} partitions of {topic}:")
                for member, ps in sorted(held.items(), key=lambda item: item[1]):
                    print(f"  {member}: {ps}")
                return 0
            if loop.time() > deadline:
                print(f"[xinfang] {group} on {topic} after {timeout:.0f} s: {why}; {state} {held}", file=sys.stderr)
                return 1
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("group")
    parser.add_argument("topic")
    parser.add_argument("members", type=int)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.group, args.topic, args.members, args.timeout)))
