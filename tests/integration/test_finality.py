"""Three-tier finality (三级终结) through the real intake, routing and supervision processes, as deployed:
every event is produced by the service that owns it, units answer over routing's HTTP API with their keys.

A city's opinion is reviewed by the department for the category, the department's review is decided by the
Supervision and Review Office as the handling unit (`office-supervision`); its concluded re-review terminates
the whole chain, and the same facts from the same petitioner are then not accepted again. A chain whose
window to ask one level up lapses unused is closed. A reassigned matter's former unit is told it left.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import Tail, consumed_by, start_group_at_end
from tests.integration.processes import ServiceProcess, free_port, group_settled
from xinfang_intake.app import MIGRATIONS as INTAKE_MIGRATIONS
from xinfang_routing.app import MIGRATIONS as ROUTING_MIGRATIONS
from xinfang_shared.contracts.events import UnitInboxMessage
from xinfang_shared.contracts.reference import REVIEW_OFFICE_UNIT, DeadlineType
from xinfang_shared.contracts.topics import DEADLINES_EVENTS, MATTERS_STATUS, unit_inbox_topic
from xinfang_shared.db import migrate_dsn
from xinfang_shared.deadlines import DeadlineRules
from xinfang_supervision.app import MIGRATIONS as SUPERVISION_MIGRATIONS

RULES = DeadlineRules.default()
RUN = uuid.uuid4().hex[:8]
CHANNEL_KEY = f"finality-channel-{RUN}"
OPERATOR = f"finality-operator-{RUN}"
CITY, DEPARTMENT = "city-5101", "dept-human-resources"  # a Chengdu labour matter, and the department for labour
UNITS = (CITY, "city-5103", DEPARTMENT, REVIEW_OFFICE_UNIT)
UNIT_KEYS = {unit: f"finality-{unit}-{RUN}" for unit in UNITS}
TEXT = {
    "title": "关于某公司拖欠农民工工资的反映",
    "content": "本人在某建筑公司务工，公司自今年三月起拖欠工资共计两万元，多次讨要无果，请求督促支付。",
    "category": "labor",
    "location": {"region_code": "510104", "detail": "锦江区某工地"},
}


@dataclass
class Cluster:
    intake: httpx.AsyncClient
    routing: httpx.AsyncClient
    supervision: httpx.AsyncClient
    tail: Tail

    async def submit(self, **overrides: Any) -> dict[str, Any]:
        body = factories.submission(random.Random(), **overrides)
        response = await self.intake.post("/v1/submissions", json=body, headers=_bearer(CHANNEL_KEY))
        assert response.status_code == 202, response.text
        return dict(response.json())

    async def look_up(self, code: str) -> dict[str, Any]:
        response = await self.intake.get(f"/v1/matters/{code}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def status_is(self, code: str, status: str, timeout: float = 60) -> dict[str, Any]:
        async def reached() -> bool:
            return (await self.look_up(code))["status"] == status

        await eventually(reached, timeout=timeout)
        return await self.look_up(code)

    async def feedback(self, unit: str, matter_id: str, action: str, **fields: Any) -> None:
        body = {"matter_id": matter_id, "unit": unit, "action": action, "at": datetime.now(UTC).isoformat(), **fields}
        response = await self.routing.post(f"/v1/units/{unit}/feedback", json=body, headers=_bearer(UNIT_KEYS[unit]))
        assert response.status_code == 202, response.text

    async def handled_by(self, unit: str, answer: dict[str, Any], opinion: str) -> None:
        """The unit accepts the matter and concludes it with an opinion."""
        matter_id = answer["matter_id"]
        await self.status_is(answer["tracking_code"], "transferred")
        assert (await self.look_up(answer["tracking_code"]))["unit"] == unit
        await self.feedback(unit, matter_id, "accepted")
        await self.feedback(unit, matter_id, "concluded", opinion={"result": "explain", "text": opinion})

    async def deadlines(self, matter_id: str) -> dict[str, dict[str, Any]]:
        response = await self.supervision.get(f"/v1/matters/{matter_id}/deadlines", headers=_bearer(OPERATOR))
        assert response.status_code == 200, response.text
        return {d["deadline"]: d for d in response.json()["deadlines"]}

    def statuses(self, matter_id: str) -> list[str]:
        key = matter_id.encode()
        return [orjson.loads(r.value)["status"] for r in self.tail.on(MATTERS_STATUS.name) if r.key == key]

    def inbox(self, unit: str, matter_id: str) -> list[UnitInboxMessage]:
        messages = [UnitInboxMessage.model_validate_json(r.value) for r in self.tail.on(unit_inbox_topic(unit))]
        return [m for m in messages if str(m.matter_id) == matter_id]

    def deadline_events(self, matter_id: str) -> list[dict[str, Any]]:
        key = matter_id.encode()
        return [orjson.loads(r.value) for r in self.tail.on(DEADLINES_EVENTS.name) if r.key == key]

    async def advance(self, seconds: int) -> None:
        response = await self.supervision.post(
            "/v1/admin/clock/advance", json={"seconds": seconds}, headers=_bearer(OPERATOR)
        )
        assert response.status_code == 200, response.text


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
async def cluster(database: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    logs = tmp_path_factory.mktemp("finality")
    common = os.environ | {
        "DATABASE_URL": database,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "OPERATOR_API_KEY": OPERATOR,
        "OUTBOX_POLL_INTERVAL_S": "0.2",
        "LOG_LEVEL": "WARNING",
    }
    extra = {
        "intake": {
            "CHANNEL_API_KEY": CHANNEL_KEY,
            "PUBLIC_RATE_LIMIT_PER_MINUTE": "1000000",
            "PUBLIC_RATE_LIMIT_BURST": "1000000",
        },
        "routing": {f"UNIT_API_KEY_{unit.replace('-', '_')}": key for unit, key in UNIT_KEYS.items()},
        "supervision": {"SUPERVISION_CLOCK": "controlled", "SCHEDULER_INTERVAL_S": "0.2"},
    }
    migrations = {"intake": INTAKE_MIGRATIONS, "routing": ROUTING_MIGRATIONS, "supervision": SUPERVISION_MIGRATIONS}
    processes: dict[str, ServiceProcess] = {}
    tail = Tail(bootstrap, [MATTERS_STATUS.name, DEADLINES_EVENTS.name, *(unit_inbox_topic(u) for u in UNITS)])
    await tail.start()
    try:
        for service, folder in migrations.items():
            await migrate_dsn(database, service, folder)
            group = f"test-finality-{service}-{RUN}"
            await start_group_at_end(bootstrap, group, consumed_by(service))
            env = common | {"KAFKA_GROUP_ID": group, "HTTP_PORT": str(free_port())} | extra[service]
            processes[service] = process = ServiceProcess(env, logs / f"{service}.log", service=service)
            await process.start()
            await group_settled(bootstrap, group)
        clients = {
            name: httpx.AsyncClient(base_url=f"http://127.0.0.1:{p.port}", timeout=30) for name, p in processes.items()
        }
        try:
            yield Cluster(clients["intake"], clients["routing"], clients["supervision"], tail)
        finally:
            for client in clients.values():
                await client.aclose()
    finally:
        for process in processes.values():
            process.stop()
        await tail.stop()
    for name in processes:
        errors = [line for line in (logs / f"{name}.log").read_text().splitlines() if '"level": "error"' in line]
        assert not errors, f"{name}: {errors[:3]}"


async def test_one_source_of_truth_for_the_respond_by_times_and_a_reassigned_unit_is_told(cluster: Cluster) -> None:
    matter = await cluster.submit(**TEXT)
    await cluster.status_is(matter["tracking_code"], "transferred")
    await eventually(lambda: bool(cluster.inbox(CITY, matter["matter_id"])))
    transfer = cluster.inbox(CITY, matter["matter_id"])[0]
    # What routing tells the unit is what supervision holds it to: both count from the transfer by the shared
    # deadline rules (supervision's controlled clock may run ahead of routing's by `offset`).
    await eventually(lambda: "set" in _states(cluster, matter["matter_id"], "acceptance"))
    held = await cluster.deadlines(matter["matter_id"])
    clock = await cluster.supervision.get("/v1/admin/clock", headers=_bearer(OPERATOR))
    offset = timedelta(seconds=clock.json()["offset_s"])
    for deadline in (DeadlineType.ACCEPTANCE, DeadlineType.OBJECTION):
        transferred = datetime.fromisoformat(held[deadline.value]["started_at"]) - offset
        assert transfer.respond_by[deadline.value] == RULES[deadline].due(transferred)
        assert datetime.fromisoformat(held[deadline.value]["due_at"]) == RULES[deadline].due(transferred + offset)
        if not offset:
            assert transfer.respond_by[deadline.value] == datetime.fromisoformat(held[deadline.value]["due_at"])

    response = await cluster.routing.post(
        f"/v1/matters/{matter['matter_id']}/reassign",
        json={"unit": "city-5103", "reason": "属自贡市管辖"},
        headers=_bearer(OPERATOR) | {"X-Operator": "tester"},
    )
    assert response.status_code == 200, response.text
    await eventually(lambda: any(m.type == "withdrawal" for m in cluster.inbox(CITY, matter["matter_id"])))
    withdrawal = next(m for m in cluster.inbox(CITY, matter["matter_id"]) if m.type == "withdrawal")
    assert "city-5103" in (withdrawal.order_text or "") and withdrawal.petitioner is None
    await eventually(lambda: bool(cluster.inbox("city-5103", matter["matter_id"])))
    # The former unit's acceptance deadline ended unmet: closed (not met, not overdue), then set for the new one.
    await eventually(lambda: _states(cluster, matter["matter_id"], "acceptance")[-2:] == ["closed", "set"])

    async def shown_at_the_new_unit() -> bool:
        return (await cluster.look_up(matter["tracking_code"]))["unit"] == "city-5103"

    await eventually(shown_at_the_new_unit, timeout=30)


async def test_a_concluded_re_review_terminates_the_chain_and_the_same_facts_are_not_accepted_again(
    cluster: Cluster,
) -> None:
    person = {"name": "测试人", "id_number": factories.id_number(), "phone": factories.mobile()}
    original = await cluster.submit(petitioner=person, **TEXT)
    assert original["status"] == "registered"
    await cluster.handled_by(CITY, original, "经核查，公司已承诺分期支付。")
    concluded = await cluster.status_is(original["tracking_code"], "concluded")
    assert concluded["opinion"]["result"] == "explain"
    # The opinion opens the petitioner's window to ask for a review (supervision: a window, never overdue).
    await eventually(lambda: "set" in _states(cluster, original["matter_id"], "review"))

    # The review: one level above the city, the department for labour matters.
    review = await cluster.submit(
        petitioner=person, kind="review-request", related_tracking_code=original["tracking_code"], **TEXT
    )
    await cluster.status_is(original["tracking_code"], "review-requested")
    await cluster.handled_by(DEPARTMENT, review, "复查维持原处理意见。")
    await cluster.status_is(review["tracking_code"], "review-concluded")
    await eventually(lambda: "met" in _states(cluster, original["matter_id"], "review"))

    # The re-review of a department's review: the provincial government's, done by the Supervision and Review
    # Office as the handling unit (its inbox, its key, its feedback).
    re_review = await cluster.submit(
        petitioner=person, kind="re-review-request", related_tracking_code=review["tracking_code"], **TEXT
    )
    await cluster.status_is(review["tracking_code"], "re-review-requested")
    await cluster.status_is(re_review["tracking_code"], "transferred")
    assigned = cluster.inbox(REVIEW_OFFICE_UNIT, re_review["matter_id"])
    assert [m.type for m in assigned] == ["assign"] and assigned[0].office == "supervision"
    await cluster.handled_by(REVIEW_OFFICE_UNIT, re_review, "复核认为原处理意见正确，予以维持。")

    # Final: the re-review, the review and the original are all terminated.
    for answer in (re_review, review, original):
        await cluster.status_is(answer["tracking_code"], "terminated")
    assert cluster.statuses(re_review["matter_id"])[-2:] == ["re-review-concluded", "terminated"]
    assert cluster.statuses(review["matter_id"])[-1] == "terminated"
    assert cluster.statuses(original["matter_id"])[-3:] == ["concluded", "review-requested", "terminated"]
    # Nothing of the chain is still running at supervision; the re-review was decided in time.
    # (Supervision reads the statuses in its own time: the termination reaches it a moment after intake.)
    for answer in (original, review, re_review):

        async def ended(matter_id: str = answer["matter_id"]) -> bool:
            return not any(v["open"] for v in (await cluster.deadlines(matter_id)).values())

        await eventually(ended, timeout=60)
    assert (await cluster.deadlines(re_review["matter_id"]))["re-review"]["on_time"] is True

    # The same facts again, from the same petitioner: registered, marked not accepted again, not routed.
    again = await cluster.submit(petitioner=person, **TEXT)
    assert again["status"] == "not-accepted-again"
    await eventually(lambda: cluster.statuses(again["matter_id"]) == ["not-accepted-again"])
    assert (await cluster.look_up(again["tracking_code"]))["unit"] is None
    # ...while another matter of the same petitioner is a new one.
    other = await cluster.submit(petitioner=person, title="反映小区噪音扰民", content="某工厂夜间施工，噪音严重。")
    assert other["status"] == "registered"


async def test_a_chain_whose_review_window_lapses_is_closed(cluster: Cluster) -> None:
    person = {"name": "测试人", "id_number": factories.id_number(), "phone": factories.mobile()}
    matter = await cluster.submit(petitioner=person, **TEXT)
    await cluster.handled_by(CITY, matter, "已督促企业支付。")
    await cluster.status_is(matter["tracking_code"], "concluded")
    await eventually(lambda: "set" in _states(cluster, matter["matter_id"], "review"))
    window = next(e for e in cluster.deadline_events(matter["matter_id"]) if e["deadline"] == "review")
    assert window["window"] is True

    # Thirty days pass without a request (counted as the law counts: to 24:00 of the last day, past a holiday
    # if it falls on one): the window lapses, the matter is closed.
    clock = await cluster.supervision.get("/v1/admin/clock", headers=_bearer(OPERATOR))
    now = datetime.fromisoformat(clock.json()["now"])
    await cluster.advance(int((datetime.fromisoformat(window["due_at"]) - now).total_seconds()) + 60)
    await eventually(lambda: "closed" in _states(cluster, matter["matter_id"], "review"), timeout=60)
    closed = await cluster.status_is(matter["tracking_code"], "closed")
    assert closed["opinion"]["result"] == "explain"
    # A repeat of a closed matter is a new matter (only a terminated one is not accepted again).
    assert (await cluster.submit(petitioner=person, **TEXT))["status"] == "registered"


def _states(cluster: Cluster, matter_id: str, deadline: str) -> list[str]:
    return [e["state"] for e in cluster.deadline_events(matter_id) if e["deadline"] == deadline]
