"""The runtime every service shares: one process serving HTTP (FastAPI) and consuming Kafka (FastStream).

A service module builds a `Service`, registers what it reads with `service.consume` (one consumer for all
its topics, consuming.py; a per-record FastStream subscriber with `service.subscriber`) and its routes on
`service.api`, and hands `service.asgi()` to uvicorn. Start-up opens the database pool, starts the broker,
the consumer and the outbox relay; `/health` reports on them and on any consumer its dead-letter limit halted;
`/metrics` serves Prometheus text; operators list and resume halted consumers under `/v1/admin/consumers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import crashpoints
from .consuming import ConsumerLoop, Lane, LoopMetrics, RecordsHandler, Registration
from .contracts.events import FieldError
from .db import create_pool
from .dlq_limit import DeadLetterLimit, Halts
from .inbox import prune_inbox
from .logging import configure_logging
from .messaging import TRANSIENT_ERRORS, DeadLetter, RetryPolicy, build_broker
from .observability import (
    HttpMetrics,
    PartitionLag,
    Probe,
    ScrapeProbes,
    committed_offsets,
    lags,
    register_process_metrics,
)
from .outbox import OutboxRelay
from .settings import ServiceSettings
from .staff import actor_dependency
from .telemetry import configure_tracing, instrument_asyncpg

log = logging.getLogger(__name__)

Hook = Callable[["Service"], Awaitable[None]]
# How long a background loop has to finish once asked to stop (within the pods' grace period).
BACKGROUND_STOP_S = 15.0
# /health/ready answers within a probe's timeout (Kubernetes' default is 1 s; the manifests give 3 s).
READY_TIMEOUT_S = 1.5
# Probes and scrapes: not measured as requests (a probe every few seconds would drown the figures).
OPS_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})
S = TypeVar("S")


class Late(Generic[S]):
    """A service's state, which exists once it has started, for handlers and routes registered before:
    `late.state = ...` in an on_start hook, `late()` where it is used."""

    def __init__(self, service_name: str) -> None:
        self.service_name = service_name
        self.state: S | None = None

    def __call__(self) -> S:
        if self.state is None:
            raise RuntimeError(f"{self.service_name} has not started")
        return self.state


class ErrorList(BaseModel):
    """Every 4xx that is about the request's content: what is wrong, field by field."""

    detail: str
    errors: list[FieldError]


def _field(loc: tuple[int | str, ...]) -> str:
    # FastAPI prefixes the request part ("body", "query", "path"); the body's fields are named as they are.
    parts = [str(p) for p in (loc[1:] if loc and loc[0] == "body" else loc)]
    return ".".join(parts) or "<body>"


def error_response(code: int, detail: str, errors: list[FieldError]) -> JSONResponse:
    return JSONResponse(ErrorList(detail=detail, errors=errors).model_dump(mode="json"), status_code=code)


class FieldRefused(Exception):
    """Raised by a route whose request is well-formed but asks for what cannot be given (dates the wrong way
    round, a span too long): answered 422 naming the field, like any invalid request."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


async def _refused(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FieldRefused)
    errors = [FieldError(field=exc.field, message=exc.message)]
    return error_response(status.HTTP_422_UNPROCESSABLE_CONTENT, "the request is invalid", errors)


def bearer_token(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header's value, or None."""
    scheme, _, key = (authorization or "").partition(" ")
    return key if scheme.lower() == "bearer" and key else None


async def _validation_errors(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(field="<body>", message=f"not valid JSON: {e.get('ctx', {}).get('error', e['msg'])}")
        if e["type"] == "json_invalid"
        else FieldError(field=_field(tuple(e["loc"])), message=e["msg"])
        for e in exc.errors()
    ]
    return error_response(status.HTTP_422_UNPROCESSABLE_CONTENT, "the request is invalid", errors)


async def _http_errors(request: Request, exc: Exception) -> Response:
    """FastAPI's own 400 for a body it cannot read (not UTF-8, say) names no field: it is a 422 on `<body>`
    like any other unreadable body. Every other HTTP error is answered as FastAPI would."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_400_BAD_REQUEST and str(exc.detail).startswith("There was an error parsing"):
        errors = [FieldError(field="<body>", message="cannot be read as JSON text (is it UTF-8?)")]
        return error_response(status.HTTP_422_UNPROCESSABLE_CONTENT, "the request is invalid", errors)
    return await http_exception_handler(request, exc)


class BodyLimit:
    """Refuses a request body over `max_bytes` with 413 naming `<body>`, before any route reads it (by its
    Content-Length, or as it streams in), so no endpoint can be made to buffer an unbounded body."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = (
            ErrorList(
                detail="the request body is too large",
                errors=[FieldError(field="<body>", message=f"at most {self.max_bytes} bytes are accepted")],
            )
            .model_dump_json()
            .encode()
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(BaseException):
    """Raised from `receive` past the limit. A BaseException, because FastAPI turns any Exception while it
    reads a body into a 400 "There was an error parsing the body"; this must reach BodyLimit."""


class Service:
    def __init__(self, settings: ServiceSettings, *, migrations: Path, title: str, messaging: bool = True) -> None:
        """`messaging` False: a service that neither reads nor writes Kafka (the console): no broker, no outbox
        relay, no consumers, and its health does not ask for Kafka."""
        self.settings = settings
        self.messaging = messaging
        self.migrations = migrations
        configure_logging(settings.service_name, settings.log_level, settings.log_format)
        crashpoints.announce(settings.environment)  # XINFANG_CRASH_AT: armed, or ignored in production
        self.tracer_provider = configure_tracing(
            settings.service_name, settings.otel_exporter_otlp_endpoint, record=settings.traces_recorded
        )
        self.metrics = CollectorRegistry()
        register_process_metrics(self.metrics)
        self.http_metrics = HttpMetrics(self.metrics, skip=OPS_PATHS)
        self.scrape = ScrapeProbes(self.metrics)
        self._lag = Gauge(
            "xinfang_consumer_lag",
            "Records of a partition this instance reads not yet committed by its group (end offset - committed)",
            ["group", "topic", "partition"],
            registry=self.metrics,
        )
        self._admin: AIOKafkaAdminClient | None = None
        retry = RetryPolicy(
            settings.consumer_max_attempts, settings.consumer_backoff_initial_s, settings.consumer_backoff_max_s
        )
        self.halts = Halts(
            service=settings.service_name,
            metrics=self.metrics,
            window=settings.dlq_limit_window,
            max_share=settings.dlq_limit_max_share,
            max_in_a_row=settings.dlq_limit_in_a_row,
            probe_after_s=settings.halt_probe_after_s,
            probe_max_s=settings.halt_probe_max_s,
            poll_s=settings.halt_poll_s,
        )
        # Also used directly by batch handlers that dead-letter single records of a batch.
        self.dead_letter = DeadLetter(retry, settings.consumer_group, self.metrics, self.halts)
        self.broker: KafkaBroker = build_broker(
            kafka=settings.kafka,
            consumer_group=settings.consumer_group,
            tracer_provider=self.tracer_provider,
            metrics=self.metrics,
            retry=retry,
            app_name=f"xinfang-{settings.service_name}",
            dead_letter=self.dead_letter,
        )
        self._pool: asyncpg.Pool | None = None
        self.relay: OutboxRelay | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._background: list[tuple[asyncio.Task[None], Callable[[], None] | None]] = []
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        self._pings: tuple[float, dict[str, str]] | None = None
        self._main_lane = Lane(
            "main",
            fetch_min_bytes=settings.consume_fetch_min_bytes,
            fetch_max_wait_ms=settings.consume_fetch_max_wait_ms,
            max_records=settings.consume_max_records,
        )
        self._loops: dict[str, ConsumerLoop] = {}
        self._loop_metrics = LoopMetrics.register(self.metrics)
        self.recording = recording = self.tracer_provider.sampler.get_description() != "AlwaysOffSampler"
        if recording:
            instrument_asyncpg(self.tracer_provider)
        self.api = FastAPI(
            title=title,
            version="1",
            lifespan=self._lifespan,
            # FastAPI's native OpenTelemetry: one server span per request, only when spans are recorded
            # (the per-request cost is otherwise a quarter of a small request).
            telemetry={
                "tracing": recording,
                "tracer_provider": self.tracer_provider,
                "metrics": False,
                "logs": False,
                "exclude": lambda scope: scope.get("path") in OPS_PATHS,
            },
        )
        self.api.add_exception_handler(RequestValidationError, _validation_errors)
        self.api.add_exception_handler(StarletteHTTPException, _http_errors)
        self.api.add_exception_handler(FieldRefused, _refused)
        self.api.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
        # Added last, so outermost: it also counts what BodyLimit refuses.
        self.api.add_middleware(self.http_metrics.middleware)
        self.api.add_api_route("/health", self._health, methods=["GET"], tags=["ops"])
        self.api.add_api_route("/health/live", self._live, methods=["GET"], tags=["ops"])
        self.api.add_api_route("/health/ready", self._ready, methods=["GET"], tags=["ops"])
        self.api.add_api_route("/metrics", self._metrics, methods=["GET"], tags=["ops"])
        self._add_consumer_routes()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("the database pool is opened when the service starts")
        return self._pool

    def document_schemas(self, *models: type[BaseModel]) -> None:
        """Add models to the OpenAPI components (for bodies a route reads by hand and names by $ref)."""
        generate = self.api.openapi

        def openapi() -> dict[str, Any]:
            if self.api.openapi_schema is None:
                schema = generate()
                _, defs = models_json_schema(
                    [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
                )
                schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
            return self.api.openapi_schema or generate()

        self.api.openapi = openapi  # type: ignore[method-assign]

    def subscriber(
        self, *topics: str, consumer: str | None = None, **options: Any
    ) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
        """`broker.subscriber` of the contract's `topics` in this service's namespace (TOPIC_PREFIX), with its
        consumer group, reading from the earliest offset when the group is new (so nothing published before the
        first deployment is skipped), under a dead-letter limit named `consumer` (default: its title, or its
        topics)."""
        options.setdefault("group_id", self.settings.consumer_group)
        options.setdefault("auto_offset_reset", "earliest")
        name = consumer or options.get("title") or ",".join(topics)
        topics = tuple(self.settings.topic(t) for t in topics)  # handlers see the namespaced names
        options.setdefault("title", name)
        self.halts.limit(name, topics)
        subscriber: Any = self.broker.subscriber(*topics, **options)
        self.halts.add_subscriber(name, subscriber)
        decorator: Callable[[Callable[..., Awaitable[Any]]], Any] = subscriber
        return decorator

    def consume(self, *topics: str, consumer: str, lane: Lane | None = None) -> Callable[[RecordsHandler], None]:
        """Read the contract's `topics` (in this service's namespace) with the service's one consumer (or the
        `lane`'s own): the handler takes a poll's raw records of them as one batch, parses them itself, and keeps
        the account of the dead-letter limit named `consumer` (`self.limit(consumer)`); consuming.py says how
        failures, halts and offsets are handled."""
        chosen = lane or self._main_lane
        loop = self._loops.get(chosen.name)
        if loop is None:
            loop = self._loops[chosen.name] = ConsumerLoop(
                lane=chosen,
                kafka=self.settings.kafka,
                group_id=self.settings.consumer_group,
                client_id=f"xinfang-{self.settings.service_name}",
                dead_letter=self.dead_letter,
                halts=self.halts,
                policy=self.dead_letter.policy,
                metrics=self._loop_metrics,
                tracer_provider=self.tracer_provider if self.recording else None,
            )
        elif loop.lane != chosen:
            raise ValueError(f"lane {chosen.name} is registered with other settings already")
        names = tuple(self.settings.topic(t) for t in topics)

        def register(handler: RecordsHandler) -> None:
            loop.register(Registration(consumer, frozenset(names), handler, self.halts.limit(consumer, names)))

        return register

    @property
    def loops(self) -> dict[str, ConsumerLoop]:
        """This service's consumers by lane: "main" reads every topic `consume` was given without a lane."""
        return dict(self._loops)

    @property
    def consumed_topics(self) -> set[str]:
        """The broker's names of every topic this service reads (its loops' and its subscribers')."""
        subscribers: list[Any] = list(self.broker.subscribers)
        return {t for loop in self._loops.values() for t in loop.topics} | {
            topic.name for sub in subscribers for topic in sub.topics
        }

    def limit(self, consumer: str) -> DeadLetterLimit:
        """The dead-letter limit of one of this service's consumers (or of another batch path, such as HTTP)."""
        return self.halts.limit(consumer)

    def on_start(self, hook: Hook) -> Hook:
        self._on_start.append(hook)
        return hook

    def on_stop(self, hook: Hook) -> Hook:
        self._on_stop.append(hook)
        return hook

    def background(self, name: str, work: Coroutine[Any, Any, None], *, stop: Callable[[], None] | None = None) -> None:
        """Run `work` (a loop such as a scheduler's) until the service stops: then `stop()` asks it to end (or, with
        no `stop`, it is cancelled), it gets BACKGROUND_STOP_S to finish, and is cancelled after that. Loops stop
        after the consumers and before the on_stop hooks, the last started first."""
        self._background.append((asyncio.create_task(work, name=f"{self.settings.service_name}-{name}"), stop))

    async def _stop_background(self) -> None:
        while self._background:
            task, stop = self._background.pop()
            if stop is None:
                task.cancel()
            else:
                stop()
            try:
                await asyncio.wait_for(task, BACKGROUND_STOP_S)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception:
                log.exception("a background loop had failed", extra={"task": task.get_name()})

    async def start(self) -> None:
        s = self.settings
        self._pool = await create_pool(
            s.database_url,
            s.db_schema,
            min_size=s.database_pool_min,
            max_size=s.database_pool_max,
            command_timeout_s=s.database_command_timeout_s,
        )
        if self.messaging:
            await self._start_messaging()
        for hook in self._on_start:
            await hook(self)
        if self.messaging:
            await self.broker.start()
            for loop in self._loops.values():
                await loop.start()
        log.info("service started", extra={"port": s.http_port})

    async def _start_messaging(self) -> None:
        s, pool = self.settings, self.pool
        self.relay = OutboxRelay(
            pool=pool,
            dsn=s.database_url,
            schema=s.db_schema,
            kafka=s.kafka,
            batch_size=s.outbox_batch_size,
            poll_interval_s=s.outbox_poll_interval_s,
            shards=s.outbox_shards,
            metrics=self.metrics,
            topic_prefix=s.topic_prefix,
            tracer=self.tracer_provider.get_tracer("xinfang.outbox") if self.recording else None,
        )
        self._relay_task = asyncio.create_task(self.relay.run(), name=f"{s.service_name}-outbox-relay")
        self.scrape.add("outbox", self.relay.measure)
        self.scrape.add("consumer lag", self._measure_lag)
        # Halts stored by an earlier run (or another instance) hold before the first record is read.
        await self.halts.start(pool)
        self.background("inbox-pruning", self._prune_inbox())

    async def stop(self) -> None:
        """Stops consuming, then the hooks, the relay and the pool; a step that fails or times out does not
        keep the later ones from running."""
        try:
            await asyncio.gather(*(loop.stop() for loop in self._loops.values()))
            if self.messaging:
                await self.broker.stop()
            await self._stop_background()
            for hook in reversed(self._on_stop):
                try:
                    await hook(self)
                except Exception:
                    log.exception("a stop hook failed")
            if self.messaging:
                await self.halts.stop()
            if self.relay is not None and self._relay_task is not None:
                self.relay.stop()
                try:
                    await asyncio.wait_for(self._relay_task, 15)
                except (TimeoutError, asyncio.CancelledError):
                    log.warning("the outbox relay did not stop in 15 s; cancelled (unsent rows stay in the outbox)")
        finally:
            if self._admin is not None:
                admin, self._admin = self._admin, None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(admin.close(), 5)
            if self._pool is not None:
                pool, self._pool = self._pool, None
                try:
                    await asyncio.wait_for(pool.close(), 10)
                except TimeoutError:
                    pool.terminate()

    @asynccontextmanager
    async def _lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def _health(self, request: Request, response: Response) -> dict[str, Any]:
        """ok, or degraded (503) with each failing check. To anyone, a failure is named by its error's type; its
        text (which can name hosts, topics, principals, a record's values) only with the operator key."""
        # Probes may call often; the pings touch PostgreSQL and Kafka, so theirs are reused for a second. The rest is
        # read fresh: a consumer that halted a moment ago is named at once.
        now = asyncio.get_running_loop().time()
        if self._pings is None or now - self._pings[0] > 1.0:
            self._pings = (now, await self._ping())
        public, detailed = self._check_health(self._pings[1])
        body = detailed if self._is_operator(request) else public
        if body["status"] != "ok":
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return body

    async def _live(self, response: Response) -> dict[str, Any]:
        """Liveness: the event loop answers, and no loop of the process has died (a dead consumer loop or relay
        never comes back by itself: a restart does). The broker or the database away is not a reason to
        restart: that is readiness."""
        dead = [name for name, loop in self._loops.items() if loop.problem() == "down"]
        if self._relay_task is not None and self._relay_task.done():
            dead.append("outbox relay")
        if dead:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
            return {"service": self.settings.service_name, "status": "down", "dead": sorted(dead)}
        return {"service": self.settings.service_name, "status": "ok"}

    async def _ready(self, response: Response) -> dict[str, Any]:
        """Readiness: whether this instance can serve its HTTP API, which needs PostgreSQL (asked now, answered
        within READY_TIMEOUT_S). Kafka is shown as /health last saw it, and does not decide: every route writes to the
        database and its outbox, never to Kafka, so an instance taken out of service in a Kafka outage would
        refuse submissions it could have kept. A halted consumer or a slow relay does not decide either: /health
        and the alerts name those."""
        # The database now, within a probe's timeout (the pool's wait included); Kafka as /health last saw it.
        try:
            await asyncio.wait_for(self.pool.fetchval("SELECT 1"), READY_TIMEOUT_S)
            database = "ok"
        except Exception as exc:
            database = f"down ({type(exc).__name__})"
        checks = {"database": database}
        if self.messaging:
            checks["kafka"] = "unknown" if self._pings is None else self._pings[1].get("kafka", "unknown")
        ready = database == "ok"
        if not ready:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"service": self.settings.service_name, "status": "ok" if ready else "unready", "checks": checks}

    def _is_operator(self, request: Request) -> bool:
        key = bearer_token(request.headers.get("authorization"))
        expected = self.settings.operator_api_key.get_secret_value()
        return key is not None and secrets.compare_digest(key.encode(), expected.encode())

    async def _ping(self) -> dict[str, str]:
        """Whether PostgreSQL and Kafka answer."""
        checks: dict[str, str] = {}
        try:
            await self.pool.fetchval("SELECT 1", timeout=2)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"down: {type(exc).__name__}"
        if self.messaging:
            checks["kafka"] = "ok" if await self.broker.ping(timeout=2) else "down"
        return checks

    def _check_health(self, pings: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(what anyone may see, what the operator sees)."""
        checks = dict(pings)
        for name, loop in self._loops.items():
            problem = loop.problem()
            if problem is not None:
                checks[f"consumer loop:{name}"] = problem
        relay_alive = self._relay_task is not None and not self._relay_task.done()
        detailed, public = dict(checks), dict(checks)
        for view, detail in ((detailed, True), (public, False)):
            if not self.messaging:
                break
            problem = self.relay.problem(detail=detail) if self.relay is not None else None
            view["outbox_relay"] = "down" if not relay_alive else problem or "ok"
            for consumer, state in self.halts.states(detail=detail).items():
                if state != "ok":
                    view[f"consumer:{consumer}"] = state
        healthy = all(v == "ok" for v in detailed.values())
        service, verdict = self.settings.service_name, "ok" if healthy else "degraded"
        return (
            {"service": service, "status": verdict, "checks": public},
            {"service": service, "status": verdict, "checks": detailed},
        )

    async def _prune_inbox(self) -> None:
        """Forget the inbox records older than the topics keep their records (and a margin): no redelivery can
        bring such an event back, so its record guards nothing and only grows the table."""
        keep = timedelta(days=self.settings.inbox_keep_days)
        while True:
            try:
                pruned = await prune_inbox(self.pool, keep)
                if pruned:
                    log.info("pruned the inbox", extra={"records": pruned})
            except TRANSIENT_ERRORS as exc:
                log.warning("the inbox could not be pruned; will retry", extra={"error_type": type(exc).__name__})
            await asyncio.sleep(self.settings.inbox_prune_interval_s)

    def on_scrape(self, name: str, probe: Probe) -> None:
        """A gauge set by a query each time /metrics is read (observability.py)."""
        self.scrape.add(name, probe)

    def gauge_by(self, name: str, documentation: str, label: str, sql: str, *, every: Iterable[str] = ()) -> None:
        """A gauge with one label, set at each scrape from `sql`'s rows (label, value); each of `every` is 0
        when no row names it (a series that vanished would look like one that stopped reporting)."""
        gauge = Gauge(name, documentation, [label], registry=self.metrics)
        always = tuple(every)

        async def probe() -> None:
            rows = await self.pool.fetch(sql)
            gauge.clear()
            for value in always:
                gauge.labels(value).set(0)
            for row in rows:
                gauge.labels(str(row[0])).set(row[1])

        self.on_scrape(name, probe)

    async def _metrics(self) -> Response:
        await self.scrape.run()
        return Response(generate_latest(self.metrics), media_type=CONTENT_TYPE_LATEST)

    async def _measure_lag(self) -> None:
        """The lag of the partitions this instance holds: summed over the instances, the group's (each partition
        is held by one member), which is what KEDA scales on. Committed offsets from the group coordinator (one
        request), end offsets from the partitions' leaders."""
        try:
            found = await self._lags()
        except BaseException:
            self._lag.clear()  # stale values could name a partition another instance holds now
            raise
        self._lag.clear()
        for p in found:
            self._lag.labels(p.group, p.topic, str(p.partition)).set(p.lag)

    async def _lags(self) -> list[PartitionLag]:
        consumers = [loop.consumer for loop in self._loops.values() if loop.consumer is not None]
        ends: dict[Any, int] = {}
        for consumer in consumers:
            assigned = list(consumer.assignment())
            if assigned:
                ends |= await consumer.end_offsets(assigned)
        if not ends:
            return []
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                **self.settings.kafka.aiokafka(), client_id=f"xinfang-{self.settings.service_name}-metrics"
            )
            try:
                await admin.start()
            except BaseException:
                await admin.close()
                raise
            self._admin = admin
        group = self.settings.consumer_group
        committed = committed_offsets(await self._admin.list_consumer_group_offsets(group, partitions=list(ends)))
        # A partition the group never committed on is read from its start (which retention may have moved).
        uncommitted = [tp for tp in ends if committed.get(tp) is None]
        starts: dict[Any, int] = {}
        for consumer in consumers:
            mine = [tp for tp in uncommitted if tp in consumer.assignment()]
            if mine:
                starts |= await consumer.beginning_offsets(mine)
        return lags(group, committed, ends, starts)

    def _add_consumer_routes(self) -> None:
        operator = self.operator()

        @self.api.get("/v1/admin/consumers", dependencies=[operator], tags=["ops"], summary="Consumers and halts")
        async def consumers() -> dict[str, str]:
            """Each consumer of this instance: `ok`, or halted / probing since when, and why."""
            return self.halts.states()

        @self.api.post(
            "/v1/admin/consumers/{consumer}/resume",
            dependencies=[operator],
            tags=["ops"],
            summary="Resume a halted consumer (every instance)",
            responses={404: {"description": "No such consumer"}, 409: {"description": "Not halted"}},
        )
        async def resume(
            consumer: str,
            x_operator: Annotated[str, Header(min_length=1, max_length=100, description="Who resumes it (audit)")],
        ) -> dict[str, str]:
            """Ends a consumer's halt once its cause is mended: it takes records again, here and in the other
            instances within seconds, and the records it held back are processed first."""
            if consumer not in self.halts.limits:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"this service has no consumer '{consumer}'")
            if not await self.halts.resume(consumer, x_operator):
                raise HTTPException(status.HTTP_409_CONFLICT, f"consumer '{consumer}' is not halted")
            return {"consumer": consumer, "state": self.halts.limits[consumer].describe()}

    def actor(self) -> Any:
        """A FastAPI dependency giving who acts (staff.Actor): an operator, or a person the console names."""
        console = self.settings.console_api_key
        return Depends(
            actor_dependency(
                self.settings.operator_api_key.get_secret_value(), console.get_secret_value() if console else None
            )
        )

    def operator(self) -> Any:
        """A FastAPI dependency that admits only the operator key (Authorization: Bearer <key>)."""
        expected = self.settings.operator_api_key.get_secret_value()
        return Depends(_bearer_equal_to(expected))


def _bearer_equal_to(expected: str) -> Callable[..., None]:
    scheme = HTTPBearer(auto_error=False)

    # Depends as a default, not in Annotated: `scheme` is local, and this module's annotations are strings.
    def check(credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:  # noqa: B008
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="a valid API key is required: Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
