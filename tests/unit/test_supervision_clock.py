"""The controlled clock's endpoint exists only with SUPERVISION_CLOCK=controlled (CONTRACT.md), never in
production, and only for the operator key."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from xinfang_shared.service import Service
from xinfang_supervision.api import build_router
from xinfang_supervision.app import MIGRATIONS, create_service
from xinfang_supervision.settings import SupervisionSettings

OPERATOR = "clock-operator-key"
AUTH = {"Authorization": f"Bearer {OPERATOR}"}


def _settings(**settings: Any) -> SupervisionSettings:
    return SupervisionSettings(_env_file=None, operator_api_key=SecretStr(OPERATOR), **settings)


def _client(service: Service) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.api), base_url="http://supervision")


def _service(**settings: Any) -> httpx.AsyncClient:
    return _client(create_service(_settings(**settings)))


async def test_without_the_setting_the_clock_endpoint_does_not_exist() -> None:
    async with _service() as http:
        assert (await http.post("/v1/admin/clock/advance", json={"seconds": 60})).status_code == 404
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert "/v1/admin/clock/advance" not in paths
    assert "/v1/matters/{matter_id}/deadlines" in paths


async def test_with_the_setting_it_is_published() -> None:
    async with _service(supervision_clock="controlled") as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
        # Validated before anything else: a negative advance is refused.
        refused = await http.post("/v1/admin/clock/advance", json={"seconds": -5}, headers=AUTH)
    assert "post" in paths["/v1/admin/clock/advance"]
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "seconds"


def test_production_refuses_the_controlled_clock() -> None:
    with pytest.raises(ValidationError, match="SUPERVISION_CLOCK=controlled is for tests"):
        SupervisionSettings(
            _env_file=None,  # type: ignore[call-arg]
            environment="production",
            supervision_clock="controlled",
            operator_api_key="k" * 32,
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_username="service-supervision",
            kafka_sasl_password="p" * 32,
        )


class _Clock:
    """The controlled clock's offset, in memory: what the routes read and move."""

    def __init__(self) -> None:
        self.offset_s = 0

    async def offset(self, conn: Any) -> timedelta:
        return timedelta(seconds=self.offset_s)

    async def advance(self, conn: Any, seconds: int) -> timedelta:
        self.offset_s += seconds
        return await self.offset(conn)


async def _settled(now: datetime) -> int:
    return 0


async def test_the_clock_routes_need_the_operator_key() -> None:
    clock = _Clock()
    state = SimpleNamespace(
        pool=SimpleNamespace(acquire=contextlib.nullcontext), clock=clock, scheduler=SimpleNamespace(settle=_settled)
    )
    service = Service(_settings(supervision_clock="controlled"), migrations=MIGRATIONS, title="supervision")
    service.api.include_router(build_router(service, lambda: state))  # type: ignore[arg-type, return-value]
    async with _client(service) as http:
        for headers in ({}, {"Authorization": "Bearer not-the-key"}):
            advance = await http.post("/v1/admin/clock/advance", json={"seconds": 60}, headers=headers)
            assert advance.status_code == 401 and advance.headers["www-authenticate"] == "Bearer"
            assert (await http.get("/v1/admin/clock", headers=headers)).status_code == 401
        assert clock.offset_s == 0, "refused: the clock did not move"

        advance = await http.post("/v1/admin/clock/advance", json={"seconds": 60}, headers=AUTH)
        assert advance.status_code == 200 and advance.json()["offset_s"] == 60
        shown = await http.get("/v1/admin/clock", headers=AUTH)
        assert shown.status_code == 200 and shown.json()["offset_s"] == 60
        security = (await http.get("/openapi.json")).json()["paths"]["/v1/admin/clock/advance"]["post"]["security"]
    assert clock.offset_s == 60
    assert security == [{"HTTPBearer": []}], "the published contract says so"
