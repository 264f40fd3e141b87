"""POST /v1/submissions: the answer to one submission, and the fast path that serves it.

`answer` is the whole endpoint (key, the person the console's key names, validation, registration, the
contract's status codes) as a plain function of the request's headers and body. FastAPI's route calls it (and
documents it in OpenAPI); `FastPath`, an ASGI wrapper around the FastAPI app, calls it straight from the server
for the busiest request there is, past FastAPI's middleware, routing and dependency solving, which cost about a
third of a submission's CPU. Everything else, and every request while spans are recorded (FastAPI makes the
server span), goes to FastAPI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import HTTPException

from xinfang_shared import tracing
from xinfang_shared.batching import ItemFailed, Overloaded
from xinfang_shared.contracts.events import FieldError
from xinfang_shared.contracts.reference import Office
from xinfang_shared.dlq_limit import ConsumerHalted
from xinfang_shared.messaging import TRANSIENT_ERRORS
from xinfang_shared.observability import HttpMetrics
from xinfang_shared.service import ErrorList, bearer_token
from xinfang_shared.staff import STAFF_HEADERS, Role, names_a_person, person_named

from .channel_keys import ChannelSystem
from .ingest import unstorable
from .registration import Prepared, Result
from .state import IntakeState
from .validation import Invalid

log = logging.getLogger(__name__)

PATH = "/v1/submissions"
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _detail(status: int, detail: str, **headers: str) -> Answer:
    return Answer(status, orjson.dumps({"detail": detail}), tuple(headers.items()))


def _errors(status: int, detail: str, errors: list[FieldError]) -> Answer:
    return Answer(status, ErrorList(detail=detail, errors=errors).model_dump_json().encode())


def received_by(system: ChannelSystem, console_system: str, headers: Mapping[str, str]) -> str | Answer:
    """Who of reception registers it (`staff:<user>`, "" for nobody named), or the refusal: only the console's own
    key may name a person (X-Staff-User, -Office, -Role; shared/staff.py), and only a clerk or head of reception
    registers a visit. `headers`: the request's, lower-case names."""
    if not names_a_person(headers):
        return ""
    if system.name != console_system:
        return _detail(403, f"only the console's key names a person (X-Staff-*), not the key of {system.name}")
    try:
        person = person_named(headers)
    except HTTPException as refused:
        return _detail(refused.status_code, str(refused.detail))
    if person.office != Office.RECEPTION or person.role not in (Role.CLERK, Role.HEAD):
        return _detail(403, f"{person.recorded} may not register a visit: only reception's clerks and head do")
    return person.recorded


async def answer(
    state: IntakeState, authorization: str | None, body: bytes, headers: Mapping[str, str] | None = None
) -> Answer:
    """Registers the matter durably before answering 202: nothing answered 202 is ever lost, even when
    Kafka is down. `headers`: the request's (lower-case names), for the person the console's key names."""
    key = bearer_token(authorization)
    try:
        system = await state.keys.system_for(key) if key else None
    except TRANSIENT_ERRORS as exc:  # the keys' copy is due for a reload that failed: no key is let through
        return _database_away(exc)
    if system is None:
        return _detail(
            401,
            "a valid channel API key is required: Authorization: Bearer <key>",
            **{"www-authenticate": "Bearer"},
        )
    person = received_by(system, state.console_system, headers or {})
    if isinstance(person, Answer):
        return person
    try:
        submission = state.intake.validated(body)
    except Invalid as exc:
        return _errors(422, "the submission is invalid", exc.errors)
    if submission.channel not in system.channels:
        allowed = sorted(c.value for c in system.channels)
        return _detail(403, f"the key of {system.name} may submit for {allowed}, not '{submission.channel.value}'")
    try:
        outcome = await state.coalescer.submit(_prepare(state, submission, person or None))
    except ItemFailed as failed:
        # It passed validation but cannot be stored (the others of its batch were): the client's to mend.
        log.warning("a submission could not be registered", extra={"error_type": type(failed.cause).__name__})
        return _errors(422, "the submission is refused", [unstorable(failed.cause)])
    except Overloaded:
        # More are waiting to be registered than the flushers clear in a while (settings.http_queue_max).
        return _detail(
            503, "intake is overloaded: the submission was not registered; send it again in a few seconds", **SOON
        )
    except ConsumerHalted:
        # Too many submissions failed lately: a bug or a broken dependency, not this request.
        return _detail(503, "submissions cannot be registered at the moment; send it again later", **RETRY_LATER)
    except TRANSIENT_ERRORS as exc:
        return _database_away(exc)
    if outcome.result == Result.CONFLICT:
        return _errors(409, "external_id already used for other content", outcome.errors)
    if outcome.result == Result.REFUSED:
        return _errors(422, "the submission is refused", outcome.errors)
    code = 202 if outcome.result == Result.REGISTERED else 200
    return Answer(
        code,
        orjson.dumps(
            {"matter_id": str(outcome.matter_id), "tracking_code": outcome.tracking_code, "status": outcome.status}
        ),
    )


RETRY_LATER = {"retry-after": "60"}
SOON = {"retry-after": "5"}


def _database_away(exc: BaseException) -> Answer:
    log.warning("a submission waits for the database", extra={"error_type": type(exc).__name__})
    return _detail(503, "the database is unavailable; the submission was not registered, send it again", **SOON)


def _prepare(state: IntakeState, submission: Any, person: str | None) -> Prepared:
    """Hash, seal and fingerprint; a value validation let through that cannot be prepared fails this request
    alone (ItemFailed), unless too many have lately (the registration path's dead-letter limit)."""
    try:
        # The request's trace context goes with it into the coalesced flush (another task) and its event.
        trace = tracing.current_carrier() if state.recording else None
        return state.registrar.prepare(submission, trace=trace, received_by=person)
    except Exception as exc:
        if state.http_limit.admit([True], exc):
            raise ItemFailed(exc) from exc
        raise ConsumerHalted(state.http_limit.consumer, state.http_limit.describe()) from exc


class FastPath:
    def __init__(self, app: ASGIApp, current: Callable[[], IntakeState], max_bytes: int, metrics: HttpMetrics) -> None:
        self.app = app
        self.current = current
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body = await self._body(receive)
        read = _headers(scope)
        try:
            reply = await answer(self.current(), read.get("authorization"), body, read)
        except Exception:
            log.exception("a submission failed")
            reply = _detail(500, "internal error; the submission was not registered, send it again")
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(reply.body)).encode()),
            *((k.encode(), v.encode()) for k, v in reply.headers),
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        self.metrics.observe("POST", PATH, reply.status, time.perf_counter() - started)

    async def _body(self, receive: Receive) -> bytes:
        """The body, or its first max_bytes + 1 bytes (enough for validation to call it too large)."""
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk: bytes = message.get("body", b"")
            if size <= self.max_bytes:
                chunks.append(chunk)
                size += len(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


_READ = frozenset(h.encode() for h in ("authorization", *STAFF_HEADERS))


def _headers(scope: Scope) -> dict[str, str]:
    """The headers `answer` reads (ASGI gives their names in lower case), the first of a repeated one as
    Starlette's Headers.get gives it to the FastAPI route: both paths read one request alike."""
    found: dict[str, str] = {}
    for k, v in scope["headers"]:
        if k in _READ:
            found.setdefault(k.decode("latin-1"), v.decode("latin-1"))
    return found
