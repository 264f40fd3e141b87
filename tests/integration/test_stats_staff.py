"""Stats' figures to the bureau's staff through the console, as to operators (they hold no personal data); a
person named with any other key than the console's is refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from tests.integration.conftest import schema_pool
from tests.staff import staff_headers
from xinfang_shared.service import Service
from xinfang_stats.api import build_router
from xinfang_stats.app import MIGRATIONS
from xinfang_stats.settings import StatsSettings

OPERATOR = "operator-" + uuid.uuid4().hex
CONSOLE = "console-" + uuid.uuid4().hex
READS = ["/v1/stats/summary", "/v1/stats/timeseries", "/v1/stats/units", "/v1/stats/alerts", "/v1/stats/hot-terms"]


def _staff(user: str, role: str, office: str | None = None) -> dict[str, str]:
    return staff_headers(CONSOLE, user, role, office)


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    async with schema_pool(database, "stats_staff", MIGRATIONS) as p:
        yield p


@pytest.fixture
async def http(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    """Stats' routes as the service serves them (its keys, its error handlers), on this pool."""
    settings = StatsSettings(
        _env_file=None,  # type: ignore[call-arg]
        operator_api_key=SecretStr(OPERATOR),
        console_api_key=SecretStr(CONSOLE),
    )
    service = Service(settings, migrations=MIGRATIONS, title="stats")
    service.api.include_router(build_router(service, lambda: pool))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.api), base_url="http://stats") as client:
        yield client


async def test_every_figure_reads_for_any_of_the_bureau_s_staff_and_operators(
    pool: asyncpg.Pool, http: httpx.AsyncClient
) -> None:
    await pool.execute(
        "INSERT INTO alerts (alert_id, series, state, region_code, category, window_, observed, baseline, method,"
        " opened_at)"
        " VALUES ($1, 'region:5101', 'open', '5101', NULL, 'PT1H', 60, 0, 'cold-start', now())",
        uuid.uuid4(),
    )
    for who in (
        {"Authorization": f"Bearer {OPERATOR}"},
        _staff("zhao", "leader"),
        _staff("li", "clerk", "online"),
        _staff("chen", "head", "general"),
    ):
        for path in READS:
            answer = await http.get(path, headers=who)
            assert answer.status_code == 200, (path, who, answer.text)
        alerts = await http.get("/v1/stats/alerts", headers=who)
        assert [a["region_code"] for a in alerts.json()] == ["5101"]
        as_csv = await http.get("/v1/stats/alerts", headers=who | {"Accept": "text/csv"})
        assert as_csv.headers["content-type"].startswith("text/csv") and "5101" in as_csv.text


async def test_only_the_console_names_a_person_and_every_read_needs_a_key(http: httpx.AsyncClient) -> None:
    forged = {"X-Staff-User": "li", "X-Staff-Role": "clerk", "X-Staff-Office": "online"}
    for path in READS:
        assert (await http.get(path, headers={"Authorization": f"Bearer {OPERATOR}"} | forged)).status_code == 403
        assert (await http.get(path, headers=forged)).status_code == 401
        assert (await http.get(path, headers={"Authorization": f"Bearer {CONSOLE}"})).status_code == 422, "nobody"
        assert (await http.get(path, headers={"Authorization": "Bearer guessed"} | forged)).status_code == 401
