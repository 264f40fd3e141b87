"""`make chaos` / `python -m tests.chaos`: the whole cluster (tests/bench/e2e_bench.py: the five services as
processes, the SMTP server and the SMS gateway stand-ins) on a private Kafka broker of its own and a fresh
database, under a steady load of matters of all four channels (Kafka and HTTP). Faults are injected in turn,
each followed by a recovery pause while the load goes on:

- kill -9 of each service (intake, routing, supervision, notify, stats), restarted at once: under load it lands
  anywhere; the crash-* faults (tests/chaos/crash_points.py, xinfang_shared/crashpoints.py) place it exactly:
  after a consumer's database commit and before its offset commit, in a relay after the broker's
  acknowledgement and before the outbox rows are deleted, and after the SMTP server's or the gateway's
  acceptance of a notice and before it is marked sent;
- kill -9 of the Kafka broker, restarted on its data; SIGSTOP of the broker for `--stop-s`, then SIGCONT;
- an immediate (crash) restart of PostgreSQL (deploy/local/postgres.sh crash-restart: the stack's server, so
  nothing else should be using it meanwhile);
- a slow, then a resetting network between the services and Kafka (tests/chaos/network.py): `net-slow`, a
  latency of `--latency-ms` ± a third on all the broker sends them, for `--stop-s`; `net-reset`, every
  connection reset as soon as the broker answers on it, then connections refused, each for half of `--stop-s`;
- a full disk for Kafka's log directory (`disk-full`): filled to the last byte for `--stop-s`, then freed; the
  broker, which stops when its only log directory fails, is started again on its data.

Then the load stops, the cluster drains, and everything is checked from the databases, the SMTP server's and
the gateway's files and the topics: every acknowledged submission registered once, routed once, its deadlines
once, its receipt once (by key), stats' counts exact, no per-matter reordering on the status topic, the outboxes
empty and every consumer group's lag zero. Delivery-level duplicates (the same event or Message-ID / OutId
again) are counted apart from duplicated effects (a second distinct event, row or key), which must be 0.
Prints what was injected, when, and what was checked, as tables; exits 1 when a check fails.

For the network faults the services reach the broker only through toxiproxy (built into .local/bin by
deploy/local/toxiproxy.sh when missing; the broker advertises the proxy on a second listener, so every
connection goes through it), while the load, the watch and the checks stay on the direct listener; for
disk-full the broker's log directory is on a tmpfs of the run's own (`--kafka-disk`; mounting needs root: when
it fails, the run stops at once and says so). The run starts and stops both, and unmounts the tmpfs, only when
its faults include them. Not injected (yet): a slow network or a full disk for PostgreSQL (the stack's)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import default as email_policy
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from tests.bench.common import NAMESPACE, ROOT, credentials, topic
from tests.bench.e2e_bench import (
    Cluster,
    Load,
    Options,
    Principals,
    Watch,
    open_loop,
    start_cluster,
    stop_cluster,
)
from tests.bench.service import BenchDatabase, ServiceProcess
from tests.chaos import crash_points, network
from tests.integration.private_kafka import PrivateKafka
from xinfang_shared.contracts.acls import acls, principals
from xinfang_shared.contracts.topics import DEADLINES_EVENTS, MATTERS_ROUTED, MATTERS_STATUS, topics_to_create
from xinfang_shared.kafka_admin import apply_security, ensure_topics

SERVICES = ("intake", "routing", "supervision", "notify", "stats")


# Notices notify still owes, and outbox rows not yet published (see run()).
OWED = "SELECT " + " + ".join(
    [f"(SELECT count(*) FROM {s}.outbox)" for s in SERVICES]
    + ["(SELECT count(*) FROM notify.notifications WHERE status IN ('pending', 'held'))"]
)


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Injected:
    fault: str
    at_s: float  # since the load began
    recovered_s: float  # until the cluster was healthy again
    offered_before: int
    note: str = ""


@dataclass
class Check:
    what: str
    expected: str
    found: str
    ok: bool


class Chaos:
    def __init__(
        self,
        cluster: Cluster,
        kafka: PrivateKafka,
        load: Load,
        watch: Watch,
        t0: float,
        net: network.Network | None = None,
    ) -> None:
        self.cluster, self.kafka, self.load, self.watch, self.t0 = cluster, kafka, load, watch, t0
        self.network = net  # toxiproxy and the tmpfs, for the faults of tests/chaos/network.py
        self.injected: list[Injected] = []

    def instances(self, service: str) -> list[ServiceProcess]:
        return [p for p in self.cluster.processes if p.name.startswith(service + " ")]

    async def healthy(self) -> None:
        await asyncio.gather(*(p.wait_healthy(180) for p in self.cluster.processes))

    async def inject(self, fault: str, opts: argparse.Namespace) -> None:
        at = time.perf_counter() - self.t0
        offered = self.watch.offered
        began = time.perf_counter()
        action = ALL_FAULTS.get(fault)
        if action is None:
            raise ValueError(f"no such fault {fault!r} (faults: {', '.join(ALL_FAULTS)})")
        note = await action(self, opts)
        await self.healthy()
        self.injected.append(Injected(fault, at, time.perf_counter() - began, offered, note))
        say(f"{fault}: {note}; healthy again after {time.perf_counter() - began:.1f} s")


Fault = Callable[[Chaos, argparse.Namespace], Awaitable[str]]


def kill_service(service: str) -> Fault:
    async def kill(chaos: Chaos, _: argparse.Namespace) -> str:
        victim = chaos.instances(service)[0]
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        note = f"pid {victim.pid} SIGKILL, started again"
        victim.start()
        return note

    return kill


async def kill_kafka(chaos: Chaos, _: argparse.Namespace) -> str:
    assert chaos.kafka.proc is not None
    chaos.kafka.proc.send_signal(signal.SIGKILL)
    chaos.kafka.proc.wait(30)
    chaos.kafka.proc = None
    await asyncio.sleep(2)
    took = await asyncio.to_thread(chaos.kafka.start, 300.0)  # a busy machine: up to ~160 s
    return f"broker SIGKILL, restarted on its data in {took:.1f} s"


async def stop_kafka(chaos: Chaos, opts: argparse.Namespace) -> str:
    assert chaos.kafka.proc is not None
    os.kill(chaos.kafka.proc.pid, signal.SIGSTOP)
    await asyncio.sleep(opts.stop_s)
    os.kill(chaos.kafka.proc.pid, signal.SIGCONT)
    return f"broker SIGSTOP for {opts.stop_s:.0f} s, then SIGCONT"


async def crash_postgres(chaos: Chaos, _: argparse.Namespace) -> str:
    result = await asyncio.to_thread(
        subprocess.run,
        ["bash", str(ROOT / "deploy/local/postgres.sh"), "crash-restart"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"postgres crash-restart failed: {result.stderr}")
    return "pg_ctl stop -m immediate, then start (crash recovery)"


# Each fault: its name, and what injects it (returning how, for the table); the run injects them in this order.
ALL_FAULTS: dict[str, Fault] = {
    **{f"kill-{s}": kill_service(s) for s in SERVICES},
    "kill-kafka": kill_kafka,
    "stop-kafka": stop_kafka,
    "crash-postgres": crash_postgres,
    **network.FAULTS,
    **crash_points.FAULTS,
}
FAULTS = tuple(ALL_FAULTS)


async def steady(load: Load, rate: float, stop: asyncio.Event) -> None:
    """Offer `rate` matters a second until `stop` (in one-second slices, so faults land in the middle)."""
    while not stop.is_set():
        # A broker away: the producer's send fails and the offer is not acked. Anything else is a bug of the
        # load itself: it ends the run, rather than leaving checks that pass on nothing offered.
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            await open_loop(load, rate, 1.0)


async def read_all(bootstrap: str, name: str) -> list[Any]:
    """Every record of topic `name`, from its beginning to its end now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        records: list[Any] = []
        while True:
            positions = [await consumer.position(tp) for tp in ends]
            if all(at >= end for at, end in zip(positions, ends.values(), strict=True)):
                return records
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()


async def checks(cluster: Cluster, watch: Watch, load: Load) -> list[Check]:
    out: list[Check] = []

    def check(what: str, expected: Any, found: Any, ok: bool | None = None) -> None:
        out.append(Check(what, str(expected), str(found), expected == found if ok is None else ok))

    conn = await asyncpg.connect(cluster.dsn)
    try:
        acked = sorted(load.acked)
        stored = await conn.fetch(
            "SELECT external_id, count(*) AS n FROM intake.matters WHERE external_id = ANY($1) GROUP BY external_id",
            acked,
        )
        check("acknowledged submissions registered", len(acked), len(stored))
        check("registered twice (duplicated effect)", 0, sum(1 for r in stored if r["n"] > 1))
        registered = await conn.fetchval("SELECT count(*) FROM intake.matters")
        repeats = await conn.fetchval("SELECT count(*) FROM intake.matters WHERE duplicate_of IS NOT NULL")
        routed = await conn.fetchval("SELECT count(*) FROM routing.matters WHERE office IS NOT NULL")
        check("matters routed (routing.matters)", registered - repeats, routed)
        with_deadlines = await conn.fetchval("SELECT count(DISTINCT matter_id) FROM supervision.deadlines")
        check("matters with deadlines (supervision)", registered - repeats, with_deadlines)
        receipts = await conn.fetchval(
            "SELECT count(*) FROM notify.notifications WHERE notice = 'receipt' AND status IN ('sent', 'delivered')"
        )
        check("receipts sent (notify)", registered - repeats, receipts)
        repeat_notices = await conn.fetchval(
            "SELECT count(*) FROM notify.notifications WHERE notice = 'repeat' AND status IN ('sent', 'delivered')"
        )
        check("repeat notices sent (a repeat gets no receipt)", repeats, repeat_notices)
        counted = await conn.fetchval("SELECT count(*) FROM stats.facts WHERE registered_at IS NOT NULL")
        check("matters counted by stats (facts)", registered, counted)
        stats_repeats = await conn.fetchval("SELECT count(*) FROM stats.facts WHERE repeat IS NOT NULL")
        check("repeats counted as repeats by stats", repeats, stats_repeats)
        hourly = await conn.fetchval("SELECT coalesce(sum(matters), 0) FROM stats.hourly")
        check("stats' hourly counts, summed (new matters: repeats not)", registered - repeats, hourly)
        for schema in ("intake", "routing", "supervision", "notify", "stats"):
            check(f"{schema}'s outbox empty", 0, await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox"))
        by_channel = dict(
            await conn.fetch(
                "SELECT channel, count(*) FROM notify.notifications WHERE status IN ('sent', 'delivered')"
                " GROUP BY channel"
            )
        )
    finally:
        await conn.close()
    check("consumer lag, all groups", 0, await watch.lag())

    # The topics: a second distinct event for one effect is a duplicated effect; the same event again is delivery.
    for name, key in ((MATTERS_ROUTED.name, lambda e: e["matter_id"]), (DEADLINES_EVENTS.name, _deadline_key)):
        events = [orjson.loads(r.value) for r in await read_all(cluster.bootstrap, topic(name))]
        ids: dict[Any, set[str]] = defaultdict(set)
        for e in events:
            ids[key(e)].add(e["event_id"])
        distinct = sum(len(v) for v in ids.values())
        check(f"{name}: effects published twice", 0, sum(1 for v in ids.values() if len(v) > 1))
        out.append(
            Check(f"{name}: delivery-level duplicates (same event again)", "counted", str(len(events) - distinct), True)
        )
    status = [orjson.loads(r.value) for r in await read_all(cluster.bootstrap, topic(MATTERS_STATUS.name))]
    last: dict[str, str] = {}
    reordered = 0
    for e in status:
        if e["matter_id"] in last and e["at"] < last[e["matter_id"]]:
            reordered += 1
        last[e["matter_id"]] = max(e["at"], last.get(e["matter_id"], e["at"]))
    check(f"{MATTERS_STATUS.name}: a matter's events out of order", 0, reordered)

    # What the SMTP server and the gateway received, by key (Message-ID / OutId).
    mails = Counter(
        message_from_bytes(p.read_bytes(), policy=email_policy).get("Message-ID", "")
        for p in (cluster.home / "mail").glob("*.eml")
    )
    sms = Counter(json.loads(p.read_text())["out_id"] for p in (cluster.home / "sms").glob("*.json"))
    check("e-mail keys at the SMTP server = e-mails notify sent", by_channel.get("email", 0), len(mails))
    check("SMS keys at the gateway = SMS notify sent", by_channel.get("sms", 0), len(sms))
    resent = sum(n - 1 for n in mails.values()) + sum(n - 1 for n in sms.values())
    out.append(Check("resends with the same key (crash window, delivery level)", "counted", str(resent), True))
    return out


def _deadline_key(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e["matter_id"], e["deadline"], e["state"], e.get("due_at"))


def table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n== {title}")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


async def run(opts: argparse.Namespace) -> bool:
    creds = credentials()
    workdir = Path(tempfile.mkdtemp(prefix="xinfang-chaos-"))
    net = network.Network(workdir, opts)
    # Secured as `make up`'s broker: the services reach it through the proxy as their own principals (SCRAM, ACLs).
    kafka = PrivateKafka(workdir / "kafka", heap="1g", advertise_proxied=net.proxy_port, data=net.kafka_data, sasl=True)
    try:
        for line in await net.start(kafka):
            say(line)
        return await _run(opts, creds, workdir, kafka, net)
    finally:
        kafka.stop()
        net.close()


async def _run(
    opts: argparse.Namespace, creds: dict[str, str], workdir: Path, kafka: PrivateKafka, net: network.Network
) -> bool:
    await asyncio.to_thread(kafka.start, 120.0)
    say(f"private Kafka on {kafka.bootstrap}; work in {workdir}")
    await ensure_topics(kafka.bootstrap, {NAMESPACE + n: p for n, p in topics_to_create().items()})
    passwords = {p: secrets.token_urlsafe(18) for p in principals()}
    await apply_security(kafka.bootstrap, passwords, acls(NAMESPACE))
    db = BenchDatabase(creds["DATABASE_URL"], f"xinfang_chaos_{secrets.token_hex(4)}")
    await db.create()
    cluster: Cluster | None = None
    try:
        cluster = await start_cluster(
            db.dsn,
            kafka.bootstrap,
            workdir,
            Options(seed=opts.seed),
            services_bootstrap=kafka.proxied_bootstrap,
            principals=Principals(kafka.sasl_bootstrap, passwords),
        )
        pool = await asyncpg.create_pool(db.dsn, min_size=1, max_size=2)
        watch = Watch(cluster, pool)
        await watch.start()
        load = Load(cluster, watch, opts.seed)
        await load.start()
        stop = asyncio.Event()
        t0 = time.perf_counter()
        offering = asyncio.create_task(steady(load, opts.rate, stop))
        chaos = Chaos(cluster, kafka, load, watch, t0, net)
        try:
            await asyncio.sleep(opts.pause_s)
            for fault in opts.faults:
                await chaos.inject(fault, opts)
                await asyncio.sleep(opts.pause_s)
        finally:
            stop.set()
            await offering
            await load.flush()
        say(f"load stopped: {watch.offered:,} offered, {len(load.acked):,} acknowledged; draining")
        # Drained: every acknowledged matter through every stage, no lag, and still so a few seconds later.
        watch.offered = len(load.acked)
        await watch.until_drained("chaos drain", opts.drain_s, say)
        await asyncio.sleep(5)
        await watch.until_drained("chaos drain (settled)", opts.drain_s, say)
        # Owed without showing in the stages: a notice the server accepted while the database went away is marked
        # sent only once its claim lapses (SEND_LEASE_S) and it is sent again, with the same key; and outbox rows
        # no stage counts (routing's matters.routed.v1, status, unit inboxes) that a relay is still working off
        # after a long broker outage (disk-full). The checks wait for nothing owed and no lag, twice in a row.
        deadline = time.perf_counter() + opts.drain_s
        settled = 0
        while settled < 2 and time.perf_counter() < deadline:  # past it, the checks say what is missing
            await asyncio.sleep(1)
            settled = 0 if await pool.fetchval(OWED) or await watch.lag() else settled + 1
        try:
            found = await checks(cluster, watch, load)
        finally:
            await load.stop()
            await watch.stop()
            await pool.close()
    finally:
        if cluster is not None:
            stop_cluster(cluster)
        kafka.stop()
        await db.drop()
    table(
        f"faults injected (under a steady load of {opts.rate:.0f} matters/s)",
        ("fault", "at s", "healthy again after s", "offered before", "how"),
        [(i.fault, f"{i.at_s:.0f}", f"{i.recovered_s:.1f}", f"{i.offered_before:,}", i.note) for i in chaos.injected],
    )
    table(
        "checks",
        ("check", "expected", "found", "ok"),
        [(c.what, c.expected, c.found, "yes" if c.ok else "NO") for c in found],
    )
    failed = [c for c in found if not c.ok]
    print(f"\nchaos: {len(chaos.injected)} faults, {len(found)} checks, {len(failed)} failed; logs in {workdir}")
    return not failed


def _interrupted(*_: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=40.0, help="matters offered per second throughout")
    parser.add_argument("--pause-s", type=float, default=20.0, help="load between faults")
    parser.add_argument(
        "--stop-s", type=float, default=30.0, help="how long the broker is SIGSTOPped, the network slow, the disk full"
    )
    parser.add_argument("--latency-ms", type=float, default=300.0, help="net-slow's latency (± a third)")
    parser.add_argument(
        "--kafka-disk",
        default="2g",
        help="disk-full's tmpfs for Kafka's log directory (mount's size=; a run writes some 15 KB a matter and 7 MB"
        " a minute: the CI run about 250 MB, the default one about 1 GB)",
    )
    parser.add_argument("--drain-s", type=float, default=600.0, help="at most this long to drain after the load")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"in order, of: {', '.join(FAULTS)}")
    parser.add_argument("--seed", type=int, default=20251202)
    opts = parser.parse_args(argv)
    opts.faults = [f for f in opts.faults.split(",") if f]
    unknown = [f for f in opts.faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")
    # SIGTERM as Ctrl-C: the run's finally blocks stop the cluster and the broker and drop the database.
    signal.signal(signal.SIGTERM, _interrupted)
    ok = asyncio.run(run(opts))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
