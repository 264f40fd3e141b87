"""Intake's public endpoints (look-up and rating, no key) are rate-limited per client address, on the real
database and broker, through what the server serves: a burst from one address ends in 429 with Retry-After
while other addresses are served, misses (guessed codes) cost more, and the address is served again once
the wait is over. Time is a fake clock put into the app through its dependency overrides."""

from __future__ import annotations

import io
import logging
import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from tests import factories
from tests.integration.kafka_tools import start_group_at_end
from xinfang_intake.app import MIGRATIONS, create_asgi
from xinfang_intake.settings import IntakeSettings
from xinfang_intake.submissions import FastPath
from xinfang_shared.contracts.topics import CHANNEL_SUBMITTED, DEADLINES_EVENTS, MATTERS_STATUS
from xinfang_shared.db import migrate_dsn
from xinfang_shared.logging import JsonFormatter
from xinfang_shared.ratelimit import rate_limit_now
from xinfang_shared.service import Service

KEY = "test-rate-limit-key-" + uuid.uuid4().hex
CONSUMED = [
    *(t.name for t in CHANNEL_SUBMITTED.values()),
    MATTERS_STATUS.name,
    DEADLINES_EVENTS.name,
]
PER_MINUTE, BURST, MISS_COST = 60, 3, 3  # one token a second
PROXY = "10.0.0.2"
UNKNOWN = "0000-0000-0000-0000"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Limited:
    service: Service
    served: FastAPI | FastPath  # what the server serves: FastPath (submissions) in front of FastAPI
    clock: Clock
    code: str  # a registered matter (no opinion yet)
    logs: io.StringIO

    def client(self, host: str) -> httpx.AsyncClient:
        """A client at `host`: the ASGI peer address the app sees."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.served, client=(host, 40000)), base_url="http://intake"
        )


@pytest.fixture(scope="module")
async def limited(database: str, bootstrap: str) -> AsyncIterator[Limited]:
    logs = io.StringIO()
    capture = logging.StreamHandler(logs)
    capture.setFormatter(JsonFormatter("rate-limit-test"))
    logging.getLogger().addHandler(capture)
    group = f"test-rate-limit-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(bootstrap, group, CONSUMED)
    settings = IntakeSettings(
        database_url=database,
        kafka_bootstrap_servers=bootstrap,
        kafka_group_id=group,
        channel_api_key=SecretStr(KEY),
        outbox_poll_interval_s=0.2,
        public_rate_limit_per_minute=PER_MINUTE,
        public_rate_limit_burst=BURST,
        public_rate_limit_miss_cost=MISS_COST,
        trusted_proxies=[PROXY],
        _env_file=None,
    )
    await migrate_dsn(database, settings.db_schema, MIGRATIONS)
    service, served = create_asgi(settings, fast_path=True)
    clock = Clock()
    service.api.dependency_overrides[rate_limit_now] = clock
    await service.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=served, client=("192.0.2.200", 1)), base_url="http://intake"
        ) as channel:
            registered = await channel.post(
                "/v1/submissions", json=factories.submission(), headers={"Authorization": f"Bearer {KEY}"}
            )
        assert registered.status_code == 202, registered.text
        yield Limited(service, served, clock, registered.json()["tracking_code"], logs)
    finally:
        await service.stop()
        logging.getLogger().removeHandler(capture)


def _refused(response: httpx.Response) -> int:
    """The Retry-After of a 429 (asserting its shape): whole seconds, said in the detail too."""
    assert response.status_code == 429, response.text
    seconds = int(response.headers["retry-after"])
    assert seconds >= 1
    detail = response.json()
    assert list(detail) == ["detail"] and f"try again in {seconds} second" in detail["detail"], detail
    return seconds


async def test_a_burst_from_one_address_is_refused_while_another_is_served(limited: Limited) -> None:
    a_host, b_host = "203.0.113.5", "198.51.100.23"
    async with limited.client(a_host) as a, limited.client(b_host) as b:
        statuses = [(await a.get(f"/v1/matters/{limited.code}")).status_code for _ in range(BURST)]
        assert statuses == [200] * BURST
        refused = await a.get(f"/v1/matters/{limited.code}")
        wait = _refused(refused)
        assert wait == math.ceil(1 / (PER_MINUTE / 60))  # one token, at one a second

        assert (await b.get(f"/v1/matters/{limited.code}")).status_code == 200, "another address is served"
        assert (await b.get(f"/v1/matters/{UNKNOWN}")).status_code == 404

        submitted = await a.post(
            "/v1/submissions", json=factories.submission(), headers={"Authorization": f"Bearer {KEY}"}
        )
        assert submitted.status_code == 202, "channel systems (with a key) are not limited by the public budget"

        limited.clock.advance(wait - 0.01)
        _refused(await a.get(f"/v1/matters/{limited.code}"))
        limited.clock.advance(0.01)
        served = await a.get(f"/v1/matters/{limited.code}")
        assert served.status_code == 200, served.text
        assert served.json()["tracking_code"] == limited.code
        _refused(await a.get(f"/v1/matters/{limited.code}"))

    for address in (a_host, b_host):
        assert address not in limited.logs.getvalue(), "client addresses are personal data: never logged"


async def test_a_failed_look_up_costs_more_than_a_successful_one(limited: Limited) -> None:
    async with limited.client("203.0.113.40") as guesser, limited.client("203.0.113.41") as petitioner:
        assert (await guesser.get(f"/v1/matters/{UNKNOWN}")).status_code == 404  # MISS_COST = BURST tokens
        _refused(await guesser.get(f"/v1/matters/{limited.code}"))
        # A malformed code (not even a valid check symbol) is a miss too.
        limited.clock.advance(MISS_COST * 60 / PER_MINUTE)
        assert (await guesser.get("/v1/matters/not-a-code")).status_code == 404
        _refused(await guesser.get(f"/v1/matters/{UNKNOWN}"))

        found = [(await petitioner.get(f"/v1/matters/{limited.code}")).status_code for _ in range(BURST)]
        assert found == [200] * BURST


async def test_the_rating_endpoint_is_limited_and_shares_the_look_up_budget(limited: Limited) -> None:
    rating = {"rating": "satisfied"}
    async with limited.client("203.0.113.60") as rater, limited.client("203.0.113.61") as both:
        answers = [(await rater.post(f"/v1/matters/{limited.code}/rating", json=rating)).status_code for _ in range(3)]
        assert answers == [409] * BURST  # no opinion yet: answered, one token each
        _refused(await rater.post(f"/v1/matters/{limited.code}/rating", json=rating))
        limited.clock.advance(MISS_COST * 60 / PER_MINUTE)
        assert (await rater.post(f"/v1/matters/{UNKNOWN}/rating", json=rating)).status_code == 404
        _refused(await rater.post(f"/v1/matters/{limited.code}/rating", json=rating))

        for _ in range(BURST):
            assert (await both.get(f"/v1/matters/{limited.code}")).status_code == 200
        _refused(await both.post(f"/v1/matters/{limited.code}/rating", json=rating))


async def test_forwarded_for_names_the_client_only_behind_a_trusted_proxy(limited: Limited) -> None:
    code = limited.code
    async with limited.client(PROXY) as proxy, limited.client("203.0.113.80") as direct:
        for client in ("198.51.100.81", "198.51.100.82"):
            for _ in range(BURST):
                forwarded = {"X-Forwarded-For": f"6.6.6.6, {client}"}  # left part: what the client wrote
                assert (await proxy.get(f"/v1/matters/{code}", headers=forwarded)).status_code == 200
        _refused(await proxy.get(f"/v1/matters/{code}", headers={"X-Forwarded-For": "1.1.1.1, 198.51.100.81"}))

        for i in range(BURST):
            spoofed = {"X-Forwarded-For": f"198.51.100.{100 + i}"}
            assert (await direct.get(f"/v1/matters/{code}", headers=spoofed)).status_code == 200
        _refused(await direct.get(f"/v1/matters/{code}", headers={"X-Forwarded-For": "198.51.100.199"}))


async def test_openapi_documents_429_on_the_public_routes(limited: Limited) -> None:
    async with limited.client("203.0.113.99") as anyone:
        paths = (await anyone.get("/openapi.json")).json()["paths"]
    for path, method in (("/v1/matters/{tracking_code}", "get"), ("/v1/matters/{tracking_code}/rating", "post")):
        documented = paths[path][method]["responses"]["429"]
        assert "Retry-After" in documented["headers"], path
    assert "429" not in paths["/v1/submissions"]["post"]["responses"]
