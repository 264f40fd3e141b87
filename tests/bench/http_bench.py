"""HTTP figures: a small asyncio load generator (HTTP/1.1 keep-alive, a fixed number of requests in flight)
for POST /v1/submissions, and its own ceiling against the service's cheapest answers.

Two clients. `raw` (default): one asyncio.Protocol per keep-alive connection, each worker owning one, that
writes a pre-built request and reads the status line and Content-Length body, nothing else — about 0.1 ms of
CPU per request. `httpx`: httpx.AsyncClient sharing one pool; on this machine it costs 1-5 ms of CPU per
request (httpcore scans its whole pool on every request, and re-attempts `import sniffio`, which is not
installed, for every request), so on 2 cores it measures itself rather than the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, cast
from urllib.parse import urlsplit

import httpx

from .common import Payload

SUBMISSIONS = "/v1/submissions"


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes | None = None


def submissions(payloads: Iterable[Payload]) -> Iterator[Call]:
    return (Call("POST", SUBMISSIONS, p.body) for p in payloads)


def repeated(call: Call, n: int) -> Iterator[Call]:
    return (call for _ in range(n))


class Session(Protocol):
    """What one worker sends its requests through."""

    async def send(self, call: Call) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


class Client(Protocol):
    async def session(self) -> Session: ...

    async def aclose(self) -> None: ...


# ------------------------------------------------------------------------------------------- raw client


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time; responses must carry Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            response = self._response()
        except ValueError as exc:
            waiter.set_exception(exc)
            return
        if response is not None:
            waiter.set_result(response)

    def _response(self) -> tuple[int, bytes] | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).lower()
        start = head.find(b"\r\ncontent-length:")
        if start < 0:
            raise ValueError("response without Content-Length (chunked?) is not supported")
        line_end = head.find(b"\r\n", start + 2)
        length = int(head[start + 17 : line_end if line_end >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return None
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        return int(head[9:12]), body

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    async def send_raw(self, request: bytes) -> tuple[int, bytes]:
        if self.lost or self.transport is None:
            raise ConnectionError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


class _RawSession:
    def __init__(self, client: RawClient, connection: _Connection) -> None:
        self.client = client
        self.connection = connection

    async def send(self, call: Call) -> tuple[int, bytes]:
        if self.connection.lost:
            self.connection = await self.client.connect()
        return await self.connection.send_raw(self.client.request_bytes(call))

    def close(self) -> None:
        if self.connection.transport is not None:
            self.connection.transport.close()


class RawClient:
    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        fixed = {"Host": f"{self.host}:{self.port}", **headers}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items())
        self._heads: dict[tuple[str, str], bytes] = {}

    def request_bytes(self, call: Call) -> bytes:
        if call.body is None:
            head = self._heads.get((call.method, call.path))
            if head is None:
                head = f"{call.method} {call.path} HTTP/1.1\r\n{self._fixed}\r\n".encode()
                self._heads[(call.method, call.path)] = head
            return head
        return (
            f"{call.method} {call.path} HTTP/1.1\r\n{self._fixed}Content-Length: {len(call.body)}\r\n\r\n".encode()
            + call.body
        )

    async def connect(self) -> _Connection:
        _, protocol = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port)
        return protocol

    async def session(self) -> Session:
        return _RawSession(self, await self.connect())

    async def aclose(self) -> None:
        return None


# ----------------------------------------------------------------------------------------- httpx client


class _HttpxSession:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def send(self, call: Call) -> tuple[int, bytes]:
        response = await self.http.request(call.method, call.path, content=call.body)
        return response.status_code, response.content

    def close(self) -> None:
        return None


class HttpxClient:
    def __init__(self, base_url: str, headers: dict[str, str], concurrency: int) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            http1=True,
            http2=False,
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers=headers,
        )

    async def session(self) -> Session:
        return _HttpxSession(self.http)

    async def aclose(self) -> None:
        await self.http.aclose()


def client(kind: str, base_url: str, api_key: str, concurrency: int) -> Client:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    if kind == "httpx":
        return HttpxClient(base_url, headers, concurrency)
    return RawClient(base_url, headers)


# -------------------------------------------------------------------------------------------------- drive


@dataclass
class HttpRun:
    elapsed_s: float = 0.0
    cpu_s: float = 0.0  # of this process (the load generator) while it ran
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    samples: dict[int, str] = field(default_factory=dict)  # one response body per unexpected status
    stopped_early: bool = False  # the time limit came before the last call
    kept: list[bytes] = field(default_factory=list)  # the bodies of the expected answers, when asked to keep them

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    def rate(self, status: int | None = None) -> float:
        """Responses per second (with `status` only, when given)."""
        count = self.statuses[status] if status is not None else self.answered
        return count / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return 0.0
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_s / self.answered if self.answered else 0.0


async def drive(
    http: Client,
    calls: Iterator[Call],
    concurrency: int,
    expected: int,
    *,
    time_limit_s: float | None = None,
    keep: bool = False,
) -> HttpRun:
    """Send the calls with `concurrency` in flight (each worker takes the next call when its answer came),
    all of them or as many as `time_limit_s` allows; `keep`: keep the body of every `expected` answer."""
    run = HttpRun()
    deadline = time.perf_counter() + time_limit_s if time_limit_s else float("inf")

    async def worker() -> None:
        session = await http.session()
        try:
            for call in calls:  # one iterator shared by all workers: the event loop runs one at a time
                if time.perf_counter() > deadline:
                    run.stopped_early = True
                    break
                sent = time.perf_counter()
                try:
                    status, body = await session.send(call)
                except (httpx.HTTPError, OSError, ValueError) as exc:
                    run.errors[type(exc).__name__] += 1
                    continue
                run.latencies_s.append(time.perf_counter() - sent)
                run.statuses[status] += 1
                if status == expected and keep:
                    run.kept.append(body)
                if status != expected and status not in run.samples:
                    run.samples[status] = body[:300].decode(errors="replace")
        finally:
            with contextlib.suppress(Exception):
                session.close()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.elapsed_s, run.cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return run
