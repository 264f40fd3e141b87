"""The controlled clock's endpoint exists only with SUPERVISION_CLOCK=controlled (CONTRACT.md), and never in
production."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from xinfang_supervision.app import create_service
from xinfang_supervision.settings import SupervisionSettings


def _service(**settings: object) -> httpx.AsyncClient:
    service = create_service(SupervisionSettings(_env_file=None, **settings))  # type: ignore[call-arg]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=service.api), base_url="http://supervision")


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
        refused = await http.post("/v1/admin/clock/advance", json={"seconds": -5})
    assert "post" in paths["/v1/admin/clock/advance"]
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "seconds"


def test_production_refuses_the_controlled_clock() -> None:
    with pytest.raises(ValidationError, match="SUPERVISION_CLOCK=controlled is for tests"):
        SupervisionSettings(
            _env_file=None,  # type: ignore[call-arg]
            environment="production",
            supervision_clock="controlled",
            operator_api_key="k" * 32,
            personal_data_key="a" * 44,
            personal_data_hash_key="b" * 44,
        )
