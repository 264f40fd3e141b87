"""The HTTP rules every service shares, on a service built but not started: a body too large is refused
before any route reads it, and a body that is not text is a 422 naming `<body>` like any unreadable body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from xinfang_shared.service import Service
from xinfang_shared.settings import ServiceSettings


class Note(BaseModel):
    text: str


def _service(**settings: Any) -> Service:
    service = Service(
        ServiceSettings(_env_file=None, environment="test", **settings),  # type: ignore[call-arg]
        migrations=Path("."),
        title="test",
    )
    read: list[int] = []

    @service.api.post("/notes")
    async def add(note: Note) -> dict[str, int]:
        read.append(len(note.text))
        return {"length": len(note.text)}

    service.api.state.read = read
    return service


async def _post(service: Service, content: bytes, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=service.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/notes", content=content, headers={"content-type": "application/json", **headers})


async def test_a_body_over_the_limit_is_413_naming_the_body_and_no_route_reads_it() -> None:
    service = _service(max_request_bytes=2048)
    ok = await _post(service, b'{"text": "' + b"x" * 100 + b'"}')
    assert ok.status_code == 200 and ok.json() == {"length": 100}
    big = await _post(service, b'{"text": "' + b"x" * 5000 + b'"}')
    assert big.status_code == 413
    assert big.json()["errors"] == [{"field": "<body>", "message": "at most 2048 bytes are accepted"}]
    assert service.api.state.read == [100], "the route never saw the large body"


async def test_a_streamed_body_over_the_limit_is_refused_too() -> None:
    service = _service(max_request_bytes=2048)

    async def chunks() -> Any:
        yield b'{"text": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}'

    transport = httpx.ASGITransport(app=service.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/notes", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and service.api.state.read == []


async def test_a_body_that_is_not_text_is_a_422_naming_the_body() -> None:
    response = await _post(_service(), b'{"text": "\xff\xfe"}')
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["<body>"]
    not_found = await _post(_service(), b"{}")
    assert not_found.status_code == 422  # a missing field still names it
    assert [e["field"] for e in not_found.json()["errors"]] == ["text"]


async def test_health_names_a_halt_at_once_though_its_pings_are_reused_for_a_second() -> None:
    import asyncio

    from xinfang_shared.contracts.events import utc_now
    from xinfang_shared.dlq_limit import Halt

    service = _service()
    pings = 0

    async def ping() -> dict[str, str]:
        nonlocal pings
        pings += 1
        return {"database": "ok", "kafka": "ok"}

    service._ping = ping  # type: ignore[method-assign]
    service._relay_task = asyncio.create_task(asyncio.sleep(3600))  # a relay that runs
    limit = service.limit("matters.status.v1:test")
    try:
        transport = httpx.ASGITransport(app=service.api)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            assert (await client.get("/health")).status_code == 200
            now = utc_now()
            limit.impose(Halt("20 records in a row failed; last error RuntimeError: boom", now, now))
            answer = await client.get("/health")
        assert answer.status_code == 503
        assert answer.json()["checks"]["consumer:matters.status.v1:test"].startswith("halted since")
        assert pings == 1, "the pings of a second ago are reused"
    finally:
        service._relay_task.cancel()


async def test_requests_are_counted_by_route_template_and_status_never_by_path() -> None:
    service = _service()

    @service.api.get("/v1/matters/{tracking_code}")
    async def matter(tracking_code: str) -> dict[str, str]:
        if tracking_code == "boom":
            raise RuntimeError("a defect")
        return {"code": tracking_code}

    transport = httpx.ASGITransport(app=service.api, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/v1/matters/XF-SECRET-1")).status_code == 200
        assert (await client.get("/v1/matters/XF-SECRET-2")).status_code == 200
        assert (await client.get("/v1/matters/boom")).status_code == 500
        assert (await client.get("/wp-admin/XF-SECRET-3")).status_code == 404
        assert (await client.get("/health/live")).status_code == 200
        metrics = (await client.get("/metrics")).text
    requests = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line.startswith("xinfang_http_requests_total{")
    }
    assert requests == {
        'xinfang_http_requests_total{method="GET",route="/v1/matters/{tracking_code}",status="200"}': 2.0,
        'xinfang_http_requests_total{method="GET",route="/v1/matters/{tracking_code}",status="500"}': 1.0,
        'xinfang_http_requests_total{method="GET",route="<unmatched>",status="404"}': 1.0,
    }, "probes and scrapes are not counted; a path (which can hold a tracking code) is never a label"
    assert "XF-SECRET" not in metrics
    assert 'xinfang_http_request_seconds_count{method="GET",route="/v1/matters/{tracking_code}"} 3.0' in metrics
    assert "process_cpu_seconds_total" in metrics and "python_gc_objects_collected_total" in metrics
