"""The dead-letter limit: a consumer that dead-letters too much stops instead (arroyo's `DlqLimit` is the model).

One poison record is dead-lettered and the consumer goes on. But when most records fail, the cause is a bug
or a broken dependency, not the records: dead-lettering them would empty the topic into its `.dlq`. So each
consumer keeps the outcomes of its last records, and before it dead-letters any it asks its limit:
  - more than `max_share` of the last `window` records (default: more than 50 of the last 100), or
  - `max_in_a_row` records in a row (default 20)
and the consumer halts instead: nothing more is dead-lettered, the record that would have been is not
acknowledged (it is read again later), its partitions are paused, `/health` and the metric
`xinfang_consumer_halted` say so and why, and a log line at error level explains it.

A halt is kept in the service's schema (`consumer_halts`), so every instance of the service halts the
consumer, and a restart does not resume it. It ends
  - when the cause is gone: after a growing wait (`probe_after_s`, doubled up to `probe_max_s`) the consumer
    probes: it takes records again, and the first unit of work decides. A unit with at least one success
    means the records can be processed: the halt ends (and that unit's failures are dead-lettered as
    poison). A unit that fails entirely halts it again, with nothing dead-lettered;
  - or when an operator says so (`POST /v1/admin/consumers/{consumer}/resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Gauge

from .contracts.events import utc_now
from .logging import redact

log = logging.getLogger(__name__)


class ConsumerHalted(Exception):
    """The consumer's dead-letter limit is reached (or it is halted): the records in hand are not
    acknowledged, and its partitions are paused."""

    def __init__(self, consumer: str, reason: str) -> None:
        super().__init__(f"consumer {consumer} is halted: {reason}")
        self.consumer = consumer
        self.reason = reason


@dataclass(frozen=True)
class Halt:
    reason: str
    since: datetime
    next_probe_at: datetime
    probes: int = 0

    @property
    def error_type(self) -> str:
        """The type of the error that tripped it (the reason says "...; last error <Type>: <text>")."""
        found = _LAST_ERROR.search(self.reason)
        return found.group(1) if found else "error"


_LAST_ERROR = re.compile(r"last error ([A-Za-z_][\w.]*)")


class DeadLetterLimit:
    """The outcomes of one consumer's last records, and whether it may dead-letter more."""

    def __init__(self, consumer: str, *, window: int = 100, max_share: float = 0.5, max_in_a_row: int = 20) -> None:
        self.consumer = consumer
        self.window = window
        self.max_share = max_share
        self.max_in_a_row = max_in_a_row
        self._recent: deque[bool] = deque(maxlen=window)  # True: dead-lettered
        self._failed_in_window = 0
        self._in_a_row = 0
        self.halt: Halt | None = None
        # Set while probing: records are taken again, and the first unit of work decides.
        self.probing = False
        # Called (by the registry) when this limit halts on its own or a probe succeeds.
        self.on_halt: list[Any] = []
        self.on_probe_passed: list[Any] = []

    @property
    def halted(self) -> bool:
        return self.halt is not None and not self.probing

    def succeeded(self, count: int = 1) -> None:
        """Records processed without a dead letter."""
        if count <= 0:
            return
        if self.probing:
            self._probe_passed()
        self._add([False] * min(count, self.window))

    def admit(self, outcomes: Sequence[bool], error: BaseException) -> bool:
        """Whether the failures among `outcomes` (in processing order; True = would be dead-lettered) may be
        dead-lettered. False halts the consumer: the caller must not dead-letter them, and raises
        ConsumerHalted so the records are read again later."""
        if self.halted:
            return False
        if self.probing:
            if all(outcomes):
                self._halt_again(error)
                return False
            self._probe_passed()
        recent, failed, in_a_row = list(self._recent), self._failed_in_window, self._in_a_row
        for failed_now in outcomes:
            if len(recent) == self.window:
                failed -= recent.pop(0)
            recent.append(failed_now)
            failed += failed_now
            in_a_row = in_a_row + 1 if failed_now else 0
            if failed_now and (in_a_row >= self.max_in_a_row or failed > self.max_share * self.window):
                why = (
                    f"{in_a_row} records in a row failed"
                    if in_a_row >= self.max_in_a_row
                    else f"{failed} of the last {len(recent)} records failed"
                )
                self._trip(f"{why}; last error {type(error).__name__}: {error}")
                return False
        self._recent, self._failed_in_window, self._in_a_row = deque(recent, maxlen=self.window), failed, in_a_row
        return True

    def _add(self, outcomes: Iterable[bool]) -> None:
        for failed_now in outcomes:
            if len(self._recent) == self.window:
                self._failed_in_window -= self._recent[0]
            self._recent.append(failed_now)
            self._failed_in_window += failed_now
            self._in_a_row = self._in_a_row + 1 if failed_now else 0

    def _trip(self, reason: str) -> None:
        reason = redact(reason)[:1000]
        now = utc_now()
        self.halt = Halt(reason, now, now)
        self.probing = False
        log.error(
            "consumer halted: it would dead-letter too much, so the cause is a bug or a broken dependency, not"
            " the records; nothing more is dead-lettered until it is resumed",
            extra={"consumer": self.consumer, "reason": reason},
        )
        for hook in self.on_halt:
            hook(self, False)

    def _halt_again(self, error: BaseException) -> None:
        assert self.halt is not None
        self.probing = False
        log.warning(
            "consumer probe failed; it stays halted",
            extra={"consumer": self.consumer, "error_type": type(error).__name__},
        )
        for hook in self.on_halt:
            hook(self, True)

    def _probe_passed(self) -> None:
        self.probing = False
        self.halt = None
        self._reset()
        log.warning("consumer probe passed: the halt is over", extra={"consumer": self.consumer})
        for hook in self.on_probe_passed:
            hook(self)

    def _reset(self) -> None:
        self._recent.clear()
        self._failed_in_window = 0
        self._in_a_row = 0

    # ---- set from the registry (the persisted halt, an operator) ----------------------------------------

    def impose(self, halt: Halt) -> None:
        self.halt = halt
        self.probing = False

    def start_probe(self) -> None:
        if self.halt is not None:
            self.probing = True

    def lift(self) -> None:
        self.halt = None
        self.probing = False
        self._reset()

    def describe(self, *, detail: bool = True) -> str:
        """ok, or halted / probing since when and why (without `detail`: the error's type, not its text)."""
        if self.halt is None:
            return "ok"
        state = "probing" if self.probing else "halted"
        why = self.halt.reason if detail else self.halt.error_type
        return f"{state} since {self.halt.since.isoformat()}: {why}"


class Halts:
    """A service's dead-letter limits, their paused consumers, and the halts kept in PostgreSQL."""

    def __init__(
        self,
        *,
        service: str,
        metrics: CollectorRegistry,
        window: int = 100,
        max_share: float = 0.5,
        max_in_a_row: int = 20,
        probe_after_s: float = 30.0,
        probe_max_s: float = 600.0,
        poll_s: float = 2.0,
    ) -> None:
        self.service = service
        self.settings = {"window": window, "max_share": max_share, "max_in_a_row": max_in_a_row}
        self.probe_after = timedelta(seconds=probe_after_s)
        self.probe_max = timedelta(seconds=probe_max_s)
        self.poll_s = poll_s
        self.instance = f"{socket.gethostname()}:{id(self):x}"
        self.limits: dict[str, DeadLetterLimit] = {}
        self._by_topic: dict[str, DeadLetterLimit] = {}
        # consumer name → what reads for it (each has .consumer, its Kafka consumer once started), and the topics
        # it reads for it (None: all its partitions).
        self._consumers: dict[str, list[tuple[Any, frozenset[str] | None]]] = {}
        self._pool: asyncpg.Pool | None = None
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        # Halts tripped here and not yet stored (PostgreSQL was away): stored on the next sync, never lifted.
        self._unsaved: set[str] = set()
        self.gauge = Gauge(
            "xinfang_consumer_halted",
            "1 while a consumer is halted by its dead-letter limit (or probing), else 0",
            ["consumer"],
            registry=metrics,
        )

    # ---- registration ---------------------------------------------------------------------------------

    def limit(self, consumer: str, topics: Iterable[str] = ()) -> DeadLetterLimit:
        found = self.limits.get(consumer)
        if found is None:
            found = self.limits[consumer] = DeadLetterLimit(consumer, **self.settings)  # type: ignore[arg-type]
            found.on_halt.append(self._halted)
            found.on_probe_passed.append(self._probe_passed)
            self.gauge.labels(consumer).set(0)
        for topic in topics:
            self._by_topic[topic] = found
        return found

    def for_topic(self, topic: str) -> DeadLetterLimit | None:
        return self._by_topic.get(topic)

    def add_subscriber(self, consumer: str, subscriber: Any, *, topics: Iterable[str] | None = None) -> None:
        """`subscriber` reads for `consumer`: a FastStream subscriber (all its partitions), or a loop shared by
        several consumers (`topics`: those it reads for this one)."""
        only = frozenset(topics) if topics is not None else None
        self._consumers.setdefault(consumer, []).append((subscriber, only))

    # ---- pausing --------------------------------------------------------------------------------------

    def pause(self, consumer: str, kafka_consumer: Any | None = None) -> None:
        """Stop fetching for `consumer` (its partitions, and all of `kafka_consumer`'s if given)."""
        for c, topics in self._kafka_consumers(consumer, kafka_consumer):
            with contextlib.suppress(Exception):  # a consumer stopping or rebalancing: paused when next seen
                c.pause(*_partitions(c, topics))

    def _resume_fetching(self, consumer: str) -> None:
        for c, topics in self._kafka_consumers(consumer, None):
            with contextlib.suppress(Exception):
                c.resume(*_partitions(c, topics))

    def _kafka_consumers(self, consumer: str, extra: Any | None) -> list[tuple[Any, frozenset[str] | None]]:
        """The Kafka consumers of a consumer name (set once started), each with the topics it reads for it."""
        found = [
            (s.consumer, topics)
            for s, topics in self._consumers.get(consumer, [])
            if getattr(s, "consumer", None) is not None
        ]
        if extra is not None and all(extra is not c for c, _ in found):
            found.append((extra, None))
        return found

    # ---- lifecycle ------------------------------------------------------------------------------------

    async def start(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        await self.sync()
        self._task = asyncio.create_task(self._watch(), name=f"{self.service}-consumer-halts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.sync()
            except Exception as exc:  # PostgreSQL away: the limits in memory keep working
                log.warning("could not read the consumer halts", extra={"error_type": type(exc).__name__})

    async def sync(self) -> None:
        """Bring the limits in line with the halts kept in PostgreSQL: halt, probe or resume locally."""
        assert self._pool is not None
        for name in list(self._unsaved):
            limit = self.limits[name]
            if limit.halt is not None:
                await self._save_halt(name, limit.halt.reason, probe_failed=False)
            self._unsaved.discard(name)
        rows = {r["consumer"]: r for r in await self._pool.fetch("SELECT * FROM consumer_halts")}
        now = utc_now()
        for name, limit in self.limits.items():
            row = rows.get(name)
            if row is None:
                if limit.halt is not None and not limit.probing:
                    # An operator (or another instance's successful probe) ended the halt.
                    limit.lift()
                    self._resume_fetching(name)
                    log.warning("consumer resumed", extra={"consumer": name})
                elif limit.halt is not None and limit.probing:
                    limit.lift()
            else:
                halt = Halt(row["reason"], row["since"], row["next_probe_at"], row["probes"])
                if row["next_probe_at"] <= now:
                    if not limit.probing:
                        limit.impose(halt)
                        limit.start_probe()
                        self._resume_fetching(name)
                        log.warning("consumer probing: taking records again", extra={"consumer": name})
                elif limit.halt is None or limit.probing or limit.halt != halt:
                    limit.impose(halt)
                    self.pause(name)
            self.gauge.labels(name).set(0 if limit.halt is None else 1)

    # ---- hooks from the limits (called synchronously inside a handler) --------------------------------

    def _halted(self, limit: DeadLetterLimit, probe_failed: bool) -> None:
        self.pause(limit.consumer)
        self.gauge.labels(limit.consumer).set(1)
        self._unsaved.add(limit.consumer)
        self._write(self._store(limit.consumer, probe_failed))

    def _probe_passed(self, limit: DeadLetterLimit) -> None:
        self.gauge.labels(limit.consumer).set(0)
        self._unsaved.discard(limit.consumer)
        self._write(self._delete(limit.consumer))

    def _write(self, work: Any) -> None:
        if self._pool is None:
            work.close()
            return
        task = asyncio.get_running_loop().create_task(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _store(self, consumer: str, probe_failed: bool) -> None:
        limit = self.limits[consumer]
        if limit.halt is None or consumer not in self._unsaved:
            return
        try:
            await self._save_halt(consumer, limit.halt.reason, probe_failed=probe_failed)
        except Exception as exc:  # kept in memory; stored on the next sync
            log.warning("could not store a consumer halt", extra={"consumer": consumer, "error": type(exc).__name__})
        else:
            self._unsaved.discard(consumer)

    async def _save_halt(self, consumer: str, reason: str, *, probe_failed: bool) -> None:
        """Store the halt (another instance may have stored it first); after a failed probe, push the next
        probe further out: the wait doubles, up to probe_max."""
        assert self._pool is not None
        if probe_failed:
            await self._pool.execute(
                "UPDATE consumer_halts SET probes = probes + 1,"
                " next_probe_at = now() + least($2::interval, $3::interval * 2 ^ (probes + 1)) WHERE consumer = $1",
                consumer,
                self.probe_max,
                self.probe_after,
            )
            return
        await self._pool.execute(
            "INSERT INTO consumer_halts (consumer, reason, since, next_probe_at, probes, halted_by)"
            " VALUES ($1, $2, now(), now() + $3::interval, 0, $4) ON CONFLICT (consumer) DO NOTHING",
            consumer,
            reason,
            self.probe_after,
            self.instance,
        )

    async def _delete(self, consumer: str) -> None:
        assert self._pool is not None
        await self._pool.execute("DELETE FROM consumer_halts WHERE consumer = $1", consumer)

    # ---- operators ------------------------------------------------------------------------------------

    async def resume(self, consumer: str, operator: str) -> bool:
        """An operator ends a halt (in every instance, within the poll interval). False if not halted."""
        assert self._pool is not None
        deleted = await self._pool.fetchval("DELETE FROM consumer_halts WHERE consumer = $1 RETURNING true", consumer)
        self._unsaved.discard(consumer)
        limit = self.limits.get(consumer)
        if limit is not None and limit.halt is not None:
            limit.lift()
            self._resume_fetching(consumer)
            self.gauge.labels(consumer).set(0)
            deleted = True
        if deleted:
            log.warning("consumer resumed by an operator", extra={"consumer": consumer, "operator": operator})
        return bool(deleted)

    def states(self, *, detail: bool = True) -> dict[str, str]:
        return {name: limit.describe(detail=detail) for name, limit in sorted(self.limits.items())}


def _partitions(kafka_consumer: Any, topics: frozenset[str] | None) -> list[Any]:
    assigned = kafka_consumer.assignment()
    return list(assigned) if topics is None else [tp for tp in assigned if tp.topic in topics]
