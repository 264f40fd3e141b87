"""xinfang-ops: what an operator asks of the running cluster.

    xinfang-ops lag [--group G ...]               consumer lag per group and partition (committed vs end offsets)
    xinfang-ops dlq list                          every dead-letter topic and how many records it holds
    xinfang-ops dlq show TOPIC [--limit N] [--values]
                                                  its records: source, error, attempts, whether handled
    xinfang-ops dlq replay TOPIC [--dry-run]      each record back to its source topic with its original key, once
    xinfang-ops outbox                            rows each service has not yet published, and the oldest's age
    xinfang-ops halts                             every service's consumers: ok, or halted since when and why
    xinfang-ops resume SERVICE CONSUMER --operator NAME
    xinfang-ops health                            every service's /health, with the operator's detail

Kafka from KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* (an operator's principal: a super
user); PostgreSQL from DATABASE_URL (a role that may read every service's outbox); the services at
XINFANG_<SERVICE>_URL (default http://127.0.0.1:800N) with OPERATOR_API_KEY.

A replay is exactly once: the records are produced to their source topics and the replay group's offsets on the
dead-letter topic committed in one Kafka transaction, its transactional id per topic. A replay first fences any
other of the same topic (a second one running, or one that crashed mid-transaction) and only then reads how far
they got, so a record replayed is never replayed again; the services read with `read_committed`, so what an
aborted transaction sent is never processed. A record naming no source topic is passed over (listed, and counted
as handled). Each replayed record carries `x-replayed-from: <dlq topic>/<partition>/<offset>`; its own x-dlq-*
headers are dropped. A dry run only counts: it starts no transaction (and so fences nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from .contracts.topics import DLQ_SUFFIX
from .db import quote_ident
from .kafka_auth import KafkaConnection
from .messaging import H_ATTEMPTS, H_CONSUMER_GROUP, H_ERROR, H_ERROR_TYPE, H_SOURCE_OFFSET, H_SOURCE_TOPIC
from .observability import PartitionLag, committed_offsets, lags

SERVICES = {"intake": 8001, "routing": 8002, "supervision": 8003, "notify": 8004, "stats": 8005}
REPLAY_GROUP = "xinfang-ops-replay"
STALL_S = 60.0  # a replay that gets no record for this long stops and says so
H_REPLAYED_FROM = "x-replayed-from"
OUR_GROUPS = "xinfang-"


# ---- Kafka ---------------------------------------------------------------------------------------------


async def _admin(kafka: KafkaConnection) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**kafka.aiokafka(), client_id="xinfang-ops")
    await admin.start()
    return admin


async def _offsets(kafka: KafkaConnection, topics: Sequence[str]) -> tuple[dict[TopicPartition, int], ...]:
    """(start offsets, end offsets) of every partition of `topics` (a topic that does not exist has none)."""
    admin = await _admin(kafka)
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    partitions = [
        TopicPartition(t["topic"], p["partition"]) for t in described if not t["error_code"] for p in t["partitions"]
    ]
    if not partitions:
        return {}, {}
    consumer = AIOKafkaConsumer(**kafka.aiokafka(), client_id="xinfang-ops", enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def group_lags(kafka: KafkaConnection, groups: Sequence[str] = ()) -> list[PartitionLag]:
    """The lag of every partition each group has committed on (default: every group named xinfang-…)."""
    admin = await _admin(kafka)
    try:
        if not groups:
            listed = await admin.list_consumer_groups()
            # Namespaced groups too (`<TOPIC_PREFIX>xinfang-<service>`).
            groups = sorted(g for g, _ in listed if OUR_GROUPS in g and g != REPLAY_GROUP)
        committed = {g: committed_offsets(await admin.list_consumer_group_offsets(g)) for g in groups}
    finally:
        await admin.close()
    topics = sorted({tp.topic for offsets in committed.values() for tp in offsets})
    _, ends = await _offsets(kafka, topics) if topics else ({}, {})
    found: list[PartitionLag] = []
    for group in groups:
        mine = {tp: ends[tp] for tp in committed[group] if tp in ends}
        found.extend(lags(group, committed[group], mine))
    return found


async def dead_letter_topics(kafka: KafkaConnection) -> list[tuple[str, int]]:
    """Every .dlq topic and the records it holds now (end minus start offsets)."""
    admin = await _admin(kafka)
    try:
        names = sorted(t for t in await admin.list_topics() if t.endswith(DLQ_SUFFIX))
    finally:
        await admin.close()
    if not names:
        return []
    starts, ends = await _offsets(kafka, names)
    held = dict.fromkeys(names, 0)
    for tp, end in ends.items():
        held[tp.topic] += end - starts.get(tp, 0)
    return sorted(held.items())


@dataclass(frozen=True)
class DeadLetterRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    handled: bool  # a replay sent it back (or passed it over: it names no source topic)

    @property
    def source(self) -> str | None:
        return self.headers.get(H_SOURCE_TOPIC)


async def _replayed_up_to(kafka: KafkaConnection, topic: str) -> dict[int, int]:
    admin = await _admin(kafka)
    try:
        offsets = committed_offsets(await admin.list_consumer_group_offsets(REPLAY_GROUP))
    finally:
        await admin.close()
    return {tp.partition: offset for tp, offset in offsets.items() if tp.topic == topic and offset is not None}


async def dead_letters(kafka: KafkaConnection, topic: str, limit: int = 20) -> list[DeadLetterRecord]:
    """The first `limit` records the topic holds, oldest first per partition."""
    starts, ends = await _offsets(kafka, [topic])
    replayed = await _replayed_up_to(kafka, topic)
    consumer = AIOKafkaConsumer(**kafka.aiokafka(), client_id="xinfang-ops", enable_auto_commit=False)
    await consumer.start()
    found: list[DeadLetterRecord] = []
    try:
        for tp in sorted(ends, key=lambda t: t.partition):
            if ends[tp] <= starts[tp] or len(found) >= limit:
                continue
            consumer.assign([tp])
            consumer.seek(tp, starts[tp])
            while len(found) < limit and await consumer.position(tp) < ends[tp]:
                for record in (await consumer.getmany(tp, timeout_ms=5000)).get(tp, []):
                    if record.offset >= ends[tp] or len(found) >= limit:
                        break
                    found.append(
                        DeadLetterRecord(
                            record.partition,
                            record.offset,
                            record.key,
                            record.value or b"",
                            {k: v.decode("utf-8", "replace") for k, v in record.headers or () if v is not None},
                            record.offset < replayed.get(record.partition, 0),
                        )
                    )
    finally:
        await consumer.stop()
    return found


@dataclass
class Replay:
    replayed: dict[str, int]  # per source topic
    unreplayable: list[tuple[int, int]]  # (partition, offset) of records that name no source topic
    already: int  # records a replay had sent before

    @property
    def total(self) -> int:
        return sum(self.replayed.values())


async def replay(kafka: KafkaConnection, topic: str, *, dry_run: bool = False, stall_s: float = STALL_S) -> Replay:
    """Every record the topic holds now and no replay has handled, back to its source topic (see the module).
    Raises TimeoutError when no record arrives for `stall_s` (a partition's leader away): what was sent by then
    stays sent, and its offsets committed."""
    if not topic.endswith(DLQ_SUFFIX):
        raise ValueError(f"{topic} is not a dead-letter topic (…{DLQ_SUFFIX})")
    producer = None
    if not dry_run:  # a dry run must not fence a real replay in progress
        producer = AIOKafkaProducer(
            **kafka.aiokafka(), client_id="xinfang-ops", transactional_id=f"{REPLAY_GROUP}:{topic}", acks="all"
        )
        await producer.start()
    try:
        if producer is not None:
            # Fence first: an earlier replay of this topic (running, or crashed mid-transaction) is stopped and its
            # open transaction ended before the offsets it committed are read, so nothing it sent is sent again.
            async with producer.transaction():
                pass
        return await _replay(kafka, topic, producer, stall_s)
    finally:
        if producer is not None:
            await producer.stop()


async def _replay(kafka: KafkaConnection, topic: str, producer: AIOKafkaProducer | None, stall_s: float) -> Replay:
    starts, ends = await _offsets(kafka, [topic])
    if not ends:
        raise ValueError(f"no topic {topic}")
    done = await _replayed_up_to(kafka, topic)
    result = Replay({}, [], sum(max(0, done.get(tp.partition, 0) - starts[tp]) for tp in ends))
    todo = {tp: end for tp, end in ends.items() if max(done.get(tp.partition, 0), starts[tp]) < end}
    if not todo:
        return result
    consumer = AIOKafkaConsumer(
        **kafka.aiokafka(),
        client_id="xinfang-ops",
        group_id=REPLAY_GROUP,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, max(done.get(tp.partition, 0), starts[tp]))
        loop = asyncio.get_running_loop()
        progress_at = loop.time()
        while todo:
            fetched = await consumer.getmany(*todo, timeout_ms=2000, max_records=500)
            batch = [r for tp, records in fetched.items() for r in records if r.offset < todo[tp]]
            if batch:
                progress_at = loop.time()
                await _send_back(topic, batch, producer, result)
            elif loop.time() - progress_at > stall_s:
                raise TimeoutError(f"no record of {topic} arrived for {stall_s:.0f} s; {result.total} replayed")
            for tp in list(todo):
                if await consumer.position(tp) >= todo[tp]:
                    del todo[tp]
    finally:
        await consumer.stop()
    return result


async def _send_back(
    topic: str, batch: list[ConsumerRecord[Any, Any]], producer: AIOKafkaProducer | None, result: Replay
) -> None:
    """One transaction: the batch's records to their sources, and the replay group's offsets past them. A record
    naming no source is passed over (listed in the result): it cannot be replayed, and would hold up the rest."""
    sends: list[tuple[str, ConsumerRecord[Any, Any]]] = []
    for record in batch:
        source = _header(record, H_SOURCE_TOPIC)
        if source:
            sends.append((source, record))
        else:
            result.unreplayable.append((record.partition, record.offset))
    if producer is not None:
        async with producer.transaction():
            for source, record in sends:
                kept = [(k, v) for k, v in record.headers or () if not k.startswith("x-dlq-")]
                kept.append((H_REPLAYED_FROM, f"{topic}/{record.partition}/{record.offset}".encode()))
                await producer.send(source, record.value, key=record.key, headers=kept)
            last = {TopicPartition(r.topic, r.partition): r.offset + 1 for r in batch}
            await producer.send_offsets_to_transaction(last, REPLAY_GROUP)
    for source, _ in sends:
        result.replayed[source] = result.replayed.get(source, 0) + 1


def _header(record: ConsumerRecord[Any, Any], name: str) -> str | None:
    value = dict(record.headers or ()).get(name)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) and value else None


# ---- PostgreSQL and the services -----------------------------------------------------------------------


async def outbox_backlogs(dsn: str, services: Sequence[str] = tuple(SERVICES)) -> list[tuple[str, int, float]]:
    """(service, rows not yet published, seconds the oldest has waited) for each service's schema."""
    conn = await asyncpg.connect(dsn)
    try:
        found = []
        for service in services:
            table = f"{quote_ident(service)}.outbox"
            row = await conn.fetchrow(
                f"SELECT count(*) AS n,"
                f" extract(epoch FROM now() - (SELECT created_at FROM {table} ORDER BY id LIMIT 1)) AS age"
                f" FROM {table}"
            )
            assert row is not None
            found.append((service, int(row["n"]), float(row["age"] or 0)))
        return found
    finally:
        await conn.close()


def service_url(service: str) -> str:
    return os.environ.get(f"XINFANG_{service.upper()}_URL", f"http://127.0.0.1:{SERVICES[service]}")


def _operator_headers() -> dict[str, str]:
    key = os.environ.get("OPERATOR_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


async def _each_service(path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5, headers=_operator_headers()) as client:

        async def one(service: str) -> Any:
            try:
                response = await client.get(service_url(service) + path)
                return response.json()
            except Exception as exc:
                return {"status": f"unreachable: {type(exc).__name__}"}

        answers = await asyncio.gather(*(one(s) for s in SERVICES))
    return dict(zip(SERVICES, answers, strict=True))


# ---- the command line ----------------------------------------------------------------------------------


def _say(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


async def _main(args: argparse.Namespace) -> int:
    kafka = KafkaConnection.from_env()
    if args.command == "lag":
        found = await group_lags(kafka, args.group or ())
        _say(
            _table(
                ["group", "topic", "partition", "committed", "end", "lag"],
                [
                    (p.group, p.topic, p.partition, "-" if p.committed is None else p.committed, p.end, p.lag)
                    for p in found
                ],
            )
        )
        return 0
    if args.command == "dlq" and args.dlq == "list":
        _say(_table(["topic", "records"], await dead_letter_topics(kafka)))
        return 0
    if args.command == "dlq" and args.dlq == "show":
        records = await dead_letters(kafka, args.topic, args.limit)
        rows = [
            (
                r.partition,
                r.offset,
                (r.key or b"").decode("utf-8", "replace"),
                r.source or "-",
                r.headers.get(H_CONSUMER_GROUP, "-"),
                r.headers.get(H_ERROR_TYPE, "-"),
                r.headers.get(H_ATTEMPTS, "-"),
                "yes" if r.handled else "no",
            )
            for r in records
        ]
        _say(_table(["partition", "offset", "key", "source", "group", "error", "attempts", "handled"], rows))
        for r in records:
            _say(
                f"\n{r.partition}/{r.offset} from {r.source}@{r.headers.get(H_SOURCE_OFFSET, '?')}: "
                f"{r.headers.get(H_ERROR, '')}"
            )
            if args.values:  # the record itself can hold personal data: only when asked
                _say(r.value.decode("utf-8", "replace"))
        return 0
    if args.command == "dlq" and args.dlq == "replay":
        done = await replay(kafka, args.topic, dry_run=args.dry_run)
        verb = "would replay" if args.dry_run else "replayed"
        for source, n in sorted(done.replayed.items()):
            _say(f"{verb} {n} to {source}")
        _say(
            f"{verb} {done.total}; {done.already} replayed before; {len(done.unreplayable)} name no source topic"
            + "".join(f"\n  unreplayable: {p}/{o}" for p, o in done.unreplayable)
        )
        return 0
    if args.command == "outbox":
        dsn = os.environ.get("DATABASE_URL")
        if not dsn:
            sys.stderr.write("DATABASE_URL is not set\n")
            return 2
        backlogs = [(s, n, f"{age:.1f}") for s, n, age in await outbox_backlogs(dsn)]
        _say(_table(["service", "rows", "oldest (s)"], backlogs))
        return 0
    if args.command == "halts":
        answers = await _each_service("/v1/admin/consumers")
        halts = [
            (service, consumer, state)
            for service, states in answers.items()
            for consumer, state in (states.items() if isinstance(states, dict) else [("-", str(states))])
        ]
        _say(_table(["service", "consumer", "state"], halts))
        return 0
    if args.command == "resume":
        async with httpx.AsyncClient(timeout=10, headers=_operator_headers() | {"X-Operator": args.operator}) as c:
            response = await c.post(f"{service_url(args.service)}/v1/admin/consumers/{args.consumer}/resume")
        _say(response.status_code, response.text)
        return 0 if response.is_success else 1
    if args.command == "health":
        answers = await _each_service("/health")
        for service, body in answers.items():
            checks = body.get("checks", {}) if isinstance(body, dict) else {}
            bad = {k: v for k, v in checks.items() if v != "ok"}
            _say(f"{service}: {body.get('status')}" + "".join(f"\n  {k}: {v}" for k, v in bad.items()))
        return 0 if all(b.get("status") == "ok" for b in answers.values()) else 1
    raise AssertionError(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xinfang-ops", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    lag = sub.add_parser("lag", help="consumer lag per group and partition")
    lag.add_argument("--group", action="append", help="this group only (repeatable); default: every xinfang-… group")
    dlq = sub.add_parser("dlq", help="dead-letter topics").add_subparsers(dest="dlq", required=True)
    dlq.add_parser("list", help="every .dlq topic and its records")
    show = dlq.add_parser("show", help="a dead-letter topic's records")
    show.add_argument("topic")
    show.add_argument("--limit", type=int, default=20)
    show.add_argument("--values", action="store_true", help="print the records too (they may hold personal data)")
    again = dlq.add_parser("replay", help="back to the source topics, once")
    again.add_argument("topic")
    again.add_argument("--dry-run", action="store_true", help="count what would be replayed; send nothing")
    sub.add_parser("outbox", help="each service's outbox backlog")
    sub.add_parser("halts", help="every service's consumers and their halts")
    resume = sub.add_parser("resume", help="end a consumer's halt (every instance of the service)")
    resume.add_argument("service", choices=sorted(SERVICES))
    resume.add_argument("consumer")
    resume.add_argument("--operator", required=True, help="who resumes it (recorded)")
    sub.add_parser("health", help="every service's health")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(asyncio.run(_main(parser().parse_args(argv))))


if __name__ == "__main__":
    main()
