"""`make bench` / `python -m tests.bench`: intake throughput, HTTP and Kafka, and routing throughput with one
and two instances, each with its ratio to a baseline of the same path measured in the same run; supervision's
scheduler against a plain UPDATE; notify's sending against raw SMTP; stats' folding against a plain upsert and
its summary over a million facts (stats_bench.py); then the whole cluster end to end against raw aiokafka
(e2e_bench.py). Prints; asserts nothing.

Baselines, like with like (each a separate process, as the service is, measured just before it):
- HTTP: the same load generator, concurrency and payloads against the smallest ASGI app (http_baseline.py:
  reads the body, answers a fixed 202), served by uvicorn with the services' settings.
- Kafka (intake; routing): the same producer and payloads into a bench topic, a process that consumes them as
  the service does (intake's, then routing's consumer settings) and produces every record again as the outbox
  relay does (confluent-kafka, acks=all, idempotent, linger.ms 2, murmur2_random), read back by the same
  kind of reader (kafka_baseline.py).

What runs: a fresh database `xinfang_bench_<hex>` (dropped at the end) and `xinfang-intake` as a separate
process on its own port, consumer group and channel key. Its group's offsets are committed at the current
ends of every topic it reads before it starts, so it does not first re-register what earlier runs left on
the channel topics; the Kafka figure starts once that group is Stable with the channel topic assigned.

Routing (after intake has stopped, which would otherwise consume the routed and status events): one, then two
`xinfang-routing` processes, each run with its own fresh database and consumer group (started at the ends of
matters.registered.v2 and the units' feedback topics; the two instances share it and so split the partitions). Once the
group is Stable with the partitions spread over every instance, the bench produces N MatterRegistered events
(half of them without a category, so routing infers it) and times first send → the last matters.routed.v1
event of the routing under test about them (matched by key, and by routed_at against the bench database).

Topics: the bench runs in a namespace of its own on the broker (`bench-<hex>.` + each contract topic, the
services under test started with that TOPIC_PREFIX, common.NAMESPACE), created at the start and deleted at
the end: a `make up` stack never sees the bench's matters, before, during or after it, and the bench's
figures never count the stack's. A running stack still competes for the CPU (the CPU tables show how much):
for clean numbers run it with the stack down (`make down`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pstats
import random
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import orjson

from tests.integration.processes import free_port
from xinfang_shared.contracts.acls import acls, principals
from xinfang_shared.contracts.topics import topics_to_create
from xinfang_shared.kafka_admin import apply_security, delete_topics, ensure_topics, remove_acls

from . import e2e_bench as e2e
from . import http_bench as http
from . import kafka_bench as kafka
from . import notify_bench as notify
from . import routing_bench as routing
from . import stats_bench as stats
from . import supervision_bench as supervision
from .common import (
    NAMESPACE,
    CpuMeter,
    CpuUse,
    Figure,
    Payload,
    cpu_between,
    credentials,
    machine_idle_fraction,
    payloads,
    print_cpu,
    print_table,
)
from .kafka_baseline import INTAKE_CONSUMER, ROUTING_CONSUMER
from .service import (
    INTAKE_TOPICS,
    ROUTING_TOPICS,
    BenchDatabase,
    HttpBaselineProcess,
    IntakeProcess,
    KafkaBaselineProcess,
    RoutingProcess,
    ServiceProcess,
    delete_group,
    partition_split,
    start_group_at_end,
    stop_all,
    wait_group_stable,
)

HTTP_TARGET = 2_500.0
KAFKA_TARGET = 3_000.0
CEILING_MAX_S = 3.0  # each client-ceiling run stops after this long
STACK_PORTS = (8001, 8002, 8003, 8004, 8005)
QUIET = 0.85  # idle fraction of the machine at which a phase starts
T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    only: str
    n_kafka: int
    n_http: int
    n_routing: int
    n_deadlines: int
    n_notices: int
    n_stats_matters: int
    n_facts: int
    warmup: int
    concurrency: int
    ceiling_n: int
    seed: int
    bootstrap: str
    loop: str
    client: str
    settle_max_s: float
    http_max_s: float
    profile_intake: bool
    e2e: e2e.Options


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=["http", "kafka", "routing", "supervision", "notify", "stats", "e2e", "all"], default="all"
    )
    parser.add_argument("--n-kafka", type=int, default=20_000, help="submissions through the channel topic")
    parser.add_argument("--n-http", type=int, default=5_000, help="measured POST /v1/submissions")
    parser.add_argument(
        "--n-routing", type=int, default=10_000, help="matters.registered.v2 events per routing run (1 and 2 instances)"
    )
    parser.add_argument(
        "--n-deadlines", type=int, default=100_000, help="open deadlines for the supervision scheduler passes"
    )
    parser.add_argument("--n-notices", type=int, default=2_000, help="receipts notify sends (half e-mail, half SMS)")
    parser.add_argument(
        "--n-stats-matters", type=int, default=20_000, help="matters (3 events each) stats folds through Kafka"
    )
    parser.add_argument("--n-facts", type=int, default=1_000_000, help="fact rows the summary's latency is taken on")
    parser.add_argument("--warmup", type=int, default=300, help="POSTs before the measured ones")
    parser.add_argument("--concurrency", type=int, default=64, help="HTTP requests in flight")
    parser.add_argument("--ceiling-n", type=int, default=3_000, help="requests per client-ceiling run")
    parser.add_argument("--seed", type=int, default=20_240_601)
    parser.add_argument("--bootstrap", default=None, help="Kafka (default: KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help="the client's loop")
    parser.add_argument(
        "--client", choices=["raw", "httpx"], default="raw", help="HTTP load generator (see http_bench.py)"
    )
    parser.add_argument("--settle-max-s", type=float, default=15.0, help="wait this long at most for quiet")
    parser.add_argument("--http-max-s", type=float, default=30.0, help="stop the measured POSTs after this long")
    parser.add_argument(
        "--profile-intake",
        action="store_true",
        help="run intake under cProfile and print where its CPU went (slows it: figures not representative)",
    )
    parser.add_argument("--e2e-seconds", type=float, default=300.0, help="end to end: the saturation phase's length")
    parser.add_argument("--e2e-in-flight", type=int, default=3_000, help="end to end: matters offered, not done")
    parser.add_argument("--e2e-burst", type=int, default=50_000, help="end to end: the burst's matters")
    parser.add_argument(
        "--e2e-instances", default="", help="end to end: instances per service, e.g. routing=2,notify=2 (default 1)"
    )
    a = parser.parse_args(argv)
    return Options(
        only=a.only,
        n_kafka=a.n_kafka,
        n_http=a.n_http,
        n_routing=a.n_routing,
        n_deadlines=a.n_deadlines,
        n_notices=a.n_notices,
        n_stats_matters=a.n_stats_matters,
        n_facts=a.n_facts,
        warmup=a.warmup,
        concurrency=a.concurrency,
        ceiling_n=a.ceiling_n,
        seed=a.seed,
        bootstrap=a.bootstrap or "",
        loop=a.loop,
        client=a.client,
        settle_max_s=a.settle_max_s,
        http_max_s=a.http_max_s,
        profile_intake=a.profile_intake,
        e2e=e2e.Options(
            seconds=a.e2e_seconds,
            in_flight=a.e2e_in_flight,
            burst=a.e2e_burst,
            instances=e2e.parse_instances(a.e2e_instances),
            seed=a.seed,
        ),
    )


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def settle(max_s: float, idle: float = QUIET) -> tuple[float, float]:
    """Wait (at most `max_s`) until the machine is mostly idle, so one phase's aftermath (e.g. a running
    stack routing the matters just registered) does not run into the next. Returns (waited, idle)."""
    started = time.perf_counter()
    fraction = machine_idle_fraction()
    while fraction < idle and time.perf_counter() - started < max_s:
        fraction = machine_idle_fraction()
    return time.perf_counter() - started, fraction


@dataclass
class Bench:
    opts: Options
    admin_dsn: str
    bootstrap: str
    workdir: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    figures: list[Figure] = field(default_factory=list)
    routing_figures: list[Figure] = field(default_factory=list)
    supervision_figures: list[Figure] = field(default_factory=list)
    notify_figures: list[Figure] = field(default_factory=list)
    stats_figures: list[Figure] = field(default_factory=list)
    e2e_figures: list[Figure] = field(default_factory=list)
    routing_processes: list[ServiceProcess] = field(default_factory=list)
    # The stack's SCRAM listener, where the end-to-end cluster runs each service as its own principal.
    principals: e2e.Principals | None = None
    baseline_processes: list[ServiceProcess] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    cpu: list[tuple[str, CpuUse, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.api_key = secrets.token_urlsafe(24)
        self.db = BenchDatabase(self.admin_dsn, f"xinfang_bench_{self.run_id}")
        self.intake_group = f"bench-intake-{self.run_id}"
        self.intake = IntakeProcess(
            dsn=self.db.dsn,
            port=free_port(),
            group_id=self.intake_group,
            api_key=self.api_key,
            bootstrap=self.bootstrap,
            log_path=self.workdir / "intake.log",
            profile_path=self.workdir / "intake.prof" if self.opts.profile_intake else None,
        )
        self.meter = CpuMeter()

    # ------------------------------------------------------------------------------------------ lifecycle

    async def run(
        self, kafka_payloads: list[Payload], http_payloads: list[Payload], routing_events: list[Payload]
    ) -> None:
        try:
            if self.opts.only in ("http", "kafka", "all"):
                await self.db.create()
                try:
                    await self._with_intake(kafka_payloads, http_payloads)
                finally:
                    await self.db.drop()
                    progress(f"dropped {self.db.name}")
            if self.opts.only in ("routing", "all"):
                await self._settle("Kafka baseline with routing's consumer")
                baseline = await self._kafka_baseline(routing_events, ROUTING_CONSUMER, "routing", self.routing_figures)
                await self._routing(routing_events, baseline)
            if self.opts.only in ("supervision", "all"):
                await self._supervision()
            if self.opts.only in ("notify", "all"):
                await self._notify()
            if self.opts.only in ("stats", "all"):
                await self._stats()
            if self.opts.only in ("e2e", "all"):
                await self._e2e()
        finally:
            for group in self.groups:
                with contextlib.suppress(Exception):
                    await delete_group(self.bootstrap, group)
            progress(f"deleted consumer groups {', '.join(self.groups)}")

    async def _with_intake(self, kafka_payloads: list[Payload], http_payloads: list[Payload]) -> None:
        self.groups.append(self.intake_group)
        skipped = await start_group_at_end(self.bootstrap, self.intake_group, INTAKE_TOPICS)
        self.notes.append(f"intake's group started at the topics' ends, skipping {skipped:,} older records")
        await asyncio.to_thread(self.intake.migrate)
        self.intake.start()
        self.meter = CpuMeter({self.intake.pid: "intake under test"} if self.intake.pid else None)
        try:
            healthy_s = await self.intake.wait_healthy()
            stable_s = await wait_group_stable(self.bootstrap, self.intake_group, kafka.CHANNEL_TOPIC)
            progress(
                f"intake pid {self.intake.pid} on :{self.intake.port} healthy after {healthy_s:.1f} s,"
                f" its group stable {stable_s:.1f} s later"
            )
            if self.opts.only in ("http", "all"):
                await self._settle("HTTP baseline", [self.intake])
                http_baseline = await self._http_baseline(http_payloads)
                await self._settle("HTTP submissions", [self.intake])
                await self._http(http_payloads, http_baseline)
            if self.opts.only in ("kafka", "all"):
                await self._settle("Kafka baseline with intake's consumer", [self.intake])
                kafka_baseline = await self._kafka_baseline(kafka_payloads, INTAKE_CONSUMER, "intake", self.figures)
                await self._settle("Kafka submissions through intake", [self.intake])
                await self._kafka(kafka_payloads, kafka_baseline)
        finally:
            code = self.intake.stop()
            how = {0: "", -15: " = SIGTERM re-raised by uvicorn after its graceful shutdown", -9: " = killed"}
            progress(f"intake stopped (exit code {code}{how.get(code or 0, '')}); its log: {self.intake.log_path}")

    async def _settle(self, phase: str, running: Sequence[ServiceProcess] = ()) -> None:
        for process in running:
            process.check_alive()
        waited, idle = await asyncio.to_thread(settle, self.opts.settle_max_s)
        progress(f"{phase}: starting (waited {waited:.1f} s for quiet: machine {100 * idle:.0f}% idle)")
        if idle < QUIET:
            self.notes.append(f"{phase} started on a busy machine ({100 * idle:.0f}% idle after {waited:.0f} s)")

    async def _measured(self, name: str, work: Awaitable[T], items: Callable[[T], int]) -> T:
        """Run `work`, noting the CPU every process group spent on it, and per item (`items` of the result)."""
        before = self.meter.snapshot()
        result = await work
        self.cpu.append((name, cpu_between(before, self.meter.snapshot()), items(result)))
        return result

    # --------------------------------------------------------------------------------------------- phases

    def _meter_also(self, process: ServiceProcess, name: str) -> CpuMeter:
        """Meter `process` too (as `name`) from now on; returns the meter to restore afterwards."""
        previous = self.meter
        if process.pid is not None:
            self.meter = CpuMeter({**previous.under_test, process.pid: name})
        return previous

    async def _http_baseline(self, payloads_: list[Payload]) -> http.HttpRun:
        """The same client, concurrency, payloads and time limit against the minimal ASGI app."""
        c = self.opts.concurrency
        warm, measured = payloads_[: self.opts.warmup], payloads_[self.opts.warmup :]
        server = HttpBaselineProcess(port=free_port(), log_path=self.workdir / "http-baseline.log")
        self.baseline_processes.append(server)
        server.start()
        previous = self._meter_also(server, "HTTP baseline server")
        try:
            healthy_s = await server.wait_healthy()
            progress(f"HTTP baseline pid {server.pid} on :{server.port} healthy after {healthy_s:.1f} s")
            client = http.client(self.opts.client, server.base_url, self.api_key, c)
            try:
                await http.drive(client, http.submissions(warm), c, expected=202)
                work = http.drive(client, http.submissions(measured), c, 202, time_limit_s=self.opts.http_max_s)
                run = await self._measured("HTTP baseline: minimal ASGI app, fixed 202", work, lambda r: r.answered)
            finally:
                await client.aclose()
        finally:
            code = await asyncio.to_thread(server.stop)
            self.meter = previous
            progress(f"HTTP baseline stopped (exit code {code})")
        rate = run.rate(202)
        statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(run.statuses.items()))
        self.figures.append(
            Figure(
                "HTTP baseline: minimal ASGI app, fixed 202 (same uvicorn settings, client, payloads)",
                rate,
                "req/s",
                1.0 if rate else None,
                note=f"{run.answered:,} POSTs answered, {c} in flight, {run.elapsed_s:.1f} s; statuses {statuses};"
                f" transport errors {dict(run.errors) or 'none'}; p50 {run.percentile_ms(0.5):.1f} ms,"
                f" p99 {run.percentile_ms(0.99):.1f} ms; client CPU {run.cpu_ms_per_request:.2f} ms/request",
            )
        )
        return run

    async def _kafka_baseline(
        self, payloads_: list[Payload], consumer: dict[str, int], service: str, figures: list[Figure]
    ) -> kafka.RoundTrip:
        """Produce → a process consuming like `service` and producing like the outbox relay → read back."""
        source = f"bench.kafka-baseline.{service}.in.{self.run_id}"
        target = f"bench.kafka-baseline.{service}.out.{self.run_id}"
        group = f"bench-kafka-baseline-{service}-{self.run_id}"
        self.groups.append(group)
        for topic in (source, target):
            await kafka.create_topic(self.bootstrap, topic)
        process = KafkaBaselineProcess(
            bootstrap=self.bootstrap,
            source=source,
            target=target,
            group_id=group,
            consumer=consumer,
            log_path=self.workdir / f"kafka-baseline-{service}.log",
        )
        self.baseline_processes.append(process)
        previous = self.meter
        try:
            process.start()
            previous = self._meter_also(process, "Kafka baseline process")
            stable_s = await wait_group_stable(self.bootstrap, group, source)
            progress(f"Kafka baseline ({service}'s consumer) pid {process.pid}: group stable after {stable_s:.1f} s")
            timeout_s = max(60.0, len(payloads_) / 300)
            work = kafka.baseline_roundtrip(self.bootstrap, source, target, payloads_, process.check_alive, timeout_s)
            trip = await self._measured(f"Kafka baseline with {service}'s consumer", work, lambda t: t.n)
        finally:
            code = await asyncio.to_thread(process.stop)
            self.meter = previous
            progress(f"Kafka baseline ({service}) stopped (exit code {code})")
            for topic in (source, target):
                with contextlib.suppress(Exception):
                    await kafka.delete_topic(self.bootstrap, topic)
        options = ", ".join(f"{k} {v:,}" for k, v in consumer.items())
        figures.append(
            Figure(
                f"Kafka baseline: consume like {service}, produce like the outbox relay",
                trip.rate,
                "msg/s",
                1.0 if trip.rate else None,
                note=f"{trip.arrived:,}/{trip.n:,} came back"
                + (f" in {trip.total_s:.1f} s" if trip.total_s else f" — NOT all within {timeout_s:.0f} s")
                + f"; produce alone {trip.produce_rate:,.0f} msg/s; 12 partitions each way; consumer: {options};"
                " producer: confluent-kafka acks=all, idempotent, linger.ms 2, murmur2_random",
            )
        )
        return trip

    async def _http(self, payloads_: list[Payload], baseline: http.HttpRun) -> None:
        c, n_ceiling = self.opts.concurrency, self.opts.ceiling_n
        warm, measured = payloads_[: self.opts.warmup], payloads_[self.opts.warmup :]
        client = http.client(self.opts.client, self.intake.base_url, self.api_key, c)
        try:
            await http.drive(client, http.submissions(warm), c, expected=202)
            work = http.drive(client, http.submissions(measured), c, 202, time_limit_s=self.opts.http_max_s, keep=True)
            run = await self._measured("HTTP POST /v1/submissions", work, lambda r: r.answered)
            health_calls = http.repeated(http.Call("GET", "/health"), n_ceiling)
            health = await http.drive(client, health_calls, c, 200, time_limit_s=CEILING_MAX_S)
            missing = http.repeated(http.Call("GET", "/bench-no-such-path"), n_ceiling)
            work = http.drive(client, missing, c, 404, time_limit_s=CEILING_MAX_S)
            not_found = await self._measured("HTTP GET unknown path (404)", work, lambda r: r.answered)
        finally:
            await client.aclose()
        stored = await self.db.matter_ids([p.external_id for p in measured])
        accepted = run.statuses[202]
        check = _stored_check(run.kept, set(stored.values()))
        if accepted != len(stored) or check.missing or check.unreadable:
            loud = (
                f"!!! HTTP MISMATCH: {accepted:,} answers 202 but {len(stored):,} of the measured submissions stored"
                f" in PostgreSQL; {check.missing:,} answered 202 and NOT stored, {check.unanswered:,} stored without a"
                f" 202, {check.unreadable:,} 202 bodies without a matter_id"
            )
            self.notes.insert(0, loud)
            progress(loud)
        rate = run.rate(202)
        statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(run.statuses.items()))
        errors = ", ".join(f"{e}: {n}" for e, n in run.errors.items()) or "none"
        self.figures += [
            Figure(
                "HTTP submissions/s (1 worker)",
                rate,
                "subm/s",
                _ratio(rate, baseline.rate(202)),
                HTTP_TARGET,
                f"{run.answered:,} POSTs answered"
                + (f" (stopped at the {self.opts.http_max_s:.0f} s limit)" if run.stopped_early else "")
                + f", {c} in flight, {run.elapsed_s:.1f} s; statuses {statuses};"
                f" transport errors {errors}; client CPU {run.cpu_ms_per_request:.2f} ms/request;"
                " ratio to the HTTP baseline",
            ),
            Figure(
                "HTTP 202 answers found stored in PostgreSQL",
                float(check.found),
                "rows",
                note=f"{accepted:,} answered 202, {len(stored):,} rows of the measured submissions in the bench"
                f" database; {check.missing:,} answered 202 but not stored, {check.unanswered:,} stored without a 202"
                + (" — MISMATCH" if accepted != len(stored) or check.missing else " — they agree"),
            ),
            Figure("HTTP submission latency p50", run.percentile_ms(0.50), "ms"),
            Figure("HTTP submission latency p99", run.percentile_ms(0.99), "ms"),
            Figure(
                "client ceiling: GET /health",
                health.rate(),
                "req/s",
                note=f"statuses {dict(health.statuses)}; p50 {health.percentile_ms(0.5):,.0f} ms; client CPU"
                f" {health.cpu_ms_per_request:.2f} ms/request; /health asks PostgreSQL and Kafka on every call",
            ),
            Figure(
                "client ceiling: GET unknown path (404)",
                not_found.rate(),
                "req/s",
                note=f"statuses {dict(not_found.statuses)}; client CPU {not_found.cpu_ms_per_request:.2f} ms/request;"
                " no database, no Kafka: load generator + uvicorn + FastAPI middleware only",
            ),
        ]
        for status, body in run.samples.items():
            self.notes.append(f"HTTP {status} sample: {body}")

    async def _kafka(self, payloads_: list[Payload], baseline: kafka.RoundTrip) -> None:
        timeout_s = max(60.0, len(payloads_) / 300)
        work = kafka.intake_roundtrip(self.bootstrap, payloads_, self.db.matter_ids, self.intake.check_alive, timeout_s)
        trip = await self._measured("Kafka channel topic → intake → matters.registered.v2", work, lambda t: t.n)
        note = (
            f"{trip.arrived:,}/{trip.n:,} registered events seen"
            + (f" in {trip.total_s:.1f} s" if trip.total_s else f" — NOT all within {timeout_s:.0f} s")
            + f"; produce alone {trip.produce_rate:,.0f} msg/s; from first send to the last registered event;"
            " ratio to the Kafka baseline with intake's consumer"
        )
        self.figures.append(
            Figure(
                "Kafka submissions/s through intake",
                trip.rate,
                "subm/s",
                _ratio(trip.rate, baseline.rate),
                KAFKA_TARGET,
                note,
            )
        )

    async def _routing(self, events: list[Payload], baseline: kafka.RoundTrip) -> None:
        one = await self._routing_run(events, baseline, 1)
        two = await self._routing_run(events, baseline, 2)
        self.routing_figures.append(
            Figure(
                "routing scaling: two instances / one",
                two / one if one and two else 0.0,
                "×",
                note=f"{os.cpu_count()} cores on this machine, shared by the instances, PostgreSQL, Kafka and"
                " the bench client (see the CPU tables)",
            )
        )

    async def _routing_run(self, events: list[Payload], baseline: kafka.RoundTrip, instances: int) -> float:
        """One routing measurement with `instances` processes in one new group on a fresh database; the rate."""
        label = f"{instances} instance{'s' if instances > 1 else ''}"
        db = BenchDatabase(self.admin_dsn, f"xinfang_bench_{self.run_id}_routing{instances}")
        group = f"bench-routing{instances}-{self.run_id}"
        self.groups.append(group)
        processes: list[ServiceProcess] = []
        await db.create()
        try:
            skipped = await start_group_at_end(self.bootstrap, group, ROUTING_TOPICS)
            self.notes.append(
                f"routing ({label})'s group started at the topics' ends, skipping {skipped:,} older records"
            )
            for i in range(instances):
                port = free_port()
                processes.append(
                    RoutingProcess(
                        dsn=db.dsn,
                        port=port,
                        group_id=group,
                        operator_key=self.api_key,
                        bootstrap=self.bootstrap,
                        log_path=self.workdir / f"routing-{instances}-{i + 1}.log",
                    )
                )
            self.routing_processes += processes
            await asyncio.to_thread(processes[0].migrate)
            for process in processes:
                process.start()
            self.meter = CpuMeter(
                {p.pid: f"routing under test #{i + 1}" for i, p in enumerate(processes) if p.pid is not None}
            )
            healthy_s = max(await asyncio.gather(*(p.wait_healthy() for p in processes)))
            stable_s = await wait_group_stable(
                self.bootstrap, group, routing.REGISTERED_TOPIC, members_with_topic=instances
            )
            split = await partition_split(self.bootstrap, group, routing.REGISTERED_TOPIC)
            progress(
                f"routing ×{instances} (pids {', '.join(str(p.pid) for p in processes)}) healthy after"
                f" {healthy_s:.1f} s, group stable {stable_s:.1f} s later, partitions split {split}"
            )
            await self._settle(f"routing, {label}", processes)

            def alive() -> None:
                for process in processes:
                    process.check_alive()

            timeout_s = max(60.0, len(events) / 100)
            work = routing.routing_roundtrip(self.bootstrap, group, events, db.routed_at, alive, timeout_s)
            trip = await self._measured(
                f"routing, {label}: matters.registered.v2 → matters.routed.v1", work, lambda t: t.n
            )
        finally:
            codes = await asyncio.to_thread(stop_all, processes)
            progress(f"routing ×{instances} stopped (exit codes {codes}); logs in {self.workdir}")
            await db.drop()
            progress(f"dropped {db.name}")
        dead = f"; {trip.dead_lettered:,} DEAD-LETTERED by the routing under test (rate over the routed)"
        note = (
            f"{trip.arrived:,}/{trip.n:,} matters.routed.v1 seen"
            + (f" in {trip.total_s:.1f} s" if trip.total_s else f" — NOT all within {timeout_s:.0f} s")
            + (dead if trip.dead_lettered else "")
            + f"; produce alone {trip.produce_rate:,.0f} msg/s; partitions of {routing.REGISTERED_TOPIC}"
            f" per instance {split}; from first send to the last routed event; ratio to the Kafka baseline with"
            " routing's consumer (one process)"
        )
        for error, count in trip.dead_errors.most_common(5):
            self.notes.append(
                f"routing ({label}) dead-lettered {count:,} bench matters, their batch failing with: {error}"
            )
        self.routing_figures.append(
            Figure(f"routing matters/s, {label}", trip.rate, "matters/s", _ratio(trip.rate, baseline.rate), note=note)
        )
        return trip.rate

    # --------------------------------------------------------------------------------------------- report

    async def _supervision(self) -> None:
        db = BenchDatabase(self.admin_dsn, f"xinfang_bench_{self.run_id}_supervision")
        await db.create()
        try:
            await self._settle("supervision scheduler")
            figures, notes = await supervision.measure(self.admin_dsn, db.dsn, self.opts.n_deadlines)
            self.supervision_figures += figures
            self.notes += notes
        finally:
            await db.drop()
            progress(f"dropped {db.name}")

    async def _notify(self) -> None:
        db = BenchDatabase(self.admin_dsn, f"xinfang_bench_{self.run_id}_notify")
        await db.create()
        try:
            await self._settle("notify sending")
            figures, notes = await notify.measure(db.dsn, self.bootstrap, self.workdir, self.opts.n_notices)
            self.notify_figures += figures
            self.notes += notes
        finally:
            await db.drop()
            progress(f"dropped {db.name}")

    async def _stats(self) -> None:
        db = BenchDatabase(self.admin_dsn, f"xinfang_bench_{self.run_id}_stats")
        await db.create()
        try:
            await self._settle("stats folding")
            figures, notes = await stats.measure(
                db.dsn, self.bootstrap, self.workdir, self.opts.n_stats_matters, self.opts.n_facts, self.opts.seed
            )
            self.stats_figures += figures
            self.notes += notes
        finally:
            await db.drop()
            progress(f"dropped {db.name}")

    async def _e2e(self) -> None:
        db = BenchDatabase(self.admin_dsn, f"xinfang_bench_{self.run_id}_e2e")
        await db.create()
        try:
            await self._settle("the whole cluster end to end")
            result = await e2e.measure(
                db.dsn,
                self.bootstrap,
                self.workdir,
                self.opts.e2e,
                progress,
                principals=self.principals,
                admin_dsn=self.admin_dsn,
            )
            self.e2e_figures += result.figures
            self.notes += result.notes + [f"end to end saved: {path}" for path in result.saved]
            if result.cpu is not None:
                self.cpu.append(("the end-to-end saturation phase (per matter done)", result.cpu, result.cpu_n))
        finally:
            await db.drop()
            progress(f"dropped {db.name}")

    def report(self) -> None:
        intake_ran = self.intake.proc is not None
        if self.figures:
            print_table("intake throughput (ratios to this run's baseline of the same path)", self.figures)
        if self.routing_figures:
            print_table(
                "routing throughput (ratios to this run's Kafka baseline with routing's consumer)", self.routing_figures
            )
        if self.supervision_figures:
            print_table(
                "supervision scheduler (ratios to a plain UPDATE of the same rows in this run)",
                self.supervision_figures,
            )
        if self.notify_figures:
            print_table(
                "notify sending (ratio: e-mail to a raw aiosmtplib loop to the same server)", self.notify_figures
            )
        if self.stats_figures:
            print_table(
                "stats (ratios: folding to a plain INSERT … ON CONFLICT, the summary to count(*) of its rows)",
                self.stats_figures,
            )
        if self.e2e_figures:
            print_table("the whole cluster end to end (ratio: to raw aiokafka produce→consume)", self.e2e_figures)
        for name, use, n in self.cpu:
            print_cpu(name, use, n)
        print()
        processes = ([self.intake] if intake_ran else []) + self.routing_processes + self.baseline_processes
        logs = [line for p in processes for line in p.log_summary()]
        for note in [*self.notes, *logs]:
            print(f"note: {note}")
        profile = self.intake.profile_path
        if profile is not None and profile.exists():
            print(f"\n== intake under cProfile ({profile}), top functions by own time")
            pstats.Stats(str(profile)).sort_stats("tottime").print_stats(30)
            pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(40)


def _ratio(rate: float, baseline: float) -> float | None:
    return rate / baseline if baseline else None


@dataclass(frozen=True)
class StoredCheck:
    found: int  # answered 202 and stored
    missing: int  # answered 202, not stored
    unanswered: int  # stored, no 202 for it
    unreadable: int  # 202 bodies without a matter_id


def _stored_check(bodies: list[bytes], stored_ids: set[str]) -> StoredCheck:
    """The matter_id of every 202 answer against the rows stored for the measured submissions."""
    answered: set[str] = set()
    unreadable = 0
    for body in bodies:
        try:
            answered.add(str(orjson.loads(body)["matter_id"]))
        except (ValueError, KeyError, TypeError):
            unreadable += 1
    return StoredCheck(len(answered & stored_ids), len(answered - stored_ids), len(stored_ids - answered), unreadable)


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "uvloop":
        with contextlib.suppress(ImportError):
            import uvloop

            return uvloop.new_event_loop
    return None


def _header(opts: Options, loop: str, bootstrap: str, stack_up: list[int]) -> list[str]:
    lines = [
        f"xinfang bench — {time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} cores, Python"
        f" {sys.version.split()[0]}, client loop {loop}, Kafka {bootstrap}",
        f"kafka: {opts.n_kafka:,} submissions; http: {opts.n_http:,} (+{opts.warmup} warm-up) with"
        f" {opts.concurrency} in flight, {opts.client} client; routing: {opts.n_routing:,} registered matters"
        f" (half without a category) per run; only {opts.only}; seed {opts.seed}",
    ]
    if stack_up:
        lines.append(
            f"WARNING: a make-up stack answers on ports {stack_up}: it competes for the CPU (see the CPU"
            " tables); `make down` first for clean numbers"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    creds = credentials()
    bootstrap = opts.bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or creds.get("KAFKA_BOOTSTRAP_SERVERS", "")
    bootstrap = bootstrap or "127.0.0.1:9092"
    workdir = Path(tempfile.mkdtemp(prefix="xinfang-bench-"))
    stack_up = [p for p in STACK_PORTS if _port_open(p)]
    factory = _loop_factory(opts.loop)
    header = _header(opts, "uvloop" if factory else "asyncio", bootstrap, stack_up)
    for line in header:
        progress(line)

    started = time.perf_counter()
    rng, petitioners = random.Random(opts.seed), set[str]()
    kafka_payloads = payloads(opts.n_kafka, rng, petitioners) if opts.only in ("kafka", "all") else []
    http_payloads = payloads(opts.n_http + opts.warmup, rng, petitioners) if opts.only in ("http", "all") else []
    routing_events = routing.registered_events(opts.n_routing, opts.seed + 1) if opts.only in ("routing", "all") else []
    progress(
        f"{len(kafka_payloads) + len(http_payloads) + len(routing_events):,} payloads generated in"
        f" {time.perf_counter() - started:.1f} s"
    )

    bench = Bench(opts, creds["DATABASE_URL"], bootstrap, workdir)
    bench.principals = _principals(creds)
    namespace = {NAMESPACE + name: partitions for name, partitions in topics_to_create().items()}
    granted = acls(NAMESPACE) if bench.principals else []
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(ensure_topics(bootstrap, namespace))
            runner.run(apply_security(bootstrap, {}, granted))
            progress(
                f"topics in the bench's namespace {NAMESPACE!r} created, and their {len(granted)} ACLs (both deleted"
                " at the end)"
            )
            try:
                runner.run(bench.run(kafka_payloads, http_payloads, routing_events))
            finally:
                runner.run(remove_acls(bootstrap, granted))
                runner.run(delete_topics(bootstrap, list(namespace)))
    finally:
        print("\n".join(["", *header]))
        bench.report()
        print(f"\ntotal {time.perf_counter() - started:.0f} s; service logs in {workdir}")


def _principals(creds: dict[str, str]) -> e2e.Principals | None:
    """The local stack's SCRAM listener and the principals' passwords (.local/credentials.env), when it runs."""
    passwords = {p: creds.get("KAFKA_PASSWORD_" + p.replace("-", "_"), "") for p in principals()}
    if not _port_open(SCRAM_PORT) or not all(passwords.values()):
        return None
    return e2e.Principals(f"127.0.0.1:{SCRAM_PORT}", passwords)


SCRAM_PORT = 9094

if __name__ == "__main__":
    main()
