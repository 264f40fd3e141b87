"""The dead-letter limit, `isolate` and the coalescer: one bad item costs nothing else; a systematic failure
halts instead of dead-lettering everything."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaMessage, TestKafkaBroker
from prometheus_client import CollectorRegistry

from xinfang_shared.batching import Coalescer, EventBatches, ItemFailed, isolate
from xinfang_shared.contracts.events import StatsAlert
from xinfang_shared.dlq_limit import ConsumerHalted, DeadLetterLimit, Halts
from xinfang_shared.kafka_auth import KafkaConnection
from xinfang_shared.messaging import DeadLetter, RetryPolicy, build_broker
from xinfang_shared.telemetry import configure_tracing

BOOM = RuntimeError("boom")


# --- the limit ---------------------------------------------------------------------------------------


def test_twenty_in_a_row_halt_and_nineteen_do_not() -> None:
    limit = DeadLetterLimit("c", window=100, max_share=0.5, max_in_a_row=20)
    assert all(limit.admit([True], BOOM) for _ in range(19))
    assert not limit.halted
    assert not limit.admit([True], BOOM)
    assert limit.halted and "20 records in a row" in limit.describe()
    assert not limit.admit([False, True], BOOM), "nothing more is dead-lettered while halted"


def test_a_success_breaks_the_run_but_the_share_over_the_window_still_counts() -> None:
    limit = DeadLetterLimit("c", window=100, max_share=0.5, max_in_a_row=20)
    # 19 failures, one success, again and again: never 20 in a row, but more than half of the last 100.
    admitted = 0
    while limit.admit([True] * 19, BOOM):
        admitted += 19
        limit.succeeded()
    assert limit.halted
    assert "51 of the last" in limit.describe()
    assert admitted == 38, "the third run of 19 would make 57 of 59"


def test_scattered_poison_never_halts() -> None:
    limit = DeadLetterLimit("c")
    for i in range(10_000):
        limit.admit([i % 10 == 0], BOOM) if i % 10 == 0 else limit.succeeded()
    assert not limit.halted


def test_a_batch_is_judged_in_order_and_a_large_failing_one_halts_at_once() -> None:
    limit = DeadLetterLimit("c")
    scattered = [i % 25 == 0 for i in range(500)]  # 4% poison spread through a batch: admitted
    assert limit.admit(scattered, BOOM)
    assert not limit.admit([True] * 500, BOOM)


def test_a_probe_ends_the_halt_with_one_success_and_halts_again_without() -> None:
    halts: list[bool] = []
    passed: list[str] = []
    limit = DeadLetterLimit("c", max_in_a_row=3)
    limit.on_halt.append(lambda _, probe_failed: halts.append(probe_failed))
    limit.on_probe_passed.append(lambda lim: passed.append(lim.consumer))
    for _ in range(3):
        limit.admit([True], BOOM)
    assert limit.halted and halts == [False]
    limit.start_probe()
    assert not limit.halted and limit.probing
    assert not limit.admit([True, True], BOOM), "a probe that fails entirely dead-letters nothing"
    assert limit.halted and halts == [False, True]
    limit.start_probe()
    assert limit.admit([True, False, True], BOOM), "one success: the cause is gone, the rest are poison"
    assert not limit.halted and limit.halt is None and passed == ["c"]


# --- isolate and the coalescer -----------------------------------------------------------------------


async def test_isolate_pins_each_failure_on_its_item_and_runs_every_other_once() -> None:
    ran: list[int] = []

    async def attempt(part: Sequence[int]) -> int:
        if any(n % 7 == 3 for n in part):
            raise ValueError("bad item")
        ran.extend(part)
        return len(part)

    items = list(range(50))
    isolated = await isolate(items, attempt, what="test")
    assert sorted(ran) == [n for n in items if n % 7 != 3] and len(ran) == len(set(ran))
    assert ran == sorted(ran), "order is kept"
    assert set(isolated.failed) == {n for n in items if n % 7 == 3}
    assert sum(count for _, count in isolated.done) == len(ran)


async def test_isolate_raises_an_outage_instead_of_blaming_items() -> None:
    async def attempt(part: Sequence[int]) -> None:
        raise asyncpg.PostgresConnectionError("gone")

    with pytest.raises(asyncpg.PostgresConnectionError):
        await isolate([1, 2, 3], attempt, what="test")


async def test_the_coalescer_answers_each_caller_and_refuses_only_the_bad_one() -> None:
    async def flush(batch: Sequence[str]) -> list[str]:
        if "bad" in batch:
            raise ValueError("cannot store")
        return [s.upper() for s in batch]

    coalescer: Coalescer[str, str] = Coalescer(flush, limit=DeadLetterLimit("http"), workers=1)
    coalescer.start()
    try:
        results = await asyncio.gather(*(coalescer.submit(s) for s in ["a", "b", "bad", "c"]), return_exceptions=True)
    finally:
        await coalescer.stop()
    assert results[:2] == ["A", "B"] and results[3] == "C"
    assert isinstance(results[2], ItemFailed) and isinstance(results[2].cause, ValueError)


async def test_the_coalescer_halts_when_everything_fails() -> None:
    async def flush(batch: Sequence[str]) -> list[str]:
        raise ValueError("a bug that fails every record")

    limit = DeadLetterLimit("http", max_in_a_row=5)
    coalescer: Coalescer[str, str] = Coalescer(flush, limit=limit, workers=1)
    coalescer.start()
    try:
        results = await asyncio.gather(*(coalescer.submit(str(i)) for i in range(8)), return_exceptions=True)
        with pytest.raises(ConsumerHalted):
            await coalescer.submit("later")
    finally:
        await coalescer.stop()
    assert all(isinstance(r, ConsumerHalted) for r in results), results


async def test_a_consumers_batch_is_logged_at_debug_and_its_failures_as_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alerts = [StatsAlert(window="PT1H", observed=n, baseline=1.0, at="2026-12-06T08:00:00Z") for n in range(4)]
    records = [
        ConsumerRecord("t", 0, offset, 0, 0, None, a.model_dump_json().encode(), None, 0, 0, ())
        for offset, a in enumerate(alerts)
    ]
    dead: list[int] = []

    class Dead:
        async def send(self, failed: tuple[ConsumerRecord[Any, Any], ...], _: BaseException, attempts: int) -> None:
            dead.extend(r.offset for r in failed)

    async def handle(events: list[StatsAlert]) -> int:
        if any(e.observed == 2 for e in events):
            raise ValueError("bad alert")
        return len(events)

    batches = EventBatches(StatsAlert, handle, Dead(), DeadLetterLimit("t:test"))  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG, logger="xinfang_shared.batching"):
        assert await batches.take(records[:2]) == 2
        assert await batches.take(records) == 3
    assert dead == [2]
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (logging.DEBUG, "handled a batch"),
        (logging.WARNING, "a batch failed; splitting it to find the item(s) at fault"),
        (logging.DEBUG, "handled a batch"),
    ]


# --- the middleware ----------------------------------------------------------------------------------


async def test_a_consumer_that_fails_every_message_stops_dead_lettering_at_the_limit() -> None:
    metrics = CollectorRegistry()
    halts = Halts(service="unit-test", metrics=metrics, max_in_a_row=5)
    retry = RetryPolicy(max_attempts=1, backoff_initial_s=0.001, backoff_max_s=0.002)
    dead_letter = DeadLetter(retry, "unit-test", metrics, halts)
    broker = build_broker(
        kafka=KafkaConnection("127.0.0.1:1"),
        consumer_group="unit-test",
        tracer_provider=configure_tracing("unit-test"),
        metrics=metrics,
        retry=retry,
        app_name="unit-test",
        dead_letter=dead_letter,
    )
    halts.limit("work:handle", ["work"])
    handled: list[int] = []
    dead: list[Any] = []

    @broker.subscriber("work", group_id="unit-test")
    async def handle(body: dict[str, Any]) -> None:
        handled.append(body["n"])
        raise RuntimeError("the database schema is missing a column")

    @broker.subscriber("work.dlq", group_id="ops")
    async def collect(body: Any, msg: KafkaMessage) -> None:
        dead.append(body)

    refused = 0
    async with TestKafkaBroker(broker):
        for n in range(12):
            try:
                await broker.publish({"n": n}, "work", key=b"k")
            except ConsumerHalted:
                refused += 1

    assert [d["n"] for d in dead] == [0, 1, 2, 3], "four dead-lettered, the fifth halts"
    assert handled == [0, 1, 2, 3, 4], "once halted, nothing more is even handled"
    assert refused == 8, "the halting message and every one after it are not acknowledged"
    assert halts.limits["work:handle"].halted
    assert 'xinfang_consumer_halted{consumer="work:handle"} 1.0' in _metrics(metrics)


def _metrics(registry: CollectorRegistry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()
