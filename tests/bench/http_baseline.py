"""The HTTP baseline of `make bench`: the smallest ASGI app, served by uvicorn with the services' settings.

`python -m tests.bench.http_baseline PORT`

It reads each request's body to the end and answers every request with one fixed 202 body shaped like
intake's answer to a submission (GET /health: 200). The bench drives it with the same load generator,
concurrency and payloads as intake's POST /v1/submissions: the ratio of intake's figure to this one is what
intake (auth, validation, registration in PostgreSQL) adds to the HTTP serving both need.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ACCEPTED = (
    b'{"matter_id":"00000000-0000-4000-8000-000000000000","tracking_code":"0000-0000-0000-0000","status":"registered"}'
)
HEALTHY = b'{"status":"ok"}'


def _headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # the whole body, as any handler of a submission must
        message = await receive()
        more = bool(message.get("more_body"))
    status, body = (200, HEALTHY) if scope["path"] == "/health" else (202, ACCEPTED)
    await send({"type": "http.response.start", "status": status, "headers": _headers(body)})
    await send({"type": "http.response.body", "body": body})


def create_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    return app


def main() -> None:
    port = int(sys.argv[1])
    # The settings of every service's `serve` (shared/src/xinfang_shared/cli.py).
    uvicorn.run(
        "tests.bench.http_baseline:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=20,
    )


if __name__ == "__main__":
    main()
