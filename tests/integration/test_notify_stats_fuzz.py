"""Schemathesis against notify's and stats' own OpenAPI documents (notify's notifications, retries and SMS
receipts; stats' summary, time series, units, alerts and hot terms; both their consumers' admin routes), sent to
the real processes: never a 5xx, never an error in their logs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.processes import (
    ServiceProcess,
    by_operation,
    fuzz_openapi,
    log_errors,
    private_database,
    start_fuzzed,
)
from xinfang_notify.app import MIGRATIONS as NOTIFY_MIGRATIONS
from xinfang_stats.app import MIGRATIONS as STATS_MIGRATIONS

OPERATOR_KEY = "fuzz-operator-" + uuid.uuid4().hex
MIGRATIONS = {"notify": NOTIFY_MIGRATIONS, "stats": STATS_MIGRATIONS}
COMMON_PATHS = {"/health", "/metrics", "/v1/admin/consumers"}
PATHS = {
    "notify": COMMON_PATHS | {"/v1/notifications", "/v1/sms/receipts"},
    "stats": COMMON_PATHS | {f"/v1/stats/{p}" for p in ("summary", "timeseries", "units", "alerts", "hot-terms")},
}


@pytest.fixture(scope="module", params=sorted(MIGRATIONS))
async def small_service(
    request: pytest.FixtureRequest, stack: dict[str, str], bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceProcess]:
    service: str = request.param
    async with private_database(stack["DATABASE_URL"]) as database:
        process = await start_fuzzed(
            service,
            database=database,
            bootstrap=bootstrap,
            migrations=Path(MIGRATIONS[service]),
            log=tmp_path_factory.mktemp("fuzz") / f"{service}.log",
            env={"OPERATOR_API_KEY": OPERATOR_KEY},
        )
        try:
            yield process
        finally:
            process.stop()


def test_the_api_answers_no_5xx(small_service: ServiceProcess) -> None:
    statuses = fuzz_openapi(
        f"http://127.0.0.1:{small_service.port}",
        headers=lambda _: {"Authorization": f"Bearer {OPERATOR_KEY}"},
        expect_paths=PATHS[small_service.service],
        max_examples=30,
    )
    print(f"{small_service.service}: schemathesis answers by operation and status:", by_operation(statuses))
    assert sum(statuses.values()) >= 2 and all(code < 500 for _, code in statuses)
    assert not log_errors(small_service.log), log_errors(small_service.log)[:3]
