"""Supervision's HTTP API fuzzed on the real process, started with SUPERVISION_CLOCK=controlled (so the clock
endpoints exist) in a database of its own: schemathesis from its OpenAPI document (operator key, the ids of
matters with running deadlines), mutated hearing requests, and the controlled clock pushed to its bounds. Never
a 5xx, every 422 names its fields, no error in the log; and after all that supervision still works."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import eventually
from tests.integration.processes import (
    NASTY_NUMBERS,
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
from xinfang_shared.contracts.events import MatterStatus, MatterStatusChanged
from xinfang_shared.contracts.reference import DeadlineType
from xinfang_shared.contracts.topics import MATTERS_STATUS
from xinfang_supervision.app import MIGRATIONS

OPERATOR_KEY = "fuzz-operator-" + uuid.uuid4().hex
UNITS = ["city-5101", "city-5107", "dept-housing"]
DAY = 86_400
TEN_YEARS_S = 3653 * DAY
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass
class Supervision:
    process: ServiceProcess
    url: str
    database: str
    producer: AIOKafkaProducer
    transferred: list[uuid.UUID]  # acceptance and objection running
    in_re_review: list[uuid.UUID]  # re-review running (pausable)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {OPERATOR_KEY}"}

    async def send(self, event: MatterStatusChanged) -> None:
        await self.producer.send_and_wait(
            MATTERS_STATUS.name, event.model_dump_json().encode(), key=str(event.matter_id).encode()
        )

    async def open_deadlines(self, ids: list[uuid.UUID], deadline: DeadlineType) -> int:
        conn = await asyncpg.connect(self.database, server_settings={"search_path": "supervision"})
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM deadlines WHERE open AND deadline = $2 AND matter_id = ANY($1)",
                    ids,
                    deadline.value,
                )
            )
        finally:
            await conn.close()

    async def seed(self, count: int) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """Matters transferred to units (as routing publishes it), half of them then in re-review."""
        transferred = [uuid.uuid4() for _ in range(count)]
        for i, matter in enumerate(transferred):
            await self.send(_status(matter, MatterStatus.TRANSFERRED, MatterStatus.REGISTERED, UNITS[i % len(UNITS)]))
        reviewed = transferred[: count // 2]
        for i, matter in enumerate(reviewed):
            await self.send(_status(matter, MatterStatus.IN_RE_REVIEW, MatterStatus.TRANSFERRED, UNITS[i % len(UNITS)]))
        rest = transferred[count // 2 :]

        async def seeded() -> bool:
            return await self.open_deadlines(reviewed, DeadlineType.RE_REVIEW) == len(
                reviewed
            ) and await self.open_deadlines(rest, DeadlineType.ACCEPTANCE) == len(rest)

        await eventually(seeded, timeout=60)
        return rest, reviewed


def _status(matter: uuid.UUID, status: MatterStatus, previous: MatterStatus, unit: str) -> MatterStatusChanged:
    return MatterStatusChanged(
        matter_id=matter,
        status=status,
        previous_status=previous,
        unit=unit,
        at=datetime.now(UTC),
        action="routed" if status == MatterStatus.TRANSFERRED else "accepted",
    )


@pytest.fixture(scope="module")
async def supervision(
    stack: dict[str, str], bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Supervision]:
    # A database of its own: the fuzzer moves this clock by decades, which no other test may see.
    async with private_database(stack["DATABASE_URL"]) as database:
        log = tmp_path_factory.mktemp("fuzz") / "supervision.log"
        process = await start_fuzzed(
            "supervision",
            database=database,
            bootstrap=bootstrap,
            migrations=Path(MIGRATIONS),
            log=log,
            env={"OPERATOR_API_KEY": OPERATOR_KEY, "SUPERVISION_CLOCK": "controlled", "SCHEDULER_INTERVAL_S": "0.2"},
        )
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            harness = Supervision(process, f"http://127.0.0.1:{process.port}", database, producer, [], [])
            harness.transferred, harness.in_re_review = await harness.seed(24)
            yield harness
        finally:
            await producer.stop()
            process.stop()


async def _clock(http: httpx.AsyncClient) -> dict[str, Any]:
    answer = await http.get("/v1/admin/clock")
    assert answer.status_code == 200, answer.text
    clock: dict[str, Any] = answer.json()
    return clock


def test_supervision_api_answers_no_5xx(supervision: Supervision) -> None:
    start = log_size(supervision.process.log)
    transferred = [str(m) for m in supervision.transferred[:4]]
    reviewed = [str(m) for m in supervision.in_re_review[:4]]

    def fixed(operation: Any) -> list[dict[str, Any]]:
        if operation.path.endswith(("/pause", "/resume", "/extend")):
            return [{"matter_id": m, "deadline": "re-review"} for m in reviewed] + [
                {"matter_id": m, "deadline": "acceptance"} for m in transferred[:2]
            ]
        if "{matter_id}" in operation.path:
            return [{"matter_id": m} for m in transferred + reviewed]
        return []

    statuses = fuzz_openapi(
        supervision.url,
        headers=lambda _: supervision.headers,
        fixed=fixed,
        max_examples=80,
        expect_paths={
            "/v1/matters/{matter_id}/deadlines",
            "/v1/deadlines",
            "/v1/deadlines/on-time",
            "/v1/matters/{matter_id}/deadlines/{deadline}/pause",
            "/v1/matters/{matter_id}/deadlines/{deadline}/resume",
            "/v1/matters/{matter_id}/deadlines/{deadline}/extend",
            "/v1/admin/clock/advance",
            "/v1/admin/clock",
        },
    )
    table = by_operation(statuses)
    print("supervision: schemathesis answers by operation and status:", table)
    assert table["GET /v1/matters/{matter_id}/deadlines"].get(200), "existing deadlines were read"
    assert any(400 <= code < 500 for _, code in statuses)
    errors = log_errors(supervision.process.log, start)
    assert not errors, errors[:3]


async def test_mutated_hearings_and_advances_are_answered(supervision: Supervision) -> None:
    """Pause and resume of running deadlines with mutated bodies and odd operators, and advances by odd amounts:
    a 4xx naming the field, or a 200; never a 5xx."""
    start = log_size(supervision.process.log)
    statuses: Counter[tuple[str, int]] = Counter()
    requests: list[tuple[str, str, bytes, dict[str, str]]] = []

    @given(data=st.data())
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def request(data: Any) -> None:
        kind = data.draw(st.sampled_from(["pause", "resume", "advance"]), label="request")
        if kind == "advance":
            seconds = data.draw(st.one_of(st.sampled_from(NASTY_NUMBERS), st.integers(-(2**70), 2**70)))
            requests.append((kind, "/v1/admin/clock/advance", json_bytes({"seconds": seconds}), {}))
            return
        matter = data.draw(st.sampled_from(supervision.in_re_review + supervision.transferred[:2]), label="matter")
        deadline = data.draw(
            st.sampled_from(["re-review"] * 3 + ["acceptance", "objection", "handling"]), label="deadline"
        )
        body, _ = mutate(data, {"reason": "复查听证，2026年12月10日，省信访局"}, most_valid=0.5)
        operator = data.draw(st.sampled_from(["li", "fuzz", "ops 1", "x" * 101, "", " ", "\x7f"]), label="operator")
        requests.append(
            (kind, f"/v1/matters/{matter}/deadlines/{deadline}/{kind}", json_bytes(body), {"X-Operator": operator})
        )

    # Fresh matters: the clock may be years ahead by now, and deadlines started at its now are still running.
    _, supervision.in_re_review = await supervision.seed(8)
    # Explicit examples first, so the database path is taken whatever hypothesis draws: a pause and a resume.
    for kind in ("pause", "resume"):
        path = f"/v1/matters/{supervision.in_re_review[0]}/deadlines/re-review/{kind}"
        requests.append((kind, path, json_bytes({"reason": "复查听证"}), {"X-Operator": "fuzz"}))
    request()
    async with httpx.AsyncClient(base_url=supervision.url, headers=supervision.headers, timeout=120) as http:
        for kind, path, body, headers in requests:
            try:
                answer = await http.post(path, content=body, headers=headers | {"Content-Type": "application/json"})
            except (httpx.LocalProtocolError, UnicodeEncodeError):
                continue  # a header no HTTP client sends
            statuses[(kind, answer.status_code)] += 1
            assert answer.status_code < 500, (path, body[:200], headers, answer.text[:500])
            if answer.status_code == 422:
                assert names_fields(answer), (path, body[:200], headers, answer.text[:500])
        await asyncio.sleep(0.5)
        assert (await http.get("/v1/admin/clock")).status_code == 200
    print("supervision: mutated hearings and advances by status:", by_operation(statuses))
    assert statuses[("advance", 422)] > 0 and statuses[("pause", 200)] > 0 and statuses[("resume", 200)] > 0
    errors = log_errors(supervision.process.log, start)
    assert not errors, errors[:3]


async def test_the_clock_is_bounded_and_nothing_is_stored_when_refused(supervision: Supervision) -> None:
    """Runs last (it leaves the clock near 2200): a step of more than ten years, or one that would take the clock past
    2200-01-01, is refused with a 422 naming `seconds` and leaves the clock where it was; everything else still
    answers, and events are still processed."""
    start = log_size(supervision.process.log)
    async with httpx.AsyncClient(base_url=supervision.url, headers=supervision.headers, timeout=120) as http:
        before = await _clock(http)
        for seconds in (TEN_YEARS_S + 1, 10**12, 2**63, 10**30, -1, 1.5, "soon", None, 1e308, [60]):
            answer = await http.post(
                "/v1/admin/clock/advance",
                content=json_bytes({"seconds": seconds}),
                headers={"Content-Type": "application/json"},
            )
            assert answer.status_code == 422, (seconds, answer.status_code, answer.text)
            assert [e["field"] for e in answer.json()["errors"]] == ["seconds"], answer.text
        assert (await _clock(http))["offset_s"] == before["offset_s"], "nothing stored"

        # Ten years at a time up to the bound: the step that would pass 2200 is refused, nothing stored.
        steps = 0
        while True:
            answer = await http.post("/v1/admin/clock/advance", json={"seconds": TEN_YEARS_S})
            if answer.status_code != 200:
                break
            steps += 1
            assert steps < 30, "the clock never stops"
        assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "seconds", answer.text
        at_bound = await _clock(http)
        now = datetime.fromisoformat(at_bound["now"])
        assert LATEST - timedelta(days=3653) < now < LATEST, at_bound
        left = int((LATEST - now).total_seconds())
        past = await http.post("/v1/admin/clock/advance", json={"seconds": left + 60})
        assert past.status_code == 422 and past.json()["errors"][0]["field"] == "seconds", past.text
        assert (await _clock(http))["offset_s"] == at_bound["offset_s"], "nothing stored"
        assert (await http.post("/v1/admin/clock/advance", json={"seconds": 0})).status_code == 200

        # Every route still answers, and supervision still opens deadlines for a new transfer.
        matter = uuid.uuid4()
        await supervision.send(_status(matter, MatterStatus.TRANSFERRED, MatterStatus.REGISTERED, UNITS[0]))

        async def opened() -> bool:
            return await supervision.open_deadlines([matter], DeadlineType.ACCEPTANCE) == 1

        await eventually(opened, timeout=60)
        deadlines = await http.get(f"/v1/matters/{matter}/deadlines")
        assert deadlines.status_code == 200, deadlines.text
        acceptance = next(d for d in deadlines.json()["deadlines"] if d["deadline"] == "acceptance")
        assert datetime.fromisoformat(acceptance["due_at"]) > LATEST - timedelta(days=3653)
        pause = await http.post(
            f"/v1/matters/{supervision.in_re_review[0]}/deadlines/re-review/pause",
            json={"reason": "听证"},
            headers={"X-Operator": "fuzz"},
        )
        assert pause.status_code in (200, 409), pause.text  # long overdue by now: too late to pause
        for path in ("/v1/deadlines?stage=overdue", "/v1/deadlines/on-time", "/v1/admin/clock"):
            answer = await http.get(path)
            assert answer.status_code == 200, (path, answer.text)
        # An offset stored before the clock had bounds (or by hand) is read as the bound, not overflowed.
        conn = await asyncpg.connect(supervision.database, server_settings={"search_path": "supervision"})
        try:
            await conn.execute("UPDATE clock SET offset_s = 1e300")
        finally:
            await conn.close()
        clock = await _clock(http)
        assert datetime.fromisoformat(clock["now"]) <= LATEST + timedelta(minutes=1), clock
        late = uuid.uuid4()
        await supervision.send(_status(late, MatterStatus.TRANSFERRED, MatterStatus.REGISTERED, UNITS[1]))

        async def opened_late() -> bool:
            return await supervision.open_deadlines([late], DeadlineType.ACCEPTANCE) == 1

        await eventually(opened_late, timeout=60)
        refused = await http.post("/v1/admin/clock/advance", json={"seconds": 60})
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "seconds", refused.text
    print(f"supervision: the clock took {steps} ten-year steps to reach {at_bound['now']}")
    errors = log_errors(supervision.process.log, start)
    assert not errors, errors[:3]
