"""One trace per matter through batch consumers: the context each record came with, carried to what its handling
writes to the outbox.

A consumer handles a poll's records as one batch, but a trace follows one matter. So for the records of a batch
(`traced_records`, run by the consumer loop around each registration's handler):
  - with spans recorded: one CONSUMER span per record, `process <topic>`, parented by the context its producer
    sent in the record's headers (OpenTelemetry's messaging conventions), ended when the batch is handled;
  - without: no span, the record's own `traceparent` passed on as it came (a downstream service that records
    continues the trace).
What the batch writes to the outbox carries, row by row, the context of the record it came from: the handler
names it (`Outgoing.context`, from `record_carrier`), or else it is the record with the row's key (a matter's
events are keyed by its id on every topic), or else the context current when the row is written (a scheduler's
pass, an HTTP request). A record found processed before (`mark_redelivered`, from the inbox) gets a `dedup` span
under its own, so a redelivery shows in the matter's trace.

No attribute carries a record's key or value: only topic, partition, offset and consumer group.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

Carrier = dict[str, str]
RecordId = tuple[str, int, int]  # topic, partition, offset
TRACE_HEADERS = ("traceparent", "tracestate")
W3C = TraceContextTextMapPropagator()


@dataclass
class _Batch:
    tracer: Tracer | None
    by_record: dict[RecordId, Carrier] = field(default_factory=dict)
    by_key: dict[str, Carrier] = field(default_factory=dict)
    spans: dict[RecordId, Span] = field(default_factory=dict)
    by_event: dict[uuid.UUID, RecordId] = field(default_factory=dict)


_current: ContextVar[_Batch | None] = ContextVar("xinfang_traced_records", default=None)


def _record_id(record: ConsumerRecord[Any, Any]) -> RecordId:
    return (record.topic, record.partition, record.offset)


def _incoming(record: ConsumerRecord[Any, Any]) -> Carrier:
    # A header's value may be null (Kafka allows it, and channel systems write these topics).
    return {k: v.decode("latin-1") for k, v in record.headers or () if k in TRACE_HEADERS and isinstance(v, bytes)}


def inject(context: Context | None = None) -> Carrier:
    """A context as W3C trace-context headers only: never baggage, which a caller may fill with anything."""
    carrier: Carrier = {}
    W3C.inject(carrier, context=context)
    return carrier


def extract(headers: Mapping[str, str]) -> Context:
    return W3C.extract({k: v for k, v in headers.items() if k in TRACE_HEADERS})


def current_carrier() -> Carrier:
    """The current context as W3C headers (empty when there is none)."""
    return inject()


@contextlib.contextmanager
def traced_records(tracer: Tracer | None, records: Sequence[ConsumerRecord[Any, Any]], group: str) -> Iterator[None]:
    """See the module. `tracer` None: spans are not recorded."""
    batch = _Batch(tracer)
    token = _current.set(batch)
    try:
        for record in records:
            _trace(batch, record, group)
        yield
    except BaseException as exc:
        for span in batch.spans.values():
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        _current.reset(token)
        for span in batch.spans.values():
            span.end()


def _trace(batch: _Batch, record: ConsumerRecord[Any, Any], group: str) -> None:
    incoming = _incoming(record)
    rid = _record_id(record)
    if batch.tracer is None:
        carrier = incoming
    else:
        span = batch.tracer.start_span(
            f"process {record.topic}",
            context=extract(incoming),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
                "messaging.consumer.group.name": group,
            },
        )
        batch.spans[rid] = span
        carrier = inject(trace.set_span_in_context(span))
    batch.by_record[rid] = carrier
    if record.key is not None and carrier:
        batch.by_key.setdefault(record.key.decode("utf-8", "replace"), carrier)


def record_carrier(record: ConsumerRecord[Any, Any]) -> Carrier | None:
    """The context what a record's handling writes should carry (None outside a traced batch)."""
    batch = _current.get()
    return None if batch is None else batch.by_record.get(_record_id(record))


def outgoing_carrier(key: str | None) -> Carrier | None:
    """The context of the batch's record with this key, if any."""
    batch = _current.get()
    if batch is None or key is None:
        return None
    return batch.by_key.get(key)


def note_event(record: ConsumerRecord[Any, Any], event_id: uuid.UUID) -> bool:
    """Which record an event came from; False (and a dedup span) when an earlier record of the batch carried
    the same event."""
    batch = _current.get()
    if batch is None or batch.tracer is None:  # only spans use it
        return True
    if event_id in batch.by_event:
        _dedup(batch, _record_id(record), "a copy earlier in the batch")
        return False
    batch.by_event[event_id] = _record_id(record)
    return True


def mark_redelivered(event_ids: Iterable[uuid.UUID]) -> None:
    """Events of the batch its consumer had processed before (the inbox said so): a dedup span each."""
    batch = _current.get()
    if batch is None or batch.tracer is None:
        return
    for event_id in event_ids:
        rid = batch.by_event.get(event_id)
        if rid is not None:
            _dedup(batch, rid, "processed before")


def _dedup(batch: _Batch, rid: RecordId, why: str) -> None:
    span = batch.spans.get(rid)
    if batch.tracer is None or span is None:
        return
    span.set_attribute("xinfang.redelivered", True)
    batch.tracer.start_span(
        "dedup", context=trace.set_span_in_context(span), attributes={"xinfang.dedup.reason": why}
    ).end()


def carriers(items: Sequence[tuple[str | None, Mapping[str, str] | None]]) -> list[Carrier]:
    """For outbox rows (key, explicit context): each row's context, as `outbox.enqueue_many` stores it."""
    here: Carrier | None = None
    found: list[Carrier] = []
    for key, explicit in items:
        carrier = dict(explicit) if explicit is not None else outgoing_carrier(key)
        if carrier is None:
            if here is None:
                here = current_carrier()
            carrier = here
        found.append(carrier)
    return found
