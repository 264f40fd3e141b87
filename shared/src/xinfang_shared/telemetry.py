"""OpenTelemetry set-up: one tracer provider per process, OTLP export when a collector is configured.

Kafka spans and W3C trace-context headers come from FastStream's KafkaTelemetryMiddleware (see
`messaging.build_broker`); HTTP spans from the FastAPI instrumentation; SQL spans from asyncpg's.
Span attributes never carry payloads, so no personal data reaches traces.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

_provider: TracerProvider | None = None


def configure_tracing(service: str, otlp_endpoint: str | None = None, *, record: bool | None = None) -> TracerProvider:
    """Install (once) and return the process's tracer provider.

    Spans are recorded when they go somewhere: an OTLP endpoint is configured, or `record` says so (tests
    attach an in-memory exporter). Otherwise spans are not recorded, which costs next to nothing, and the
    W3C trace context still travels in Kafka headers so a downstream service that records continues it.
    """
    global _provider
    if _provider is None:
        recording = record if record is not None else bool(otlp_endpoint)
        _provider = TracerProvider(
            resource=Resource.create({"service.name": f"xinfang-{service}"}),
            sampler=ALWAYS_ON if recording else ALWAYS_OFF,
        )
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            _provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces"))
            )
        trace.set_tracer_provider(_provider)
    return _provider


def add_span_processor(processor: SpanProcessor) -> None:
    """Attach another processor (tests attach an in-memory exporter)."""
    if _provider is None:
        raise RuntimeError("configure_tracing() first")
    _provider.add_span_processor(processor)


def instrument_asyncpg(provider: TracerProvider) -> None:
    """SQL spans (statement text only: parameters, which may hold personal data, are not captured)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider, capture_parameters=False)
