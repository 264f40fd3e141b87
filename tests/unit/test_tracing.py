"""tracing.py on its own: a span per record under its producer's context, the context each outbox row carries,
dedup spans, and what a hostile or broken record cannot do (a null header, a failing handler, baggage)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from xinfang_shared import tracing

PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{PARENT_TRACE}-b7ad6b7169203331-01"


def _record(offset: int, key: str, headers: list[tuple[str, Any]]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t.v1", 0, offset, 0, 0, key.encode(), b"{}", None, 0, 0, headers)


@pytest.fixture
def spans() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def test_each_record_is_processed_in_its_producer_s_trace_and_its_rows_carry_its_span(
    spans: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    traced = _record(1, "matter-a", [("traceparent", PARENT.encode())])
    fresh = _record(2, "matter-b", [])
    with tracing.traced_records(tracer, [traced, fresh], "xinfang-routing"):
        by_key = tracing.carriers([("matter-a", None), ("matter-b", None), ("other", None)])
        explicit = tracing.carriers([("matter-a", {"traceparent": "x"})])
        assert tracing.record_carrier(traced) == by_key[0]
    assert explicit == [{"traceparent": "x"}], "a handler's explicit context wins"
    done = {s.attributes["messaging.kafka.offset"]: s for s in exporter.get_finished_spans()}  # type: ignore[index]
    assert format(done[1].context.trace_id, "032x") == PARENT_TRACE and done[1].parent is not None
    assert done[2].parent is None, "a record that came with no context starts its own trace"
    assert by_key[0]["traceparent"].split("-")[2] == format(done[1].context.span_id, "016x")
    assert by_key[1]["traceparent"].split("-")[2] == format(done[2].context.span_id, "016x")
    assert by_key[2] == {}, "no record with that key, and no current context"
    assert set(done[1].attributes or {}) == {
        "messaging.system",
        "messaging.operation.type",
        "messaging.operation.name",
        "messaging.destination.name",
        "messaging.destination.partition.id",
        "messaging.kafka.offset",
        "messaging.consumer.group.name",
    }, "no key, no value"


def test_without_spans_the_record_s_context_is_passed_on_as_it_came() -> None:
    record = _record(1, "matter-a", [("traceparent", PARENT.encode()), ("baggage", b"name=secret")])
    with tracing.traced_records(None, [record], "g"):
        assert tracing.carriers([("matter-a", None)]) == [{"traceparent": PARENT}], "and nothing else"


def test_a_null_header_a_failing_handler_and_baggage_change_nothing_for_the_others(
    spans: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    records = [_record(1, "a", [("traceparent", None)]), _record(2, "b", [("traceparent", PARENT.encode())])]
    with pytest.raises(RuntimeError), tracing.traced_records(tracer, records, "g"):
        raise RuntimeError("the handler failed")
    finished = exporter.get_finished_spans()
    assert len(finished) == 2, "every record's span ended"
    assert {s.status.status_code for s in finished} == {StatusCode.ERROR}
    # Baggage a caller set (it can hold anything) never rides along into the outbox or onto the bus.
    token = context.attach(baggage.set_baggage("petitioner", "王建国"))
    try:
        with trace.get_tracer("t").start_as_current_span("request"):
            assert "baggage" not in tracing.current_carrier()
    finally:
        context.detach(token)


def test_a_redelivered_event_and_a_copy_in_the_batch_get_a_dedup_span(
    spans: tuple[trace.Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    first, copy, seen = (_record(i, f"m{i}", []) for i in range(3))
    same, before = uuid.uuid4(), uuid.uuid4()
    with tracing.traced_records(tracer, [first, copy, seen], "g"):
        assert tracing.note_event(first, same) and tracing.note_event(seen, before)
        assert not tracing.note_event(copy, same)
        tracing.mark_redelivered([before])
    finished = exporter.get_finished_spans()
    process = {s.attributes["messaging.kafka.offset"]: s for s in finished if s.name.startswith("process")}  # type: ignore[index]
    dedups = [s for s in finished if s.name == "dedup"]
    assert sorted(d.parent.span_id for d in dedups if d.parent) == sorted(
        [process[1].context.span_id, process[2].context.span_id]
    )
    assert process[0].attributes.get("xinfang.redelivered") is None  # type: ignore[union-attr]
