"""Schemathesis generates requests from intake's own OpenAPI document and sends them to the real process:
whatever it sends, the answer is never a 5xx."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.integration.kafka_tools import start_group_at_end
from tests.integration.processes import IntakeProcess, free_port
from xinfang_intake.app import MIGRATIONS
from xinfang_shared.contracts.topics import BY_NAME
from xinfang_shared.db import migrate_dsn

KEY = "fuzz-key-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
async def intake_url(database: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    await migrate_dsn(database, "intake", MIGRATIONS)
    group = f"test-fuzz-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(bootstrap, group, [t.name for t in BY_NAME.values() if "intake" in t.consumers])
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": database,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": group,
        "HTTP_PORT": str(port),
        "CHANNEL_API_KEY": KEY,
        "LOG_LEVEL": "WARNING",
    }
    log = tmp_path_factory.mktemp("fuzz") / "intake.log"
    process = IntakeProcess(env, log)
    await process.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()
    errors = [line for line in log.read_text().splitlines() if '"level": "error"' in line]
    assert not errors, errors[:3]


def test_intake_api_answers_no_5xx(intake_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{intake_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/submissions", "/v1/matters/{tracking_code}"}
    statuses: Counter[int] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {KEY}"})
            statuses[response.status_code] += 1
            case.validate_response(response, checks=[not_a_server_error])

        no_server_error()
    print("schemathesis answers by status:", dict(sorted(statuses.items())))
    assert sum(statuses.values()) > 100 and any(400 <= s < 500 for s in statuses)
