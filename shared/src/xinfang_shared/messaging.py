"""Kafka plumbing every service shares: the broker factory and the retry / dead-letter middleware.

Delivery is at-least-once. The broker's ack policy is NACK_ON_ERROR: an offset is committed only after
the handler (and the middleware below) returned; an exception that escapes seeks back so the message is
read again. The dead-letter middleware sits inside that: it retries a failing handler with backoff and,
when the attempts are spent or the message can never succeed (poison), publishes it to `<topic>.dlq` with
its origin in headers and lets the consumer go on with the next message, unless the consumer's dead-letter
limit says it has dead-lettered too much lately (dlq_limit.py): then it halts instead, and the message is read
again once the halt ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.exceptions import HandlerException
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.middlewares import BaseMiddleware
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from .contracts.topics import DLQ_SUFFIX
from .dlq_limit import ConsumerHalted, Halts
from .kafka_auth import KafkaConnection
from .logging import redact

if TYPE_CHECKING:
    from faststream._internal.context.repository import ContextRepo
    from faststream.message import StreamMessage

log = logging.getLogger(__name__)

# Header names a dead-lettered message carries (operators and replay tools read them).
H_ERROR = "x-dlq-error"
H_ERROR_TYPE = "x-dlq-error-type"
H_SOURCE_TOPIC = "x-dlq-source-topic"
H_SOURCE_PARTITION = "x-dlq-source-partition"
H_SOURCE_OFFSET = "x-dlq-source-offset"
H_ATTEMPTS = "x-dlq-attempts"
H_CONSUMER_GROUP = "x-dlq-consumer-group"


class PoisonMessage(Exception):
    """The message can never be processed (malformed, violates the contract): dead-letter it at once."""


# Failures no retry can mend.
POISON_ERRORS: tuple[type[BaseException], ...] = (PoisonMessage, ValidationError, UnicodeDecodeError)
# Failures of the infrastructure, not of the message: retried (backing off) until they pass, never
# dead-lettered; while PostgreSQL is away nothing can be processed anyway, and nothing must be skipped.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


@dataclass
class RetryPolicy:
    max_attempts: int = 4
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_initial_s * 2 ** (attempt - 1)))


class DeadLetter:
    """Broker middleware factory: bounded retries with backoff, then `<topic>.dlq`, then ack."""

    def __init__(
        self, policy: RetryPolicy, consumer_group: str, registry: CollectorRegistry, halts: Halts | None = None
    ) -> None:
        self.policy = policy
        self.consumer_group = consumer_group
        self.halts = halts or Halts(service=consumer_group, metrics=registry)
        self.broker: KafkaBroker | None = None
        self.dead_lettered = Counter(
            "xinfang_dead_lettered_messages",
            "Messages sent to a dead-letter topic",
            ["topic", "error_type"],
            registry=registry,
        )
        self.retried = Counter(
            "xinfang_handler_retries",
            "Handler attempts that failed and were retried",
            ["topic"],
            registry=registry,
        )

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> _DeadLetterScope:
        return _DeadLetterScope(msg, context=context, owner=self)

    async def send(self, records: tuple[ConsumerRecord[Any, Any], ...], error: BaseException, attempts: int) -> None:
        assert self.broker is not None, "DeadLetter.broker is set by build_broker"
        error_text = redact(f"{type(error).__name__}: {error}")[:2000]
        for record in records:
            headers = {k: v.decode("utf-8", "replace") for k, v in (record.headers or ())}
            headers |= {
                H_ERROR: error_text,
                H_ERROR_TYPE: type(error).__name__,
                H_SOURCE_TOPIC: record.topic,
                H_SOURCE_PARTITION: str(record.partition),
                H_SOURCE_OFFSET: str(record.offset),
                H_ATTEMPTS: str(attempts),
                H_CONSUMER_GROUP: self.consumer_group,
            }
            await self.broker.publish(
                record.value or b"", topic=record.topic + DLQ_SUFFIX, key=record.key, headers=headers
            )
            self.dead_lettered.labels(record.topic, type(error).__name__).inc()
            log.warning(
                "dead-lettered a message",
                extra={
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "error_type": type(error).__name__,
                    "attempts": attempts,
                },
            )


class _DeadLetterScope(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: ContextRepo, owner: DeadLetter) -> None:
        super().__init__(msg, context=context)
        self.owner = owner

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: StreamMessage[Any]) -> Any:
        policy = self.owner.policy
        batch = isinstance(msg.raw_message, tuple)
        records = msg.raw_message if batch else (msg.raw_message,)
        if not records:
            return await call_next(msg)
        halts = self.owner.halts
        limit = halts.for_topic(records[0].topic)
        if limit is not None and limit.halted:
            halts.pause(limit.consumer, getattr(msg, "consumer", None))
            raise ConsumerHalted(limit.consumer, limit.describe())
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await call_next(msg)
            except HandlerException:
                raise  # explicit Ack/Nack/Reject from a handler
            except ConsumerHalted as halted:
                # Not acknowledged: the records are read again when the halt ends; until then, nothing is fetched.
                halts.pause(halted.consumer, getattr(msg, "consumer", None))
                raise
            except POISON_ERRORS as exc:
                error: BaseException = exc
                break
            except Exception as exc:
                if attempt >= policy.max_attempts and not isinstance(exc, TRANSIENT_ERRORS):
                    error = exc
                    break
                self.owner.retried.labels(records[0].topic).inc()
                log.info(
                    "handler failed, retrying",
                    extra={"topic": records[0].topic, "attempt": attempt, "error_type": type(exc).__name__},
                )
                await asyncio.sleep(policy.delay(attempt))
            else:
                if limit is not None and not batch:  # batch handlers keep their own account
                    limit.succeeded(1)
                return result
        if limit is not None and not limit.admit([True] * len(records), error):
            halts.pause(limit.consumer, getattr(msg, "consumer", None))
            raise ConsumerHalted(limit.consumer, limit.describe())
        try:
            await self.owner.send(records, error, attempt)
        except Exception:
            # The DLQ itself is unreachable: do not ack. Pause so the redelivery is not a tight loop.
            log.exception("could not dead-letter; the message will be redelivered")
            await asyncio.sleep(policy.backoff_max_s)
            raise
        return None


def build_broker(
    *,
    kafka: KafkaConnection,
    consumer_group: str,
    tracer_provider: TracerProvider,
    metrics: CollectorRegistry,
    retry: RetryPolicy,
    app_name: str,
    dead_letter: DeadLetter | None = None,
) -> KafkaBroker:
    """A broker whose subscribers are at-least-once, traced, measured and dead-letter on failure."""
    dead_letter = dead_letter or DeadLetter(retry, consumer_group, metrics)
    broker = KafkaBroker(
        kafka.bootstrap_servers,
        security=kafka.faststream(),
        client_id=app_name,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        # Through the root logger, so FastStream's lines get the same JSON format and redaction.
        # (not "faststream": that logger comes with FastStream's own coloured handler)
        logger=logging.getLogger("xinfang.broker"),
        # Its lines for every message or batch ("Received", "Processed") at debug; its errors keep their level.
        log_level=logging.DEBUG,
        # Topics come from the registry (deploy/local/topics.py); a typo must not create a new one.
        allow_auto_create_topics=False,
        middlewares=(
            KafkaTelemetryMiddleware(tracer_provider=tracer_provider),
            KafkaPrometheusMiddleware(registry=metrics, app_name=app_name),
            dead_letter,
        ),
    )
    dead_letter.broker = broker
    return broker
