"""The systems under test: a fresh database and a service (intake, routing) as a real, separate process; and
the baselines (an HTTP server, a Kafka consumer → producer), separate processes too."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.protocol.admin import DeleteGroupsRequest
from aiokafka.structs import OffsetAndMetadata

from xinfang_shared.contracts.topics import (
    CHANNEL_SUBMITTED,
    CONTRACT_TOPICS,
    DEADLINES_EVENTS,
    MATTERS_ROUTED,
    MATTERS_STATUS,
)
from xinfang_shared.settings import LOCAL_DEV_SECRET

from .common import NAMESPACE, ROOT, topic
from .kafka_baseline import consumer_args

INTAKE_BIN = ROOT / ".venv" / "bin" / "xinfang-intake"
ROUTING_BIN = ROOT / ".venv" / "bin" / "xinfang-routing"
PYTHON = ROOT / ".venv" / "bin" / "python"
# Everything intake subscribes to (app.py): its consumer group starts at these topics' current ends.
INTAKE_TOPICS = [topic(t.name) for t in CHANNEL_SUBMITTED.values()] + [
    topic(MATTERS_STATUS.name),
    topic(MATTERS_ROUTED.name),
    topic(DEADLINES_EVENTS.name),
]
# Everything routing subscribes to (the registry's consumers: registrations, v1 drained, and every feedback topic).
ROUTING_TOPICS = [topic(t.name) for t in CONTRACT_TOPICS if "routing" in t.consumers]


# ----------------------------------------------------------------------------------------------- database


@dataclass(frozen=True)
class BenchDatabase:
    admin_dsn: str
    name: str

    @property
    def dsn(self) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path=f"/{self.name}"))

    async def create(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await conn.close()

    async def drop(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def matter_ids(self, external_ids: list[str]) -> dict[str, str]:
        """external_id → matter_id of what the intake under test registered."""
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                "SELECT external_id, matter_id::text AS matter_id FROM intake.matters WHERE external_id = ANY($1)",
                external_ids,
            )
        finally:
            await conn.close()
        return {r["external_id"]: r["matter_id"] for r in rows}

    async def routed_at(self, matter_ids: list[str]) -> dict[str, datetime]:
        """matter_id → transferred_at (= routed_at of its matters.routed.v1 event) of what the routing under
        test routed."""
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                "SELECT matter_id::text AS matter_id, transferred_at FROM routing.matters"
                " WHERE matter_id = ANY($1::uuid[]) AND transferred_at IS NOT NULL",
                matter_ids,
            )
        finally:
            await conn.close()
        return {r["matter_id"]: r["transferred_at"] for r in rows}


# ------------------------------------------------------------------------------------------- consumer group


async def start_group_at_end(bootstrap: str, group_id: str, topics: list[str]) -> int:
    """Commit the current end offsets of `topics` for the (new) group, so the intake under test skips what
    earlier runs and the running stack left there instead of registering it all again. Returns how many
    records it skips."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    partitions = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in ends.items()})
        begins = await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()
    return sum(ends[tp] - begins[tp] for tp in partitions)


async def wait_group_stable(
    bootstrap: str,
    group_id: str,
    topic: str,
    *,
    members_with_topic: int = 1,
    steady_s: float = 2.0,
    timeout_s: float = 60.0,
) -> float:
    """Wait until the group is Stable with partitions of `topic` assigned to (at least) `members_with_topic`
    members and its members unchanged for `steady_s` (a service's subscribers join one by one, each join a
    rebalance); returns the seconds waited."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    started = time.perf_counter()
    members: frozenset[str] = frozenset()
    steady_since = started
    try:
        while time.perf_counter() - started < timeout_s:
            now_members, split = await _group_split(admin, group_id, topic)
            if split is None or len(split) < members_with_topic or now_members != members:
                members, steady_since = now_members, time.perf_counter()
            elif time.perf_counter() - steady_since >= steady_s:
                return time.perf_counter() - started
            await asyncio.sleep(0.25)
    finally:
        await admin.close()
    raise TimeoutError(
        f"consumer group {group_id} not steady with {topic} assigned to {members_with_topic} member(s)"
        f" after {timeout_s:.0f} s"
    )


async def partition_split(bootstrap: str, group_id: str, topic: str) -> list[int]:
    """How many partitions of `topic` each member of the group holds (members holding none left out)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return (await _group_split(admin, group_id, topic))[1] or []
    finally:
        await admin.close()


async def _group_split(
    admin: AIOKafkaAdminClient, group_id: str, topic: str
) -> tuple[frozenset[str], list[int] | None]:
    """The group's member ids and, when it is Stable, the number of `topic` partitions per member holding any."""
    (response,) = await admin.describe_consumer_groups([group_id])
    (group,) = response.to_object()["groups"]
    member_ids = frozenset(m["member_id"] for m in group["members"])
    if group["state"] != "Stable":
        return member_ids, None
    split = []
    for member in group["members"]:
        raw = member["member_assignment"]
        if not raw:
            continue
        assignment = ConsumerProtocolMemberAssignment.decode(raw)
        held = sum(len(partitions) for name, partitions in assignment.assignment if name == topic)
        if held:
            split.append(held)
    return member_ids, sorted(split, reverse=True)


async def delete_group(bootstrap: str, group_id: str) -> None:
    """Remove the bench's consumer group (aiokafka's admin client has no public call for it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        node = await admin.find_coordinator(group_id)
        await admin._send_request(DeleteGroupsRequest([group_id]), node)
    finally:
        await admin.close()


# ----------------------------------------------------------------------------------------------- services


def _level(line: str) -> str:
    if line.startswith("{"):
        with contextlib.suppress(ValueError):
            return str(orjson.loads(line).get("level", "?")).lower()
    for level in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"):
        if level in line[:60]:
            return level.lower()
    return "traceback" if line.startswith(("Traceback", "  File", "    ")) else "other"


def _gist(line: str) -> str:
    """A log line without what varies from one occurrence to the next: its message and error type."""
    with contextlib.suppress(ValueError, AttributeError):
        entry = orjson.loads(line)
        gist = str(entry.get("msg") or entry.get("message") or "?")
        return f"{gist} ({entry['error_type']})" if entry.get("error_type") else gist
    return line[:120]


class ServiceProcess:
    """`xinfang-<service> migrate`, then `serve`, with the bench's own database, port and consumer group
    (`env` adds the service's own settings, e.g. its API key)."""

    def __init__(
        self,
        *,
        name: str,
        binary: Path,
        dsn: str,
        port: int,
        group_id: str,
        bootstrap: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        serve_command: list[str] | None = None,
    ) -> None:
        self.name = name
        self.binary = binary
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.serve_command = serve_command or [str(binary), "serve"]
        self.env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "HTTP_PORT": str(port),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_GROUP_ID": group_id,
            "TOPIC_PREFIX": NAMESPACE,
            "LOG_LEVEL": "WARNING",
            "ENVIRONMENT": "local",
            # The key the bench seals the registrations it produces with (tests.factories.registration).
            "PERSONAL_DATA_TRANSPORT_KEY": LOCAL_DEV_SECRET,
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._terminated = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def migrate(self) -> None:
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                [str(self.binary), "migrate"], env=self.env, stdout=log, stderr=subprocess.STDOUT, check=False
            )
        if result.returncode != 0:
            raise RuntimeError(f"{self.binary.name} migrate failed ({result.returncode}):\n{self.log_tail()}")

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        """`serve`, with `extra_env` added to its environment for this start only (e.g. XINFANG_CRASH_AT)."""
        log = self.log_path.open("ab")
        self._terminated = False
        self.proc = subprocess.Popen(
            self.serve_command,
            env={**self.env, **extra_env} if extra_env else self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            start_new_session=True,
        )
        log.close()

    async def wait_healthy(self, timeout_s: float = 60.0) -> float:
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=self.base_url, timeout=3.0) as client:
            while time.perf_counter() - started < timeout_s:
                self.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/health")).status_code == 200:
                        return time.perf_counter() - started
                await asyncio.sleep(0.25)
        raise TimeoutError(f"{self.name} not healthy after {timeout_s:.0f} s:\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def terminate(self) -> None:
        """SIGTERM (graceful shutdown), once, without waiting."""
        if self.proc is not None and self.proc.poll() is None and not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 25.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log_summary(self, shown: int = 8) -> list[str]:
        """How many lines the service logged, by level, and its errors (the first `shown`)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ["(no log)"]
        levels: Counter[str] = Counter()
        warnings: Counter[str] = Counter()
        errors: list[str] = []
        for line in lines:
            level = _level(line)
            levels[level] += 1
            if level in ("error", "critical", "traceback"):
                errors.append(line[:400])
            elif level == "warning":
                warnings[_gist(line)] += 1
        if not lines:
            return [f"{self.name} log {self.log_path}: empty"]
        plain = sum(1 for line in lines if not line.startswith("{"))
        by_level = ", ".join(f"{k}: {v}" for k, v in levels.most_common())
        common = "; ".join(f"{n}× {gist}" for gist, n in warnings.most_common(4))
        return [
            f"{self.name} log {self.log_path}: {len(lines)} lines ({by_level}; {plain} not JSON)"
            + (f"; warnings: {common}" if common else ""),
            *errors[:shown],
        ]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def stop_all(processes: list[ServiceProcess]) -> list[int | None]:
    """Stop several at once (each shuts down gracefully in parallel); their exit codes."""
    for process in processes:
        process.terminate()
    return [process.stop() for process in processes]


class IntakeProcess(ServiceProcess):
    """xinfang-intake (optionally under cProfile), with the bench's channel API key."""

    def __init__(
        self,
        *,
        dsn: str,
        port: int,
        group_id: str,
        api_key: str,
        bootstrap: str,
        log_path: Path,
        profile_path: Path | None = None,
    ) -> None:
        self.profile_path = profile_path
        profiled = [str(PYTHON), "-m", "tests.bench.profiled_intake", str(profile_path)] if profile_path else None
        super().__init__(
            name="intake",
            binary=INTAKE_BIN,
            dsn=dsn,
            port=port,
            group_id=group_id,
            bootstrap=bootstrap,
            log_path=log_path,
            env={"CHANNEL_API_KEY": api_key},
            serve_command=profiled,
        )


class RoutingProcess(ServiceProcess):
    """xinfang-routing; instances given the same group share the partitions of what it consumes."""

    def __init__(
        self, *, dsn: str, port: int, group_id: str, operator_key: str, bootstrap: str, log_path: Path
    ) -> None:
        super().__init__(
            name=f"routing :{port}",
            binary=ROUTING_BIN,
            dsn=dsn,
            port=port,
            group_id=group_id,
            bootstrap=bootstrap,
            log_path=log_path,
            env={"OPERATOR_API_KEY": operator_key},
        )


class HttpBaselineProcess(ServiceProcess):
    """The HTTP baseline (http_baseline.py): uvicorn with the services' settings, a fixed 202 for everything."""

    def __init__(self, *, port: int, log_path: Path) -> None:
        super().__init__(
            name="HTTP baseline",
            binary=PYTHON,
            dsn="",
            port=port,
            group_id="",
            bootstrap="",
            log_path=log_path,
            serve_command=[str(PYTHON), "-m", "tests.bench.http_baseline", str(port)],
        )


class KafkaBaselineProcess(ServiceProcess):
    """The Kafka baseline (kafka_baseline.py): consumes `source` like a service, produces to `target` like
    the outbox relay; `consumer` holds the consumer options of the service it stands in for."""

    def __init__(
        self,
        *,
        bootstrap: str,
        source: str,
        target: str,
        group_id: str,
        consumer: dict[str, int],
        log_path: Path,
    ) -> None:
        command = [str(PYTHON), "-m", "tests.bench.kafka_baseline", "--bootstrap", bootstrap]
        command += ["--source", source, "--target", target, "--group", group_id, *consumer_args(consumer)]
        super().__init__(
            name="Kafka baseline",
            binary=PYTHON,
            dsn="",
            port=0,
            group_id=group_id,
            bootstrap=bootstrap,
            log_path=log_path,
            serve_command=command,
        )
