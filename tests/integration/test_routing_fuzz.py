"""Routing's HTTP API fuzzed on the real process: schemathesis from its own OpenAPI document (with the operator's
and the units' keys, and the ids of matters that exist), then unit feedback built valid for a transferred matter
and mutated. Never a 5xx, every 422 names its fields, what is answered 202 is stored, no error in the log."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import factories
from tests.integration.conftest import eventually
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
from xinfang_routing.app import MIGRATIONS
from xinfang_shared.contracts.reference import UNITS, Category, FeedbackAction, Office
from xinfang_shared.contracts.topics import MATTERS_REGISTERED_V2, UNIT_INBOXES
from xinfang_shared.tracking import new_tracking_code

OPERATOR_KEY = "fuzz-operator-" + uuid.uuid4().hex
UNIT_KEYS = {unit: f"fuzz-{unit}-{uuid.uuid4().hex}" for unit in UNIT_INBOXES}
SEEDED = 40


@dataclass
class Routing:
    process: ServiceProcess
    url: str
    database: str
    matters: list[dict[str, Any]]  # matter_id, unit, status, office of the seeded matters, once routed

    def headers(self, unit: str | None = None) -> dict[str, str]:
        key = UNIT_KEYS.get(unit or "", OPERATOR_KEY)
        return {"Authorization": f"Bearer {key}"}

    async def rows(self, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.database, server_settings={"search_path": "routing"})
        try:
            found = await conn.fetch(
                "SELECT matter_id, unit, status, office FROM matters WHERE matter_id = ANY($1) ORDER BY matter_id",
                ids,
            )
        finally:
            await conn.close()
        return [dict(r) for r in found]


async def _seed(bootstrap: str, count: int) -> list[uuid.UUID]:
    """Registered matters on matters.registered.v2, as intake publishes them: varied categories, so routing
    sends them to different units (and some to an office's manual queue)."""
    rng = random.Random(7)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    ids = []
    try:
        for i in range(count):
            overrides: dict[str, Any] = {"category": list(Category)[i % len(Category)].value} if i % 4 else {}
            event = factories.registration(factories.submission(rng, **overrides), tracking_code=new_tracking_code())
            ids.append(event.matter_id)
            await producer.send(
                MATTERS_REGISTERED_V2.name, event.model_dump_json().encode(), key=str(event.matter_id).encode()
            )
        await producer.flush()
    finally:
        await producer.stop()
    return ids


@pytest.fixture(scope="module")
async def routing(
    stack: dict[str, str], bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Routing]:
    async with private_database(stack["DATABASE_URL"]) as database:
        log = tmp_path_factory.mktemp("fuzz") / "routing.log"
        env = {"OPERATOR_API_KEY": OPERATOR_KEY} | {
            f"UNIT_API_KEY_{unit.replace('-', '_')}": key for unit, key in UNIT_KEYS.items()
        }
        process = await start_fuzzed(
            "routing", database=database, bootstrap=bootstrap, migrations=Path(MIGRATIONS), log=log, env=env
        )
        try:
            ids = await _seed(bootstrap, SEEDED)
            harness = Routing(process, f"http://127.0.0.1:{process.port}", database, [])

            async def all_routed() -> bool:
                rows = await harness.rows(ids)
                return len(rows) == len(ids) and all(r["office"] for r in rows)

            await eventually(all_routed, timeout=120)
            harness.matters = await harness.rows(ids)
            assert any(r["unit"] for r in harness.matters), "some seeded matters are transferred to a unit"
            yield harness
        finally:
            process.stop()


def test_routing_api_answers_no_5xx(routing: Routing) -> None:
    start = log_size(routing.process.log)
    ids = [str(m["matter_id"]) for m in routing.matters]
    units = sorted({m["unit"] for m in routing.matters if m["unit"]})

    def fixed(operation: Any) -> list[dict[str, Any]]:
        if "{matter_id}" in operation.path:
            return [{"matter_id": i} for i in ids[:8]]
        if "{unit}" in operation.path:
            return [{"unit": u} for u in units[:6]]
        if "{office}" in operation.path:
            return [{"office": o.value} for o in Office]
        return []

    def tweak(case: Any, data: Any) -> None:
        """Bodies that reach the database: feedback on a matter of the unit in the path, reassignment to a unit
        that exists."""
        if not isinstance(case.body, dict) or not data.draw(st.booleans(), label="existing rows?"):
            return
        if case.path.endswith("/feedback"):
            unit = case.path_parameters.get("unit")
            theirs = [m for m in routing.matters if m["unit"] == unit]
            if theirs:
                case.body["matter_id"] = str(data.draw(st.sampled_from(theirs))["matter_id"])
                case.body["unit"] = unit
        elif case.path.endswith("/reassign"):
            case.body["unit"] = data.draw(st.sampled_from(UNITS))

    statuses = fuzz_openapi(
        routing.url,
        headers=lambda case: routing.headers(case.path_parameters.get("unit") if case.path_parameters else None),
        fixed=fixed,
        tweak=tweak,
        max_examples=80,
        expect_paths={
            "/v1/matters/{matter_id}",
            "/v1/matters/{matter_id}/reassign",
            "/v1/queues/{office}",
            "/v1/units/{unit}/feedback",
        },
    )
    table = by_operation(statuses)
    print("routing: schemathesis answers by operation and status:", table)
    assert table["GET /v1/matters/{matter_id}"].get(200), "existing matters were looked up"
    assert table["GET /v1/queues/{office}"].get(200), "queues were read"
    assert any(400 <= code < 500 for _, code in statuses)
    errors = log_errors(routing.process.log, start)
    assert not errors, errors[:3]


def _feedback(matter: dict[str, Any], action: FeedbackAction) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "matter_id": str(matter["matter_id"]),
        "unit": matter["unit"],
        "action": action.value,
        "at": datetime.now(UTC).isoformat(),
        "reason": "材料不全，需补充",
    }
    if action == FeedbackAction.EXTENSION_REQUESTED:
        body["extension_days"] = 10
    if action == FeedbackAction.CONCLUDED:
        body["opinion"] = {"result": "support", "text": "经调查，诉求合理，已责成整改。"}
    return body


def test_mutated_unit_feedback_is_answered_and_stored(routing: Routing) -> None:
    """Valid feedback of the matter's own unit, mutated: a 4xx naming the field, or a 202 whose action is in
    the matter's history."""
    start = log_size(routing.process.log)
    assigned = [m for m in routing.matters if m["unit"]]
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=routing.url, timeout=60) as http:

        @given(data=st.data())
        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answered(data: Any) -> None:
            matter = data.draw(st.sampled_from(assigned), label="matter")
            action = data.draw(st.sampled_from(list(FeedbackAction)), label="action")
            body, changes = mutate(data, _feedback(matter, action))
            unit = data.draw(st.sampled_from([matter["unit"], body.get("unit")]), label="path unit")
            path_unit = unit if isinstance(unit, str) and 0 < len(unit) <= 1000 else matter["unit"]
            response = http.post(
                f"/v1/units/{quote(path_unit, safe='', errors='surrogatepass')}/feedback",
                content=json_bytes(body),
                headers=routing.headers(path_unit) | {"Content-Type": "application/json"},
            )
            statuses[response.status_code] += 1
            assert response.status_code < 500, (changes, response.text[:500])
            if response.status_code == 422:
                assert names_fields(response), (changes, response.text[:500])
            if response.status_code == 202:
                view = http.get(f"/v1/matters/{matter['matter_id']}", headers=routing.headers())
                assert view.status_code == 200, view.text
                assert body["action"] in {h["action"] for h in view.json()["history"]}, (changes, view.text[:500])

        answered()
    print("routing: mutated feedback answers by status:", dict(sorted(statuses.items())))
    assert statuses[202] > 0 and statuses[422] > 0
    errors = log_errors(routing.process.log, start)
    assert not errors, errors[:3]


NASTY_PATH_SEGMENTS = ["%00", "a%00b", "%01", "%7F", "%C2%85", "%ED%A0%80", "%FF", "x" * 5000, "%20", "..%2F..", "🙂"]
NASTY_HEADERS = ["\x7f", "é" * 10, "x" * 10_000, " ", "a\tb", "\x85"]


def test_mutated_operator_requests_are_answered(routing: Routing) -> None:
    """Reassignment of an existing matter with a mutated body and odd X-Operator headers; queues and matters
    looked up with odd path segments. A 4xx naming the field, or a 2xx that is stored."""
    start = log_size(routing.process.log)
    statuses: Counter[tuple[str, int]] = Counter()
    with httpx.Client(base_url=routing.url, timeout=60) as http:

        @given(data=st.data())
        @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answered(data: Any) -> None:
            matter = data.draw(st.sampled_from(routing.matters), label="matter")
            kind = data.draw(st.sampled_from(["reassign", "queue", "matter"]), label="request")
            if kind == "reassign":
                valid = {"unit": data.draw(st.sampled_from(UNITS)), "reason": "误转，改由其他单位办理"}
                body, changes = mutate(data, valid)
                operator = data.draw(st.one_of(st.none(), st.sampled_from(NASTY_HEADERS), st.text(max_size=20)))
                headers = routing.headers() | {"Content-Type": "application/json"}
                if operator is not None:
                    headers["X-Operator"] = operator
                try:
                    response = http.post(
                        f"/v1/matters/{matter['matter_id']}/reassign", content=json_bytes(body), headers=headers
                    )
                except (httpx.LocalProtocolError, UnicodeEncodeError):
                    return  # a header no HTTP client sends
            else:
                segment = data.draw(
                    st.one_of(
                        st.sampled_from(NASTY_PATH_SEGMENTS),
                        st.text(max_size=40).map(lambda t: quote(t, safe="", errors="surrogatepass")),
                    )
                )
                path = f"/v1/queues/{segment}" if kind == "queue" else f"/v1/matters/{segment}"
                response = http.get(path, headers=routing.headers())
                changes = [path[:80]]
            statuses[(kind, response.status_code)] += 1
            assert response.status_code < 500, (kind, changes, response.text[:500])
            if response.status_code == 422:
                assert names_fields(response), (kind, changes, response.text[:500])
            if kind == "reassign" and response.status_code == 200:
                view = http.get(f"/v1/matters/{matter['matter_id']}", headers=routing.headers()).json()
                assert view["unit"] == body["unit"] and view["history"][-1]["reason"] == body["reason"], changes

        answered()
    print("routing: mutated operator requests by status:", by_operation(statuses))
    assert any(code == 200 for (kind, code) in statuses if kind == "reassign")
    errors = log_errors(routing.process.log, start)
    assert not errors, errors[:3]


def test_an_oversized_feedback_body_is_refused_unread(routing: Routing) -> None:
    matter = next(m for m in routing.matters if m["unit"])
    body = _feedback(matter, FeedbackAction.NOT_ACCEPTED) | {"reason": "理" * 200_000}
    with httpx.Client(base_url=routing.url, timeout=60) as http:
        for chunked in (False, True):
            content = json_bytes(body)
            answer = http.post(
                f"/v1/units/{matter['unit']}/feedback",
                content=iter([content]) if chunked else content,  # chunked: no Content-Length to go by
                headers=routing.headers(matter["unit"]) | {"Content-Type": "application/json"},
            )
            assert answer.status_code == 413, answer.text
            assert [e["field"] for e in answer.json()["errors"]] == ["<body>"]
        view = http.get(f"/v1/matters/{matter['matter_id']}", headers=routing.headers()).json()
        assert all(h["reason"] != body["reason"] for h in view["history"])
