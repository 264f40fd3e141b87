"""What a service tells its operators beyond its own counters: HTTP requests by route and status, the process
(CPU, memory, file descriptors, GC), and gauges read when Prometheus scrapes (consumer lag, outbox backlog,
each service's own: notices by status, open deadlines by stage, open surge alerts).

A scrape-time gauge costs a query per scrape (every 15 s or so), never one per record: the hot paths stay as
they are. A probe that fails or takes over `PROBE_TIMEOUT_S` leaves its gauges as they were and counts
`xinfang_scrape_probe_failures` (a scrape always answers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
Probe = Callable[[], Awaitable[None]]
# Routes a request matched no route of: one label, whatever path a scanner tries (bounded cardinality).
UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Scrapes within this many seconds of the last probes' run reuse its values: anyone may read /metrics, and every
# instance is scraped; the queries run at most this often.
PROBES_FRESH_S = 5.0


def register_process_metrics(registry: CollectorRegistry) -> None:
    """process_cpu_seconds_total, process_resident_memory_bytes, open fds, python_gc_*, python_info."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


class HttpMetrics:
    """`xinfang_http_requests` by method, route (the route's template, never the path: a path can hold a
    tracking code) and status, and `xinfang_http_request_seconds` by method and route. As ASGI middleware
    (`middleware`) or called by a handler that answers outside FastAPI (`observe`)."""

    def __init__(self, registry: CollectorRegistry, *, skip: frozenset[str] = frozenset()) -> None:
        self.requests = Counter(
            "xinfang_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=registry
        )
        self.seconds = Histogram(
            "xinfang_http_request_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.skip = skip

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "OTHER"  # a client picks the method: the label set stays bounded
        self.requests.labels(method, route, str(status)).inc()
        self.seconds.labels(method, route).observe(seconds)

    def middleware(self, app: Any) -> Any:
        """ASGI middleware around `app` (for `add_middleware`, which calls it with the app)."""

        async def measured(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] in self.skip:
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500  # unless a response starts: an exception that escaped is a 500 to the client

            async def watched(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, watched)
            finally:
                # The router writes the matched route into the scope it was given (Starlette updates it in place).
                route = getattr(scope.get("route"), "path", None) or UNMATCHED
                self.observe(scope["method"], route, status, time.perf_counter() - started)

        return measured


class ScrapeProbes:
    """Gauges set by queries run when /metrics is read, all at once, each within PROBE_TIMEOUT_S."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.probes: list[tuple[str, Probe]] = []
        self._lock = asyncio.Lock()
        self._ran_at: float | None = None
        self.failures = Counter(
            "xinfang_scrape_probe_failures", "Scrape-time probes that failed or timed out", ["probe"], registry=registry
        )

    def add(self, name: str, probe: Probe) -> None:
        self.probes.append((name, probe))

    async def run(self) -> None:
        """Run every probe, unless they ran less than PROBES_FRESH_S ago; one run at a time."""
        async with self._lock:
            now = time.monotonic()
            if self._ran_at is not None and now - self._ran_at < PROBES_FRESH_S:
                return
            await self._run_all()
            self._ran_at = time.monotonic()

    async def _run_all(self) -> None:
        async def one(name: str, probe: Probe) -> None:
            try:
                await asyncio.wait_for(probe(), PROBE_TIMEOUT_S)
            except Exception as exc:
                self.failures.labels(name).inc()
                log.warning("a metrics probe failed", extra={"probe": name, "error_type": type(exc).__name__})

        await asyncio.gather(*(one(name, probe) for name, probe in self.probes))


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing there yet
    end: int  # the offset the next record will get (high watermark)
    start: int = 0  # the partition's first offset (retention moves it): where a group with no commit begins

    @property
    def lag(self) -> int:
        """Records not yet committed by the group; with no commit, all the partition holds (the group reads a new
        partition from its earliest offset)."""
        return max(0, self.end - max(self.committed or 0, self.start))


def lags(
    group: str,
    committed: Mapping[TopicPartition, int | None],
    ends: Mapping[TopicPartition, int],
    starts: Mapping[TopicPartition, int] | None = None,
) -> list[PartitionLag]:
    """Per partition of `ends`, in topic and partition order."""
    starts = starts or {}
    return [
        PartitionLag(group, tp.topic, tp.partition, committed.get(tp), end, starts.get(tp, 0))
        for tp, end in sorted(ends.items(), key=lambda item: (item[0].topic, item[0].partition))
    ]


def committed_offsets(offsets: Mapping[TopicPartition, Any]) -> dict[TopicPartition, int | None]:
    """An admin client's list_consumer_group_offsets answer as offsets (-1, no commit, as None)."""
    return {tp: (meta.offset if meta.offset >= 0 else None) for tp, meta in offsets.items()}
