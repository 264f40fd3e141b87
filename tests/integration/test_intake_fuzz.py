"""Intake fuzzed on the real process. Schemathesis generates requests from intake's own OpenAPI document (with
a channel key, and the tracking codes of matters that exist); then valid submissions are mutated with
hypothesis (control characters, NUL, lone surrogates, very long strings, huge integers, extreme datetimes,
wrong types) and POSTed, one by one and in concurrent bursts (which intake registers in one transaction).
Whatever it is sent, intake never answers a 5xx, every 422 names its fields, every 202 is stored, and its log
has no error."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import factories
from tests.integration.processes import (
    ServiceProcess,
    by_operation,
    fuzz_openapi,
    json_bytes,
    log_errors,
    log_size,
    mutate,
    names_fields,
    private_database,
    start_fuzzed,
)
from xinfang_intake.app import MIGRATIONS

KEY = "fuzz-key-" + uuid.uuid4().hex
OPERATOR_KEY = "fuzz-operator-" + uuid.uuid4().hex
ANSWERS = {200, 202, 409, 422}  # what a channel system may be told (CONTRACT.md); never a 5xx


@dataclass
class Intake:
    process: ServiceProcess
    url: str
    codes: list[str]  # tracking codes of registered matters

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
async def intake(
    stack: dict[str, str], bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Intake]:
    async with private_database(stack["DATABASE_URL"]) as database:
        log = tmp_path_factory.mktemp("fuzz") / "intake.log"
        process = await start_fuzzed(
            "intake",
            database=database,
            bootstrap=bootstrap,
            migrations=Path(MIGRATIONS),
            log=log,
            env={
                "CHANNEL_API_KEY": KEY,
                "OPERATOR_API_KEY": OPERATOR_KEY,
                # The petitioners' look-up is rate limited per address; the fuzzer is one address.
                "PUBLIC_RATE_LIMIT_PER_MINUTE": "1000000",
                "PUBLIC_RATE_LIMIT_BURST": "1000000",
            },
        )
        try:
            harness = Intake(process, f"http://127.0.0.1:{process.port}", [])
            async with httpx.AsyncClient(base_url=harness.url, timeout=60) as http:
                rng = random.Random(11)
                for _ in range(5):
                    answer = await http.post(
                        "/v1/submissions", content=json_bytes(factories.submission(rng)), headers=harness.headers
                    )
                    assert answer.status_code == 202, answer.text
                    harness.codes.append(answer.json()["tracking_code"])
            yield harness
        finally:
            process.stop()


def test_intake_api_answers_no_5xx(intake: Intake) -> None:
    start = log_size(intake.process.log)

    def fixed(operation: Any) -> list[dict[str, Any]]:
        return [{"tracking_code": code} for code in intake.codes] if "{tracking_code}" in operation.path else []

    statuses = fuzz_openapi(
        intake.url,
        headers=lambda case: {"Authorization": f"Bearer {OPERATOR_KEY if '/admin/' in case.path else KEY}"},
        fixed=fixed,
        max_examples=80,
        expect_paths={"/v1/submissions", "/v1/matters/{tracking_code}", "/v1/matters/{tracking_code}/rating"},
    )
    table = by_operation(statuses)
    print("intake: schemathesis answers by operation and status:", table)
    assert table["GET /v1/matters/{tracking_code}"].get(200), "registered matters were looked up"
    assert sum(statuses.values()) > 100 and any(400 <= code < 500 for _, code in statuses)
    errors = log_errors(intake.process.log, start)
    assert not errors, errors[:3]


def _valid(data: Any) -> dict[str, Any]:
    """A valid submission of any channel and kind intake registers without an earlier matter."""
    rng = random.Random(data.draw(st.integers(0, 2**32), label="seed"))
    channel = data.draw(st.sampled_from(["letter", "visit", "online", "mailbox"]), label="channel")
    body = factories.submission(rng, channel=channel, external_id=f"fuzz-{uuid.uuid4()}")
    body["submitted_at"] = (
        (datetime.now(UTC) - timedelta(minutes=rng.randrange(1, 10_000)))
        .astimezone(data.draw(st.sampled_from([UTC, *(datetime.now().astimezone().tzinfo,)]), label="zone"))
        .isoformat()
    )
    if channel == "visit":
        body["visit"] = {"place": rng.choice(["chengdu", "beijing", "other"]), "unusual": rng.random() < 0.2}
    if channel == "mailbox":
        body["mailbox"] = rng.choice(["secretary", "governor"])
    if data.draw(st.booleans(), label="group?"):
        people = rng.randrange(1, 6)
        body["headcount"] = people + rng.randrange(1, 300)
        body["representatives"] = [
            {"name": f"代表{i}", "id_number": factories.id_number(rng), "phone": factories.mobile(rng)}
            for i in range(people)
        ]
    if data.draw(st.booleans(), label="optional fields?"):
        body["kind"] = rng.choice(["complaint", "request", "suggestion", "accusation", "deputy-proposal"])
        body["petitioner"] |= {"address": "成都市锦江区某路1号", "email": "someone@example.cn"}
        body["language"] = rng.choice(["zh-CN", "en"])
        body["level"] = rng.choice(["local", "provincial"])
    return body


def _check_answer(http: httpx.Client, body: dict[str, Any], changes: list[str], response: httpx.Response) -> None:
    what = (changes, response.status_code, response.text[:600])
    assert response.status_code in ANSWERS, what
    if response.status_code == 422:
        assert names_fields(response), what
    if not changes:
        assert response.status_code == 202, what  # a valid submission is registered
    if response.status_code == 202:
        code = response.json()["tracking_code"]
        stored = http.get(f"/v1/matters/{code}")
        assert stored.status_code == 200, (changes, stored.status_code, stored.text[:300])
        assert stored.json()["channel"] == body["channel"], (changes, stored.text[:300])


def test_mutated_submissions_are_refused_by_field_or_stored(intake: Intake) -> None:
    """Mostly valid submissions, some mutated: 202 (stored) or 200/409 (a repeat of the external id), or a
    422 naming the field; never a 5xx."""
    start = log_size(intake.process.log)
    statuses: Counter[int] = Counter()
    mutated: Counter[int] = Counter()
    with httpx.Client(base_url=intake.url, timeout=60) as http:

        @given(data=st.data())
        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answered(data: Any) -> None:
            body, changes = mutate(data, _valid(data), most_valid=0.5)
            response = http.post("/v1/submissions", content=json_bytes(body), headers=intake.headers)
            statuses[response.status_code] += 1
            if changes:
                mutated[response.status_code] += 1
            _check_answer(http, body, changes, response)

        answered()
    print("intake: mutated submissions by status:", dict(sorted(statuses.items())), "mutated only:", dict(mutated))
    assert statuses[202] >= 100, "most submissions are registered, so registration is fuzzed"
    assert mutated[202] > 0 and mutated[422] > 0
    errors = log_errors(intake.process.log, start)
    assert not errors, errors[:3]


async def test_a_bad_submission_sent_together_with_good_ones_does_not_fail_them(intake: Intake) -> None:
    """Concurrent submissions are registered in one transaction: a mutated one among them must not take the
    valid ones down with it (each valid one is answered 202 and stored)."""
    start = log_size(intake.process.log)
    statuses: Counter[int] = Counter()
    bursts: list[list[tuple[dict[str, Any], list[str]]]] = []

    @given(data=st.data())
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def burst(data: Any) -> None:
        bursts.append([mutate(data, _valid(data), most_valid=0.6) for _ in range(40)])

    burst()
    for items in bursts:
        # A client per burst: a connection kept alive from the last one may be closed by the server just then.
        async with httpx.AsyncClient(base_url=intake.url, timeout=60) as http:
            answers = await asyncio.gather(
                *(http.post("/v1/submissions", content=json_bytes(body), headers=intake.headers) for body, _ in items)
            )
        with httpx.Client(base_url=intake.url, timeout=60) as lookups:
            for (body, changes), response in zip(items, answers, strict=True):
                statuses[response.status_code] += 1
                _check_answer(lookups, body, changes, response)
    print("intake: concurrent bursts by status:", dict(sorted(statuses.items())))
    assert statuses[202] > 0
    errors = log_errors(intake.process.log, start)
    assert not errors, errors[:3]
