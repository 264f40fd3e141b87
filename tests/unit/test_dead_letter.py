"""The retry / dead-letter middleware, on FastStream's in-memory broker."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from faststream.kafka import KafkaMessage, TestKafkaBroker
from prometheus_client import CollectorRegistry

from xinfang_shared.kafka_auth import KafkaConnection
from xinfang_shared.messaging import (
    H_ATTEMPTS,
    H_ERROR,
    H_ERROR_TYPE,
    H_SOURCE_OFFSET,
    H_SOURCE_TOPIC,
    PoisonMessage,
    RetryPolicy,
    build_broker,
)
from xinfang_shared.telemetry import configure_tracing


def _broker() -> Any:
    return build_broker(
        kafka=KafkaConnection("127.0.0.1:1"),
        consumer_group="unit-test",
        tracer_provider=configure_tracing("unit-test"),
        metrics=CollectorRegistry(),
        retry=RetryPolicy(max_attempts=3, backoff_initial_s=0.001, backoff_max_s=0.002),
        app_name="unit-test",
    )


async def test_a_failing_handler_is_retried_then_dead_lettered_with_its_origin() -> None:
    broker = _broker()
    attempts: list[int] = []
    dead: list[tuple[Any, dict[str, str]]] = []

    @broker.subscriber("work", group_id="unit-test")
    async def handle(body: dict[str, Any]) -> None:
        attempts.append(body["n"])
        raise RuntimeError("database said no")

    @broker.subscriber("work.dlq", group_id="ops")
    async def collect(body: Any, msg: KafkaMessage) -> None:
        dead.append((body, msg.headers))

    async with TestKafkaBroker(broker):
        await broker.publish({"n": 1}, "work", key=b"m-1")

    assert attempts == [1, 1, 1]
    assert len(dead) == 1
    body, headers = dead[0]
    assert body == {"n": 1}
    assert headers[H_SOURCE_TOPIC] == "work"
    assert headers[H_ERROR_TYPE] == "RuntimeError"
    assert "database said no" in headers[H_ERROR]
    assert headers[H_ATTEMPTS] == "3"
    assert H_SOURCE_OFFSET in headers


async def test_poison_goes_to_the_dlq_at_once_and_the_next_message_is_processed() -> None:
    broker = _broker()
    seen: list[int] = []
    dead: list[str] = []

    @broker.subscriber("work", group_id="unit-test")
    async def handle(body: dict[str, Any]) -> None:
        if body["n"] == 1:
            raise PoisonMessage("cannot be parsed")
        seen.append(body["n"])

    @broker.subscriber("work.dlq", group_id="ops")
    async def collect(msg: KafkaMessage) -> None:
        dead.append(msg.headers[H_ATTEMPTS])

    async with TestKafkaBroker(broker):
        await broker.publish({"n": 1}, "work")
        await broker.publish({"n": 2}, "work")

    assert dead == ["1"]
    assert seen == [2]


async def test_a_message_that_does_not_fit_the_handler_model_is_poison() -> None:
    broker = _broker()
    dead: list[str] = []

    @broker.subscriber("typed", group_id="unit-test")
    async def handle(n: int) -> None:
        raise AssertionError("must not be called")

    @broker.subscriber("typed.dlq", group_id="ops")
    async def collect(msg: KafkaMessage) -> None:
        dead.append(msg.headers[H_ERROR_TYPE])

    async with TestKafkaBroker(broker):
        await broker.publish(b"not a number", "typed")

    assert dead == ["ValidationError"]


async def test_a_handler_that_recovers_is_not_dead_lettered() -> None:
    broker = _broker()
    calls = 0
    dead: list[Any] = []

    @broker.subscriber("flaky", group_id="unit-test")
    async def handle(body: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        if calls < 2:
            raise ConnectionError("blip")

    @broker.subscriber("flaky.dlq", group_id="ops")
    async def collect(body: Any) -> None:
        dead.append(body)

    async with TestKafkaBroker(broker):
        await broker.publish({"n": 1}, "flaky")

    assert calls == 2
    assert dead == []


def test_the_broker_tells_each_message_at_debug_and_its_errors_at_their_level(caplog: pytest.LogCaptureFixture) -> None:
    # FastStream's logging middleware writes "Received" and "Processed" for every message (or batch) through the
    # broker's logger state at its level, and an error at ERROR (the in-memory broker swaps the logger for a
    # mock, so the state is asked directly, as the middleware does).
    broker = _broker()
    broker._setup_logger()
    with caplog.at_level(logging.DEBUG, logger="xinfang.broker"):
        broker.config.logger.log("Received", extra={})
        broker.config.logger.log("Processed", extra={})
        broker.config.logger.log("RuntimeError: boom", log_level=logging.ERROR, extra={})
    told = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert told == [
        ("xinfang.broker", logging.DEBUG, "Received"),
        ("xinfang.broker", logging.DEBUG, "Processed"),
        ("xinfang.broker", logging.ERROR, "RuntimeError: boom"),
    ]
