"""End to end: the whole cluster (intake → routing → supervision → notify → stats) as separate processes on the
real broker and one fresh database, with the SMTP server and the SMS gateway stand-ins, in the bench's topic
namespace. A matter counts as done once it is registered (intake), routed (routing), has its deadlines
(supervision), its receipt was accepted by the SMTP server or the gateway (notify) and stats counted it.

Phases, each after the last has drained:
1. saturation (`seconds`): a load generator keeps `in_flight` matters offered but not done (a closed loop, so
   the backlog stays bounded and the rate is what the cluster sustains, not what Kafka can buffer). Matters of
   all four channels, most on the channel topics, one in five over HTTP. The sustained rate is the done count's
   slope over the phase after its first fifth (warm-up); CPU per matter per process group over the same window.
2. half load (`seconds` / 2, open loop at half the sustained rate): intake→routed (routing's transferred_at minus
   intake's registered_at) and intake→receipt (notify's sent_at minus registered_at), p50/p95/p99 over every
   matter of the phase (exact order statistics of all samples; nothing averaged).
3. burst (`burst` matters produced at once on the channel topics): the time until every matter is done and every
   consumer group's lag is zero.
4. baseline: the same submissions' bytes produced to one topic and consumed back with plain aiokafka.

A timeline (offered, done per stage, total consumer lag, once a second) is saved as JSON and drawn as a PNG."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from tests import factories
from tests.integration.processes import free_port
from xinfang_shared.contracts.acls import Acl
from xinfang_shared.contracts.topics import BY_NAME, CHANNEL_SUBMITTED
from xinfang_shared.kafka_admin import apply_security, ensure_topics, remove_acls
from xinfang_shared.kafka_auth import KafkaConnection

from .common import NAMESPACE, ROOT, CpuMeter, CpuUse, Figure, cpu_between, topic
from .notify_bench import SENDERS, listening, standin
from .service import ServiceProcess, start_group_at_end, stop_all

SERVICES = ("intake", "routing", "supervision", "notify", "stats")
CHANNELS = ("letter", "visit", "online", "mailbox")
HTTP_SHARE = 0.2  # of the matters offered over HTTP; the rest on the channel topics
TARGET = 1_000.0  # matters/s end to end (issue 12)
STAGES = ("registered", "routed", "deadlines", "receipt", "counted")
# A repeat (the same petitioner and facts again: rare in generated data, but possible) is routed nowhere, has no
# deadlines and gets a `repeat` notice instead of a receipt: it counts as through those stages.
STAGE_COUNTS = """
WITH repeats AS (SELECT count(*) AS n FROM intake.matters WHERE duplicate_of IS NOT NULL)
SELECT (SELECT count(*) FROM intake.matters) AS registered,
       (SELECT count(*) FROM routing.matters WHERE office IS NOT NULL) + (SELECT n FROM repeats) AS routed,
       (SELECT count(DISTINCT matter_id) FROM supervision.deadlines) + (SELECT n FROM repeats) AS deadlines,
       (SELECT count(*) FROM notify.notifications
         WHERE notice IN ('receipt', 'repeat') AND status IN ('sent', 'delivered')) AS receipt,
       (SELECT count(*) FROM stats.facts WHERE registered_at IS NOT NULL) AS counted
"""
# Every matter, one row, once it went through every stage (checked at the end, exactly, per matter).
DONE_EXACTLY = """
SELECT count(*) FROM intake.matters m
  JOIN stats.facts f ON f.matter_id = m.matter_id AND f.registered_at IS NOT NULL
 WHERE (m.duplicate_of IS NOT NULL OR EXISTS (
          SELECT 1 FROM routing.matters r WHERE r.matter_id = m.matter_id AND r.office IS NOT NULL))
   AND (m.duplicate_of IS NOT NULL OR EXISTS (SELECT 1 FROM supervision.deadlines d WHERE d.matter_id = m.matter_id))
   AND EXISTS (SELECT 1 FROM notify.notifications n WHERE n.matter_id = m.matter_id
                AND n.notice IN ('receipt', 'repeat') AND n.status IN ('sent', 'delivered'))
"""
LATENCIES = """
SELECT extract(epoch FROM r.transferred_at - m.registered_at) AS routed_s,
       extract(epoch FROM n.sent_at - m.registered_at) AS receipt_s
  FROM intake.matters m
  JOIN routing.matters r ON r.matter_id = m.matter_id
  LEFT JOIN notify.notifications n ON n.matter_id = m.matter_id AND n.notice = 'receipt'
 WHERE m.external_id = ANY($1::text[])
"""


@dataclass(frozen=True)
class Options:
    seconds: float = 300.0
    in_flight: int = 3_000
    burst: int = 50_000
    instances: dict[str, int] = field(default_factory=dict)
    seed: int = 20251202


def parse_instances(text: str) -> dict[str, int]:
    """`routing=2,notify=2` → {"routing": 2, "notify": 2}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, count = part.partition("=")
        if name not in SERVICES or not count.isdigit() or int(count) < 1:
            raise ValueError(f"--e2e-instances: {part!r} is not <service>=<n> (services: {', '.join(SERVICES)})")
        out[name] = int(count)
    return out


def submission(rng: random.Random, i: int) -> dict[str, Any]:
    """A valid submission of channel `CHANNELS[i % 4]`, its own petitioner (no repeats), half with an e-mail
    (receipt by e-mail) and half without (by SMS)."""
    channel = CHANNELS[i % len(CHANNELS)]
    body = factories.submission(rng, channel=channel)
    body["petitioner"]["id_number"] = factories.id_number(rng)
    if i % 2:
        body["petitioner"]["email"] = f"p{i}-{secrets.token_hex(3)}@example.org"
    if channel == "visit":
        body["visit"] = {"place": "chengdu"}
    if channel == "mailbox":
        body["mailbox"] = "governor" if i % 8 == 3 else "secretary"
    return body


# ------------------------------------------------------------------------------------------------ the cluster


def consumed_topics(service: str) -> list[str]:
    """The namespace's topics `service` consumes (the registry's consumers)."""
    return [topic(t.name) for t in BY_NAME.values() if service in t.consumers]


@dataclass(frozen=True)
class Principals:
    """The SCRAM listener the services connect to, each as its own principal (service-<service>), and their
    passwords (the namespace's ACLs applied: acls(NAMESPACE))."""

    bootstrap: str
    passwords: dict[str, str]

    def env(self, service: str) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": f"service-{service}",
            "KAFKA_SASL_PASSWORD": self.passwords[f"service-{service}"],
        }


@dataclass
class Cluster:
    dsn: str
    bootstrap: str
    channel_key: str
    processes: list[ServiceProcess]
    standins: list[Any]
    groups: dict[str, str]  # service → consumer group
    home: Path  # logs, and what the SMTP server (mail/) and the gateway (sms/) kept

    @property
    def intake(self) -> ServiceProcess:
        return next(p for p in self.processes if p.name.startswith("intake"))

    def check_alive(self) -> None:
        for process in self.processes:
            process.check_alive()

    def pids(self) -> dict[int, str]:
        """The processes of the cluster by CPU group: each service's instances, and the two stand-ins."""
        named = {p.pid: p.name.split(" ")[0] for p in self.processes if p.pid}
        named |= dict(
            zip((p.pid for p in self.standins), ("SMTP server (stand-in)", "SMS gateway (stand-in)"), strict=True)
        )
        return named


async def start_cluster(
    dsn: str,
    bootstrap: str,
    workdir: Path,
    opts: Options,
    *,
    services_bootstrap: str | None = None,
    principals: Principals | None = None,
) -> Cluster:
    """The cluster on `bootstrap`; its services alone on `services_bootstrap` when given (the same broker
    through a proxy, for the chaos run's network faults), the load, Watch and checks staying on `bootstrap`. With
    `principals`, each service connects as its own principal on their SCRAM listener (through `services_bootstrap`
    when given), as `make up` runs them."""
    run = uuid.uuid4().hex[:8]
    home = workdir / f"e2e-{run}"
    home.mkdir(parents=True, exist_ok=True)
    mail_port, sms_port, notify_port = free_port(), free_port(), free_port()
    standins = [
        standin("mail_sink.py", mail_port, home / "mail", home / "mail.log"),
        standin(
            "sms_gateway.py",
            sms_port,
            home / "sms",
            home / "sms.log",
            "--receipts-url",
            f"http://127.0.0.1:{notify_port}/v1/sms/receipts",
        ),
    ]
    for port in (mail_port, sms_port):
        await listening(port)
    channel_key = secrets.token_urlsafe(16)
    extra: dict[str, dict[str, str]] = {
        "intake": {"CHANNEL_API_KEY": channel_key},
        "notify": {
            "SMTP_URL": f"smtp://127.0.0.1:{mail_port}",
            "SMS_GATEWAY_URL": f"http://127.0.0.1:{sms_port}",
            "SMS_ACCESS_KEY": "bench",
            "SMS_RECEIPT_TOKEN": "bench",
            "QUIET_HOURS_START": "00:00",  # equal: no quiet hours (receipts are timed)
            "QUIET_HOURS_END": "00:00",
            "SENDERS": str(SENDERS),
            "EMAIL_PER_S": "100000",
            "SMS_PER_S": "100000",
        },
    }
    # Named as the services' ACLs allow (a service may use the groups xinfang-<service>...).
    groups = {name: f"{NAMESPACE}xinfang-{name}-e2e-{run}" for name in SERVICES}
    processes: list[ServiceProcess] = []
    for name in SERVICES:
        for k in range(opts.instances.get(name, 1)):
            port = notify_port if (name, k) == ("notify", 0) else free_port()
            processes.append(
                ServiceProcess(
                    name=f"{name} :{port}",
                    binary=ROOT / f".venv/bin/xinfang-{name}",
                    dsn=dsn,
                    port=port,
                    group_id=groups[name],
                    bootstrap=services_bootstrap or bootstrap,
                    log_path=home / f"{name}-{k + 1}.log",
                    env=(extra.get(name) or {})
                    | (principals.env(name) if principals else {})
                    | ({"KAFKA_BOOTSTRAP_SERVERS": services_bootstrap} if services_bootstrap else {}),
                )
            )
    for process in {p.binary: p for p in processes}.values():
        await asyncio.to_thread(process.migrate)
    # In a full `make bench` the namespace holds what the earlier phases published (the Kafka phase's
    # submissions, the routing phase's registrations, ...): the cluster's groups start at the topics' ends, so
    # they read this run's matters only.
    for name, group in groups.items():
        await start_group_at_end(bootstrap, group, consumed_topics(name))
    for process in processes:
        process.start()
    cluster = Cluster(dsn, bootstrap, channel_key, processes, standins, groups, home)
    try:
        await asyncio.gather(*(p.wait_healthy(120) for p in processes))
        await asyncio.sleep(5)  # the consumer groups settle
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def stop_cluster(cluster: Cluster) -> None:
    stop_all(cluster.processes)
    for proc in cluster.standins:
        proc.terminate()
        with contextlib.suppress(Exception):
            proc.wait(10)


# ------------------------------------------------------------------------------------------- watching it


@dataclass
class Sample:
    t: float  # seconds since the bench's start
    offered: int
    stages: dict[str, int]
    lag: int

    @property
    def done(self) -> int:
        return min(self.stages.values())


# The database's own counters (pg_stat_database: flushed by each backend within a second or so).
DATABASE_WORK = """
SELECT xact_commit AS commits, tup_inserted + tup_updated + tup_deleted AS rows, tup_fetched AS fetched
  FROM pg_stat_database WHERE datname = current_database()
"""


# Each statement's totals in the bench's database (pg_stat_statements, when `make up`'s PostgreSQL preloads it;
# its view is in the stack's database, and shows every database's): their differences over the saturation window
# say which statements the matters cost.
STATEMENTS = """
SELECT queryid, calls, rows, total_exec_time AS ms, query
  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)
"""
# The watcher's own statements (its counts), named apart in the statements' table.
WATCHER_STATEMENTS = ("WITH repeats AS", "SELECT xact_commit", "SELECT schemaname", "SELECT pg_backend_pid")


@dataclass(frozen=True)
class Statement:
    calls: int
    rows: int
    ms: float
    query: str


async def statements(admin_dsn: str | None, database: str) -> dict[int, Statement] | str:
    """pg_stat_statements' totals by query id in `database`, or why they cannot be read."""
    if admin_dsn is None:
        return "pg_stat_statements not read (no administrator's database given)"
    try:
        conn = await asyncpg.connect(admin_dsn)
        try:
            rows = await conn.fetch(STATEMENTS, database)
        finally:
            await conn.close()
    except asyncpg.PostgresError as exc:  # not installed, or not preloaded
        return f"pg_stat_statements unavailable ({type(exc).__name__}: {exc}"[:200] + ")"
    return {int(r["queryid"]): Statement(int(r["calls"]), int(r["rows"]), float(r["ms"]), r["query"]) for r in rows}


def statements_per(before: dict[int, Statement], after: dict[int, Statement], n: int, top: int = 15) -> list[str]:
    """Lines: every statement's calls, rows and execution ms per matter over a window, the costliest first, and
    the totals of the services' statements (the watcher's apart)."""
    if not n:
        return []
    lines: list[str] = []
    services = [0.0, 0.0, 0.0]  # calls, rows, ms per matter
    watcher = [0.0, 0.0, 0.0]
    deltas = []
    for qid, end in after.items():
        start = before.get(qid, Statement(0, 0, 0.0, end.query))
        calls, rows, ms = (end.calls - start.calls) / n, (end.rows - start.rows) / n, (end.ms - start.ms) / n
        if calls <= 0:
            continue
        mine = end.query.lstrip().startswith(WATCHER_STATEMENTS)
        totals = watcher if mine else services
        totals[0], totals[1], totals[2] = totals[0] + calls, totals[1] + rows, totals[2] + ms
        deltas.append((ms, calls, rows, mine, " ".join(end.query.split())))
    lines.append(
        f"statements per matter: the services' {services[0]:.1f} statements, {services[1]:.1f} rows,"
        f" {services[2]:.3f} ms executing; the bench watcher's {watcher[0]:.2f}, {watcher[1]:.0f} rows,"
        f" {watcher[2]:.3f} ms"
    )
    for ms, calls, rows, mine, query in sorted(deltas, reverse=True)[:top]:
        who = "watcher " if mine else ""
        lines.append(f"  {ms:7.3f} ms {calls:6.2f} calls {rows:7.1f} rows  {who}{query[:110]}")
    # Each call outside a transaction block is a commit of its own: the most called say where commits go.
    lines.append("the most called, per matter:")
    for ms, calls, rows, mine, query in sorted(deltas, key=lambda d: -d[1])[: top // 2]:
        who = "watcher " if mine else ""
        lines.append(f"  {calls:6.2f} calls {ms:7.3f} ms {rows:7.1f} rows  {who}{query[:110]}")
    return lines


# Rows written per table (pg_stat_user_tables), to say where the database's writes go.
TABLE_WRITES = """
SELECT schemaname || '.' || relname AS name, n_tup_ins + n_tup_upd + n_tup_del AS rows FROM pg_stat_user_tables
"""


@dataclass(frozen=True)
class Work:
    commits: int
    rows_written: int
    rows_fetched: int
    records_produced: int  # on every topic of the namespace the services read
    records_consumed: int  # summed over the services' consumer groups (committed offsets)
    tables: dict[str, int] = field(default_factory=dict)  # rows written per table

    def per(self, earlier: Work, n: int) -> dict[str, float]:
        counters = ("commits", "rows_written", "rows_fetched", "records_produced", "records_consumed")
        return {k: (getattr(self, k) - getattr(earlier, k)) / n for k in counters} if n else {}

    def tables_per(self, earlier: Work, n: int, top: int = 8) -> str:
        """The tables most written to, rows per matter."""
        writes = {t: (rows - earlier.tables.get(t, 0)) / n for t, rows in self.tables.items()} if n else {}
        ranked = sorted(writes.items(), key=lambda kv: -kv[1])[:top]
        return ", ".join(f"{t} {w:.1f}" for t, w in ranked if w > 0)


# How often the watcher counts the stages. Each count scans the stage tables whole, so it costs PostgreSQL in
# proportion to what is stored: counting every second was a visible part of "PostgreSQL" per matter (and most of
# the rows fetched). The closed loop only needs `done` to within a few seconds of 3,000 matters in flight; the
# window's ends are counted exactly when they are reached.
SAMPLE_EVERY_S = 5.0
RATE_WINDOW_S = 15.0  # the chart's done/s: the slope over this trailing window, not between two samples


class Watch:
    """Every SAMPLE_EVERY_S: what was offered, how many are through each stage, and the consumer groups' total
    lag. It counts on its own connection, whose PostgreSQL backend (`backend_pid`) is charged to the bench."""

    def __init__(self, cluster: Cluster, pool: asyncpg.Pool) -> None:
        self.cluster, self.pool = cluster, pool
        self.conn: asyncpg.Connection | None = None
        self.backend_pid = 0
        # One connection, two callers (the sampling task and a drain's loop): one statement at a time.
        self.lock = asyncio.Lock()
        self.t0 = time.perf_counter()
        self.offered = 0
        self.samples: list[Sample] = []
        self.by_service: dict[str, int] = {}  # the lag of each service's group, at the last sample
        self.admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        self.ends = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap, group_id=None, enable_auto_commit=False)
        self._topics = {group: consumed_topics(service) for service, group in cluster.groups.items()}

    async def start(self) -> None:
        await self._connect()
        await self.admin.start()
        await self.ends.start()

    async def _connect(self) -> asyncpg.Connection:
        self.conn = await asyncpg.connect(self.cluster.dsn)
        self.backend_pid = int(await self.conn.fetchval("SELECT pg_backend_pid()"))
        return self.conn

    async def _fetch(self, query: str) -> list[asyncpg.Record]:
        """`query`'s rows on the watcher's connection, one statement at a time; a connection PostgreSQL lost (a
        crash and restart, as `make chaos` injects) is opened again, and the statement tried once more."""
        async with self.lock:
            for attempt in (1, 2):
                conn = self.conn if self.conn is not None and not self.conn.is_closed() else await self._connect()
                try:
                    rows: list[asyncpg.Record] = await conn.fetch(query)
                    return rows
                except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
                    with contextlib.suppress(Exception):
                        await conn.close()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    async def stop(self) -> None:
        await self.admin.close()
        await self.ends.stop()
        if self.conn is not None:
            await self.conn.close()

    async def lag(self) -> int:
        total = 0
        wanted = [
            TopicPartition(name, p)
            for names in self._topics.values()
            for name in names
            for p in self.ends.partitions_for_topic(name) or ()
        ]
        ends = await self.ends.end_offsets(list(set(wanted))) if wanted else {}
        by_group: dict[str, int] = {}
        for group, names in self._topics.items():
            committed = await self.admin.list_consumer_group_offsets(group)
            behind = 0
            for tp, end in ends.items():
                if tp.topic in names:
                    meta = committed.get(tp)
                    behind += end - (meta.offset if meta is not None and meta.offset >= 0 else 0)
            by_group[group.split("-")[2]] = behind
            total += behind
        self.by_service = by_group
        return total

    async def work(self) -> Work:
        """Counters of the work done so far: the database's transactions and rows, the records on the
        namespace's topics, and those each group has consumed (differences over a window: work per matter)."""
        (db,) = await self._fetch(DATABASE_WORK)
        names = {name for names in self._topics.values() for name in names}
        parts = [TopicPartition(n, p) for n in names for p in self.ends.partitions_for_topic(n) or ()]
        ends = await self.ends.end_offsets(parts) if parts else {}
        consumed = 0
        for group, wanted in self._topics.items():
            committed = await self.admin.list_consumer_group_offsets(group)
            consumed += sum(m.offset for tp, m in committed.items() if tp.topic in wanted and m.offset > 0)
        tables = {r["name"]: int(r["rows"]) for r in await self._fetch(TABLE_WRITES)}
        return Work(int(db["commits"]), int(db["rows"]), int(db["fetched"]), sum(ends.values()), consumed, tables)

    async def sample(self) -> Sample:
        """An exact count of every stage now (a whole scan of the stage tables: see SAMPLE_EVERY_S)."""
        (row,) = await self._fetch(STAGE_COUNTS)
        try:
            lag = await self.lag()
        except Exception:
            lag = -1
        s = Sample(time.perf_counter() - self.t0, self.offered, {k: int(row[k]) for k in STAGES}, lag)
        self.samples.append(s)
        return s

    async def run(self, stop: asyncio.Event) -> None:
        await self.ends._client.force_metadata_update()  # partitions of the namespace's topics
        while not stop.is_set():
            self.cluster.check_alive()
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)

    async def until_drained(self, what: str, timeout_s: float, progress: Callable[[str], None]) -> float:
        """Seconds until every offered matter is done and the lag is zero."""
        began = time.perf_counter()
        shown = 0.0
        while True:
            self.cluster.check_alive()
            s = await self.sample()
            if s.done >= self.offered and s.lag == 0:
                return time.perf_counter() - began
            if time.perf_counter() - began > timeout_s:
                raise TimeoutError(f"{what}: not drained in {timeout_s:.0f} s: {s}")
            if time.perf_counter() - shown > 10:
                shown = time.perf_counter()
                progress(
                    f"{what}: {s.done:,}/{self.offered:,} done, lag {s.lag:,} {self.by_service}, stages {s.stages}"
                )
            await asyncio.sleep(2.0)  # the drain time to within 2 s, at a count every 2 s (not every second)


# ------------------------------------------------------------------------------------------------ the load


class Load:
    """Offers submissions: on their channel's topic (aiokafka) or over HTTP, as the channel systems do."""

    def __init__(self, cluster: Cluster, watch: Watch, seed: int) -> None:
        self.cluster, self.watch = cluster, watch
        self.rng = random.Random(seed)
        self.i = 0
        self.producer = AIOKafkaProducer(
            bootstrap_servers=cluster.bootstrap, acks="all", linger_ms=5, max_batch_size=256_000
        )
        self.http = httpx.AsyncClient(
            base_url=cluster.intake.base_url,
            headers={"Authorization": f"Bearer {cluster.channel_key}", "Content-Type": "application/json"},
            timeout=60,
            limits=httpx.Limits(max_connections=32),
        )
        self.http_failures = 0
        self.refusals: Counter[str] = Counter()
        self.acked: set[str] = set()  # external ids Kafka acknowledged or intake answered 200/202
        self._http_tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await asyncio.gather(*self._http_tasks, return_exceptions=True)
        await self.producer.stop()
        await self.http.aclose()

    async def offer(self, n: int, *, http: bool = True) -> list[str]:
        """Offer `n` matters; answers their external ids."""
        ids: list[str] = []
        for _ in range(n):
            body = submission(self.rng, self.i)
            self.i += 1
            ids.append(body["external_id"])
            raw = orjson.dumps(body)
            if http and self.rng.random() < HTTP_SHARE:
                task = asyncio.create_task(self._post(body["external_id"], raw))
                self._http_tasks.add(task)
                task.add_done_callback(self._http_tasks.discard)
            else:
                name = topic(CHANNEL_SUBMITTED[next(c for c in CHANNEL_SUBMITTED if c.value == body["channel"])].name)
                sent = await self.producer.send(name, raw, key=body["external_id"].encode())
                sent.add_done_callback(self._acked_by_kafka(body["external_id"]))
            self.watch.offered += 1
        return ids

    def _acked_by_kafka(self, external_id: str) -> Callable[[asyncio.Future[Any]], None]:
        def done(sent: asyncio.Future[Any]) -> None:
            if not sent.cancelled() and sent.exception() is None:
                self.acked.add(external_id)

        return done

    async def _post(self, external_id: str, raw: bytes) -> None:
        try:
            response = await self.http.post("/v1/submissions", content=raw)
        except httpx.HTTPError as exc:
            self._refused(type(exc).__name__)
            return
        if response.status_code in (200, 202):
            self.acked.add(external_id)
        else:
            self._refused(f"{response.status_code} {response.text[:300]}")

    def _refused(self, why: str) -> None:
        """An offer intake did not take: not a matter the cluster owes anything for."""
        self.http_failures += 1
        self.refusals[why] += 1
        self.watch.offered -= 1

    async def flush(self) -> None:
        await self.producer.flush()
        await asyncio.gather(*self._http_tasks, return_exceptions=True)


async def closed_loop(load: Load, watch: Watch, seconds: float, in_flight: int) -> None:
    """Keep about `in_flight` matters offered and not done, for `seconds`."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        done = watch.samples[-1].done if watch.samples else 0
        room = in_flight - (watch.offered - done)
        if room > 0:
            await load.offer(min(room, 500))
            await load.producer.flush()
        await asyncio.sleep(0.1)


async def open_loop(load: Load, rate: float, seconds: float) -> list[str]:
    """Offer `rate` matters a second for `seconds` (in 50 ms slices); answers their external ids."""
    ids: list[str] = []
    began = time.perf_counter()
    while (now := time.perf_counter()) - began < seconds:
        due = int(rate * (now - began)) - len(ids)
        if due > 0:
            ids += await load.offer(due)
        await asyncio.sleep(0.05)
    await load.flush()
    return ids


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of all the samples (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))] if ordered else float("nan")


async def raw_baseline(bootstrap: str, payloads: list[bytes], *, client: KafkaConnection | None = None) -> float:
    """Messages/s: the same bytes produced to one topic of 6 partitions and consumed back by plain aiokafka (as
    `client`, whose rights on the topic and its group are granted for the measurement and taken back after)."""
    name = topic(f"bench.e2e-raw.{uuid.uuid4().hex[:6]}")
    group = f"{NAMESPACE}xinfang-raw-{uuid.uuid4().hex[:6]}"
    await ensure_topics(bootstrap, {name: 6})
    client = client or KafkaConnection(bootstrap)
    granted: list[Acl] = []
    if client.sasl_username:
        who = client.sasl_username
        granted = [Acl(who, "WRITE", "TOPIC", name), Acl(who, "READ", "TOPIC", name), Acl(who, "READ", "GROUP", group)]
        await apply_security(bootstrap, {}, granted)
    consumer = AIOKafkaConsumer(name, **client.aiokafka(), group_id=group, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(**client.aiokafka(), acks="all", linger_ms=5, max_batch_size=256_000)
    # ACLs reach the broker's authorizer through the metadata log, a moment after the admin call returns.
    began = time.perf_counter()
    while True:
        try:
            await consumer.start()
            break
        except (TopicAuthorizationFailedError, GroupAuthorizationFailedError):
            await consumer.stop()
            if time.perf_counter() - began > 30:
                raise
            await asyncio.sleep(0.5)
            consumer = AIOKafkaConsumer(name, **client.aiokafka(), group_id=group, auto_offset_reset="earliest")
    await producer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        began = time.perf_counter()

        async def produce() -> None:
            for i, value in enumerate(payloads):
                await producer.send(name, value, key=str(i).encode())
            await producer.flush()

        sending = asyncio.create_task(produce())
        seen = 0
        while seen < len(payloads):
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                seen += len(records)
        await sending
        return len(payloads) / (time.perf_counter() - began)
    finally:
        await producer.stop()
        await consumer.stop()
        await remove_acls(bootstrap, granted)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        with contextlib.suppress(Exception):
            await admin.delete_topics([name])
        await admin.close()


# ------------------------------------------------------------------------------------------------ the run

WATCHER_BACKEND = "bench watcher's PostgreSQL backend"
CLUSTER_INFRA = ("kafka broker", "postgresql (all backends)")


def cluster_cpu_per_matter(cpu: CpuUse, n: int) -> tuple[float, str]:
    """CPU ms per matter of the cluster itself (every service instance, Kafka, PostgreSQL without the watcher's
    backend), and the same by part."""
    parts = {
        group: 1000 * seconds / n
        for group, seconds in cpu.by_group.items()
        if n and (group.split("-")[0] in SERVICES or group in CLUSTER_INFRA)
    }
    text = ", ".join(f"{g} {ms:.2f}" for g, ms in sorted(parts.items(), key=lambda kv: -kv[1]))
    return sum(parts.values()), text


@dataclass
class Result:
    figures: list[Figure]
    notes: list[str]
    cpu: CpuUse | None
    cpu_n: int
    saved: list[Path]


async def measure(
    dsn: str,
    bootstrap: str,
    workdir: Path,
    opts: Options,
    progress: Callable[[str], None],
    principals: Principals | None = None,
    admin_dsn: str | None = None,
) -> Result:
    database = urlsplit(dsn).path.lstrip("/")
    cluster = await start_cluster(dsn, bootstrap, workdir, opts, principals=principals)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    watch = Watch(cluster, pool)
    await watch.start()
    load = Load(cluster, watch, opts.seed)
    await load.start()
    stop = asyncio.Event()
    watching = asyncio.create_task(watch.run(stop))
    figures: list[Figure] = []
    how = (
        f"each as its own principal (SCRAM-SHA-512, the registry's ACLs) at {principals.bootstrap}"
        if principals
        else "without authentication (no SCRAM listener found)"
    )
    notes: list[str] = [
        f"end to end: {', '.join(f'{p.name}' for p in cluster.processes)}; namespace {NAMESPACE!r}; logs in"
        f" {cluster.processes[0].log_path.parent}",
        f"the services connect {how}",
    ]
    cpu: CpuUse | None = None
    cpu_n = 0
    try:
        # 1. saturation
        progress(f"e2e saturation: {opts.seconds:.0f} s, {opts.in_flight:,} matters in flight")
        meter = CpuMeter(cluster.pids() | {watch.backend_pid: WATCHER_BACKEND})
        warm = opts.seconds / 5
        began = time.perf_counter()
        saturating = asyncio.create_task(closed_loop(load, watch, opts.seconds, opts.in_flight))
        await asyncio.sleep(warm)
        first = await watch.sample()
        before, work_before = meter.snapshot(), await watch.work()
        statements_before = await statements(admin_dsn, database)
        await saturating
        last = await watch.sample()
        after, work_after = meter.snapshot(), await watch.work()
        statements_after = await statements(admin_dsn, database)
        window = last.t - first.t
        sustained = (last.done - first.done) / window if window > 0 else 0.0
        cpu, cpu_n = cpu_between(before, after), last.done - first.done
        work = work_after.per(work_before, cpu_n)
        notes.append(f"rows written per matter, by table: {work_after.tables_per(work_before, cpu_n)}")
        if isinstance(statements_before, dict) and isinstance(statements_after, dict):
            notes += statements_per(statements_before, statements_after, cpu_n)
        else:
            notes.append(str(statements_after))
        cluster_ms, parts = cluster_cpu_per_matter(cpu, cpu_n)
        progress(f"e2e saturation: {sustained:,.0f} matters/s sustained; draining")
        await load.flush()
        await watch.until_drained("e2e saturation drain", max(300.0, opts.in_flight / 5), progress)
        progress(f"e2e saturation phase took {time.perf_counter() - began:.0f} s")

        # 2. half load
        half = max(1.0, sustained / 2)
        progress(f"e2e half load: {half:,.0f} matters/s for {opts.seconds / 2:.0f} s")
        ids = await open_loop(load, half, opts.seconds / 2)
        await watch.until_drained("e2e half-load drain", 300.0, progress)
        rows = await pool.fetch(LATENCIES, ids)
        routed = [float(r["routed_s"]) * 1000 for r in rows if r["routed_s"] is not None]
        receipt = [float(r["receipt_s"]) * 1000 for r in rows if r["receipt_s"] is not None]

        # 3. burst
        progress(f"e2e burst: {opts.burst:,} matters at once on the channel topics")
        await load.offer(opts.burst, http=False)
        await load.producer.flush()
        burst_s = await watch.until_drained("e2e burst", max(600.0, opts.burst / 20), progress)
        exact = await pool.fetchval(DONE_EXACTLY)

        # 4. the raw baseline, with the same bytes; and what authentication costs it (the same, as a principal on
        # the SCRAM listener: the handshake is once per connection, the records then flow as on the open one)
        rng = random.Random(opts.seed + 1)
        same = [orjson.dumps(submission(rng, i)) for i in range(20_000)]
        raw_rate = await raw_baseline(bootstrap, same)
        plain, scram = [raw_rate], []
        if principals is not None:
            as_intake = KafkaConnection(principals.bootstrap).as_principal(
                "service-intake", principals.passwords["service-intake"]
            )
            # Alternating, three of each, the best of each kept: the machine is shared and noisy.
            try:
                for _ in range(3):
                    scram.append(await raw_baseline(bootstrap, same, client=as_intake))
                    plain.append(await raw_baseline(bootstrap, same))
            except Exception as exc:  # a side measurement: the run's figures are kept without it
                notes.append(f"the raw path as a SCRAM principal was not measured: {type(exc).__name__}: {exc}")
            raw_rate = max(plain)
        if scram:
            figures.append(
                Figure(
                    "raw aiokafka produce→consume as a SCRAM principal",
                    max(scram),
                    "msg/s",
                    max(scram) / raw_rate if raw_rate else None,
                    note="ratio to the same without authentication (best of 3 each, alternating): what SASL/SCRAM"
                    f" and the ACL checks cost the raw path; all runs {[round(r) for r in scram]} vs"
                    f" {[round(r) for r in plain]} msg/s",
                )
            )

        ratio = sustained / raw_rate if raw_rate else None
        figures += [
            Figure(
                "end-to-end matters/s sustained",
                sustained,
                "matters/s",
                ratio,
                TARGET,
                f"closed loop, {opts.in_flight:,} in flight, over {window:.0f} s after {warm:.0f} s of warm-up; a"
                " matter is done once registered, routed, its deadlines set, its receipt accepted by the SMTP"
                " server or the gateway, and counted by stats; ratio to raw aiokafka produce→consume",
            ),
            Figure("raw aiokafka produce→consume (same payloads)", raw_rate, "msg/s"),
        ]
        for label, values in (("intake→routed", routed), ("intake→receipt", receipt)):
            for q in (0.50, 0.95, 0.99):
                figures.append(
                    Figure(
                        f"{label} p{round(q * 100)} at half load",
                        percentile(values, q),
                        "ms",
                        note=f"{len(values):,} matters at {half:,.0f}/s" if q == 0.50 else "",
                    )
                )
        figures.append(
            Figure(
                f"burst of {opts.burst:,}: lag back to zero and all done",
                burst_s,
                "s",
                note=f"{opts.burst / burst_s:,.0f} matters/s drained; target ≤ 60 s",
            )
        )
        figures.append(
            Figure(
                "matters done, checked per matter",
                float(exact),
                "matters",
                note=f"of {watch.offered:,} offered and taken ({load.http_failures} HTTP offers refused or failed:"
                f" {dict(load.refusals.most_common(3))})"
                + (" — all of them" if exact == watch.offered else " — MISSING SOME"),
            )
        )
        figures.append(
            Figure(
                "cluster CPU per matter (services + Kafka + PostgreSQL)",
                cluster_ms,
                "ms",
                cluster_ms / (1000 / raw_rate) if raw_rate else None,
                note=f"{parts}; without the load client, the SMTP and SMS stand-ins and the bench's watcher; ratio:"
                " to raw aiokafka's wall time per record (1000 / its msg/s) in this run, to compare machines",
            )
        )
        figures += [
            Figure(f"work per matter (saturation): {what}", work[key], unit)
            for what, key, unit in (
                ("PostgreSQL transactions committed", "commits", "commits"),
                ("PostgreSQL rows written", "rows_written", "rows"),
                ("PostgreSQL rows fetched", "rows_fetched", "rows"),
                ("Kafka records produced (all topics)", "records_produced", "records"),
                ("Kafka records consumed (all groups)", "records_consumed", "records"),
            )
            if key in work
        ]
        line = (
            f"end-to-end: {sustained:,.0f} matters/s ({ratio or 0:.3g} x raw aiokafka),"
            f" cluster CPU {cluster_ms:.2f} ms per matter"
        )
        notes.append(line)
        print(line)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await watching
        await load.stop()
        await watch.stop()
        await pool.close()
        stop_cluster(cluster)
    saved = save(workdir, watch.samples, figures)
    return Result(figures, notes, cpu, cpu_n, saved)


def save(workdir: Path, samples: list[Sample], figures: list[Figure]) -> list[Path]:
    """The timeline and the figures as JSON, and a PNG of throughput and lag over time (in .local/bench/)."""
    out = ROOT / ".local" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = {
        "figures": [f.__dict__ for f in figures],
        "samples": [{"t": s.t, "offered": s.offered, "lag": s.lag, **s.stages} for s in samples],
    }
    path = out / f"e2e-{stamp}.json"
    path.write_text(json.dumps(data, indent=1))
    saved = [path]
    with contextlib.suppress(ImportError):
        saved.append(_chart(samples, out / f"e2e-{stamp}.png"))
    return saved


def trailing_rate(
    samples: list[Sample], count: Callable[[Sample], int], window_s: float = RATE_WINDOW_S
) -> list[float]:
    """Per sample, the slope of `count` over the trailing `window_s` (from the latest sample at least that far
    back; the first samples, with less behind them, over what there is): samples come at uneven intervals, and
    the slope between two close ones (a drain's counts 2 s apart after a 5 s one) swings with the spacing."""
    rates: list[float] = []
    j = 0
    for i, s in enumerate(samples):
        while j + 1 < i and s.t - samples[j + 1].t >= window_s:
            j += 1
        a = samples[j]
        rates.append((count(s) - count(a)) / (s.t - a.t) if s.t > a.t else 0.0)
    return rates


def _chart(samples: list[Sample], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in samples]
    rate = trailing_rate(samples, lambda s: s.done)
    offered = trailing_rate(samples, lambda s: s.offered)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    top.plot(t, offered, label="offered /s", alpha=0.5)
    top.plot(t, rate, label=f"done end to end /s (over {RATE_WINDOW_S:.0f} s)")
    top.set_ylabel("matters/s")
    top.legend()
    top.grid(alpha=0.3)
    bottom.plot(t, [max(0, s.lag) for s in samples], color="tab:red", label="consumer lag (all groups)")
    bottom.plot(t, [s.offered - s.done for s in samples], color="tab:gray", label="offered, not done")
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("records / matters")
    bottom.legend()
    bottom.grid(alpha=0.3)
    fig.suptitle("xinfang end to end: throughput and lag")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
