"""Stats through the real pipeline (intake → routing → supervision with the controlled clock → unit feedback →
ratings; the real broker, a database of its own): every figure of the summary, for every dimension, equals
what is computed here from the matters submitted and what the pipeline did with them (as seen on its topics),
overdue after a clock advance and the on-time rate included; the rebuild from the topics gives the same rows."""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import Tail
from tests.integration.pipeline import UPSTREAM, common_settings, prepare, upstream
from tests.integration.processes import private_database
from xinfang_shared.contracts.events import DeadlineEvent
from xinfang_shared.contracts.reference import CITIES, DeadlineState, DeadlineType
from xinfang_shared.contracts.topics import DEADLINES_EVENTS, MATTERS_REGISTERED_V2, MATTERS_ROUTED, MATTERS_STATUS
from xinfang_shared.db import create_pool
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.service import Service
from xinfang_shared.workdays import CHINA
from xinfang_stats import figures
from xinfang_stats.app import create_service as create_stats
from xinfang_stats.rebuild import rebuild
from xinfang_stats.settings import StatsSettings

RUN = uuid.uuid4().hex[:8]
CHANNEL_KEY, OPERATOR = f"stats-channel-{RUN}", f"stats-operator-{RUN}"
UNIT_KEYS = {unit: f"stats-{unit}-{RUN}" for unit in CITIES}
GROUPS = ("channel", "office", "unit", "category", "region")
REPRESENTATIVE = [{"name": "代表甲", "id_number": factories.id_number(), "phone": factories.mobile()}]


@dataclass
class Cluster:
    services: dict[str, Service]
    intake: httpx.AsyncClient
    routing: httpx.AsyncClient
    supervision: httpx.AsyncClient
    stats: httpx.AsyncClient
    tail: Tail
    stats_settings: StatsSettings
    started: datetime
    submitted: list[dict[str, Any]] = field(default_factory=list)

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.intake.post("/v1/submissions", json=body, headers=_bearer(CHANNEL_KEY))
        assert response.status_code == 202, response.text
        answer = dict(response.json())
        self.submitted.append(answer | {"body": body})
        return answer

    async def status(self, code: str) -> dict[str, Any]:
        response = await self.intake.get(f"/v1/matters/{code}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def feedback(self, unit: str, matter_id: str, action: str, **fields: Any) -> None:
        body = {"matter_id": matter_id, "unit": unit, "action": action, "at": datetime.now(UTC).isoformat(), **fields}
        response = await self.routing.post(f"/v1/units/{unit}/feedback", json=body, headers=_bearer(UNIT_KEYS[unit]))
        assert response.status_code == 202, response.text

    async def summary(self, group_by: str, start: date, end: date) -> list[dict[str, Any]]:
        params = {"group_by": group_by, "from": str(start), "to": str(end)}
        response = await self.stats.get("/v1/stats/summary", params=params, headers=_bearer(OPERATOR))
        assert response.status_code == 200, response.text
        return list(response.json()["rows"])

    def events(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.tail.on(topic)]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
async def cluster(stack: dict[str, str], bootstrap: str) -> AsyncIterator[Cluster]:
    async with private_database(stack["DATABASE_URL"]) as database:
        common = common_settings(database, bootstrap, OPERATOR)
        started = datetime.now(UTC)
        groups = await prepare(database, bootstrap, f"test-stats-{RUN}", (*UPSTREAM, "stats"))
        services = upstream(groups, common, channel_key=CHANNEL_KEY, unit_keys=UNIT_KEYS, scheduler_interval_s=0.2)
        stats_settings = StatsSettings(kafka_group_id=groups["stats"], **common)
        stats = create_stats(stats_settings)
        services["stats"] = stats
        tail = Tail(
            bootstrap, [MATTERS_REGISTERED_V2.name, MATTERS_ROUTED.name, MATTERS_STATUS.name, DEADLINES_EVENTS.name]
        )
        await tail.start()
        for service in services.values():
            await service.start()
        clients = {
            name: httpx.AsyncClient(transport=httpx.ASGITransport(app=s.api), base_url=f"http://{name}", timeout=30)
            for name, s in services.items()
        }
        try:
            yield Cluster(
                services,
                clients["intake"],
                clients["routing"],
                clients["supervision"],
                clients["stats"],
                tail,
                stats_settings,
                started,
            )
        finally:
            for client in clients.values():
                await client.aclose()
            for service in reversed(services.values()):
                await service.stop()
            await tail.stop()


# Petitioners' names as people have them, and a name every matter mentions (enough matters to be a hot term, were
# person names not left out): the text stats reads holds personal data, as real petitions do.
NAMES = ["王建国", "李秀英", "张伟", "刘德明", "陈桂兰", "杨志强", "赵淑芬", "黄立新", "周玉梅", "吴振华", "徐海燕"]
MENTIONED = "马德胜"


def _bodies(rng: random.Random) -> list[dict[str, Any]]:
    """A known set: every channel, several cities, kinds and categories, a group visit. Each petitioner writes their
    own name, ID number, phone and e-mail into the content, and every matter names the same other person."""
    bodies = []
    categories = ["labor", "housing", "land", "environment"]
    kinds = ["complaint", "request", "suggestion"]
    for i in range(18):
        bodies.append(
            factories.submission(
                rng,
                channel="online" if i % 3 == 0 else "letter",
                kind=kinds[i % 3],
                category=categories[i % 4],
            )
        )
    bodies.append(factories.submission(rng, channel="visit", visit={"place": "chengdu"}, category="labor"))
    bodies.append(
        factories.submission(
            rng,
            channel="visit",
            visit={"place": "chengdu"},
            headcount=6,
            representatives=REPRESENTATIVE,
            category="housing",
        )
    )
    bodies.append(factories.submission(rng, channel="mailbox", mailbox="governor", category="environment"))
    for i, body in enumerate(bodies):
        person = body["petitioner"] | {"name": NAMES[i % len(NAMES)], "email": f"xf{i}-{RUN}@example.cn"}
        body["petitioner"] = person
        body["content"] += (
            f" 我叫{person['name']}，身份证号{person['id_number']}，电话{person['phone']}，邮箱{person['email']}。"
            f"此事{MENTIONED}经手，{MENTIONED}说不归他管。"
        )
    return bodies


def _percentile(values: list[float], q: float) -> float | None:
    """PostgreSQL's percentile_cont: linear between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _expected(truth: list[dict[str, Any]], group_by: str) -> dict[Any, dict[str, Any]]:
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for matter in truth:
        groups[matter[group_by]].append(matter)
    rows = {}
    for key, matters in groups.items():
        concluded = [m for m in matters if m["concluded_at"]]
        rated = [m for m in matters if m["rating"]]
        days = [(m["concluded_at"] - m["registered_at"]).total_seconds() / 86400 for m in concluded]
        median, p90 = _percentile(days, 0.5), _percentile(days, 0.9)
        rows[key] = {
            "key": key,
            "registered": len(matters),
            "repeats": sum(1 for m in matters if m["repeat"]),
            "routed": sum(1 for m in matters if m["office"]),
            "accepted": sum(1 for m in matters if m["accepted"]),
            "concluded": len(concluded),
            "overdue": sum(1 for m in matters if m["overdue"]),
            "on_time_rate": (
                round(sum(1 for m in concluded if not m["overdue"] and not m["late"]) / len(concluded), 4)
                if concluded
                else None
            ),
            "median_days_to_conclude": None if median is None else pytest.approx(median, abs=0.006),
            "p90_days_to_conclude": None if p90 is None else pytest.approx(p90, abs=0.006),
            "satisfaction": (
                round(sum(1 for m in rated if m["rating"] != "unsatisfied") / len(rated), 4) if rated else None
            ),
        }
    return rows


def _truth(cluster: Cluster, ratings: dict[str, str]) -> list[dict[str, Any]]:
    """Each matter as the pipeline's own topics tell it: what stats must have counted."""
    routed = {e["matter_id"]: e for e in cluster.events(MATTERS_ROUTED.name)}
    statuses: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in cluster.events(MATTERS_STATUS.name):
        statuses[e["matter_id"]].append(e)
    deadlines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in cluster.events(DEADLINES_EVENTS.name):
        deadlines[e["matter_id"]].append(e)
    ours = {a["matter_id"] for a in cluster.submitted}
    truth = []
    for e in cluster.events(MATTERS_REGISTERED_V2.name):
        if e["matter_id"] not in ours:
            continue
        mid = e["matter_id"]
        route = routed.get(mid)
        concluded = [datetime.fromisoformat(s["at"]) for s in statuses[mid] if s["status"] == "concluded"]
        binding = [d for d in deadlines[mid] if not d.get("window")]
        truth.append(
            {
                "matter_id": mid,
                "registered_at": datetime.fromisoformat(e["registered_at"]),
                "channel": e["channel"],
                "region": e["location"]["region_code"][:4] if e.get("location") else "",
                "category": e["category"] or (route and route["category"]),
                "office": route and route["office"],
                "unit": route and route["unit"],
                "repeat": bool(e["duplicate_of"] or e["not_accepted_again"]),
                "accepted": any(s["status"] == "accepted" for s in statuses[mid]),
                "concluded_at": min(concluded) if concluded else None,
                "overdue": any(d["state"] == "overdue" for d in binding),
                "late": any(d["state"] == "met" and d.get("on_time") is False for d in binding),
                "rating": ratings.get(mid),
            }
        )
    return truth


async def test_every_figure_equals_the_submitted_set_and_the_rebuild_equals_live(cluster: Cluster) -> None:
    rng = random.Random(20261201)
    bodies = _bodies(rng)
    answers = [await cluster.submit(body) for body in bodies]
    repeat = await cluster.submit(bodies[0] | {"external_id": f"ext-{uuid.uuid4()}"})  # the same matter again
    assert (await cluster.status(repeat["tracking_code"]))["tracking_code"] == repeat["tracking_code"]
    await cluster.tail.wait(MATTERS_REGISTERED_V2.name, lambda r: r.key == repeat["matter_id"].encode())
    await cluster.tail.wait(MATTERS_ROUTED.name, lambda r: True, count=len(answers), timeout=60)

    routed = {e["matter_id"]: e for e in cluster.events(MATTERS_ROUTED.name)}
    with_unit = [a for a in answers if routed[a["matter_id"]]["unit"]]
    assert len(with_unit) >= 12, "the known set needs matters transferred to units"

    async def transferred(answer: dict[str, Any]) -> bool:
        return (await cluster.status(answer["tracking_code"]))["status"] == "transferred"

    for answer in with_unit:
        await eventually(lambda a=answer: transferred(a), timeout=60)  # type: ignore[misc]
    # What the units do: conclude a third (on time), refuse some, accept some, leave the rest to go overdue.
    concluded, refused, accepted, idle = with_unit[0::4], with_unit[1::4], with_unit[2::4], with_unit[3::4]
    for answer in concluded:
        unit = routed[answer["matter_id"]]["unit"]
        await cluster.feedback(unit, answer["matter_id"], "accepted")
        await cluster.feedback(unit, answer["matter_id"], "concluded", opinion={"result": "support", "text": "已解决"})
    for answer in refused:
        unit = routed[answer["matter_id"]]["unit"]
        await cluster.feedback(unit, answer["matter_id"], "not-accepted", reason="不属于本单位职责")
    for answer in accepted:
        await cluster.feedback(routed[answer["matter_id"]]["unit"], answer["matter_id"], "accepted")

    # Ratings of the concluded: once intake knows the opinion.
    ratings: dict[str, str] = {}
    for answer, rating in zip(
        concluded, ["satisfied", "unsatisfied", "basically-satisfied", "satisfied"], strict=False
    ):

        async def opinion_known(a: dict[str, Any] = answer) -> bool:
            return (await cluster.status(a["tracking_code"]))["status"] == "concluded"

        await eventually(opinion_known, timeout=60)
        response = await cluster.intake.post(f"/v1/matters/{answer['tracking_code']}/rating", json={"rating": rating})
        assert response.status_code in (200, 202), response.text
        ratings[answer["matter_id"]] = rating

    # Supervision has taken in what the units did (it reads matters.status.v1 in its own time): else the clock's
    # jump could overtake a conclusion still on its way, and a matter concluded on time would go overdue.
    def units_heard() -> bool:
        met = {(e["matter_id"], e["deadline"]) for e in cluster.events(DEADLINES_EVENTS.name) if e["state"] == "met"}
        return all((a["matter_id"], "handling") in met for a in concluded) and all(
            (a["matter_id"], "acceptance") in met for a in refused + accepted
        )

    await eventually(units_heard, timeout=60)
    # Past the acceptance deadlines of the idle ones (and the office queues' routing ones): all started by now, so
    # all end by the end of one started now, as the rules count it (20 days fell short before a long holiday).
    clock = await cluster.supervision.get("/v1/admin/clock", headers=_bearer(OPERATOR))
    now = datetime.fromisoformat(clock.json()["now"])
    rules = DeadlineRules.default()
    past = max(rules[d].due(now) for d in (DeadlineType.ROUTING, DeadlineType.ACCEPTANCE)) + timedelta(minutes=1)
    response = await cluster.supervision.post(
        "/v1/admin/clock/advance",
        json={"seconds": math.ceil((past - now).total_seconds())},
        headers=_bearer(OPERATOR),
    )
    assert response.status_code == 200, response.text
    idle_ids = {a["matter_id"] for a in idle}

    def overdue_seen() -> bool:
        overdue = {e["matter_id"] for e in cluster.events(DEADLINES_EVENTS.name) if e["state"] == "overdue"}
        return idle_ids <= overdue

    await eventually(overdue_seen, timeout=60)
    # One of them is handled late after all: overdue, then met late, so it is concluded but not on time.
    late = idle[0]
    unit = routed[late["matter_id"]]["unit"]
    await cluster.feedback(unit, late["matter_id"], "accepted")
    await cluster.feedback(unit, late["matter_id"], "concluded", opinion={"result": "explain", "text": "已答复"})
    await cluster.tail.wait(
        MATTERS_STATUS.name,
        lambda r: r.key == late["matter_id"].encode() and orjson.loads(r.value)["status"] == "concluded",
        timeout=60,
    )

    def late_met_seen() -> bool:
        # Its acceptance met late, and then (supervision's next event, which the figures do not wait for but
        # the replay below must find on the topic) its handling met.
        met = [e for e in cluster.events(DEADLINES_EVENTS.name) if e["matter_id"] == late["matter_id"]]
        met = [e for e in met if e["state"] == "met"]
        return any(e.get("on_time") is False for e in met) and any(e["deadline"] == "handling" for e in met)

    await eventually(late_met_seen, timeout=60)

    truth = _truth(cluster, ratings)
    assert len(truth) == len(answers) + 1
    assert sum(m["repeat"] for m in truth) == 1, "the resubmission is a repeat"
    assert any(m["late"] for m in truth) and any(m["overdue"] for m in truth)
    assert not any(m["overdue"] for m in truth if m["matter_id"] in {a["matter_id"] for a in concluded})
    days = {m["registered_at"].astimezone(CHINA).date() for m in truth}
    start, end = min(days), max(days)

    async def figures_match() -> bool:
        for group_by in GROUPS:
            got = {row["key"]: row for row in await cluster.summary(group_by, start, end)}
            if got != _expected(truth, group_by):
                return False
        return True

    try:
        await eventually(figures_match, timeout=60)
    except AssertionError:
        for group_by in GROUPS:  # say which figure differs
            got = {row["key"]: row for row in await cluster.summary(group_by, start, end)}
            assert got == _expected(truth, group_by), group_by
        raise

    # The time series adds up to the same registrations; the unit ranking counts the same transfers.
    response = await cluster.stats.get(
        "/v1/stats/timeseries",
        params={"metric": "registered", "interval": "hour", "from": str(start), "to": str(end)},
        headers=_bearer(OPERATOR),
    )
    assert sum(p["value"] for s in response.json()["series"] for p in s["points"]) == len(truth)
    response = await cluster.stats.get(
        "/v1/stats/units", params={"from": str(start), "to": str(end)}, headers=_bearer(OPERATOR)
    )
    per_unit = {u["unit"]: u["transferred"] for u in response.json()["units"]}
    transferred_by_unit: dict[str, int] = defaultdict(int)
    for m in truth:
        if m["unit"]:
            transferred_by_unit[m["unit"]] += 1
    assert per_unit == transferred_by_unit
    csv = await cluster.stats.get(
        "/v1/stats/summary",
        params={"group_by": "channel", "from": str(start), "to": str(end)},
        headers=_bearer(OPERATOR) | {"Accept": "text/csv"},
    )
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("key,registered,") and len(lines) == 1 + len({m["channel"] for m in truth})

    # Replay: the topics again, from this module's start, into fresh tables: the same rows as live.
    rebuilt = await rebuild(cluster.stats_settings, "stats_rebuilt", since=cluster.started, out=io.StringIO())
    assert sum(rebuilt.skipped.values()) == 0
    live_pool = await create_pool(cluster.stats_settings.database_url, "stats", min_size=1, max_size=2)
    replay_pool = await create_pool(cluster.stats_settings.database_url, "stats_rebuilt", min_size=1, max_size=2)
    try:
        # And the reports' supervision orders and escalations, kept from the same deadline events.
        assert await replay_pool.fetchval("SELECT count(*) FROM supervision_actions WHERE state = 'overdue'") > 0
        for table in ("facts", "hourly", "supervision_actions"):
            query = f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4"
            replayed = [dict(r) for r in await replay_pool.fetch(query)]

            async def live_equal(q: str = query, r: list[dict[str, Any]] = replayed) -> bool:
                return [dict(row) for row in await live_pool.fetch(q)] == r

            with contextlib.suppress(AssertionError):  # the live consumer may still be folding the last events
                await eventually(live_equal, timeout=20)
            assert replayed == [dict(r) for r in await live_pool.fetch(query)], table
        period = figures.Period(start, end)
        for group_by in GROUPS:
            live_rows = await figures.summary(live_pool, group_by, period)  # type: ignore[arg-type]
            assert await figures.summary(replay_pool, group_by, period) == live_rows  # type: ignore[arg-type]
    finally:
        await live_pool.close()
        await replay_pool.close()


async def test_figures_hold_no_personal_data(cluster: Cluster) -> None:
    """Not a name, an ID number, a phone, an e-mail or a hashed ID, though the texts stats reads hold them all (each
    petitioner wrote theirs into the content, and every matter names one more person): the facts have no column
    for them, no value of any column is one of them, and no hot term of any window, category or city is."""
    pool: asyncpg.Pool = await create_pool(cluster.stats_settings.database_url, "stats", min_size=1, max_size=1)
    try:
        rows = await pool.fetch("SELECT * FROM facts")
    finally:
        await pool.close()
    assert rows, "the module's first test registered matters"
    people = {
        value
        for answer in cluster.submitted
        for person in [answer["body"]["petitioner"], *answer["body"].get("representatives", [])]
        for value in person.values()
    } | {MENTIONED}
    texts = " ".join(a["body"]["content"] for a in cluster.submitted)
    assert all(name in texts for name in NAMES) and MENTIONED in texts, "the texts stats read held the people"
    values = {str(v) for r in rows for v in r.values()} | {t for r in rows for t in r["terms"]}
    assert not {v for v in people for t in values if v in t}, "a person's value in the facts or their terms"
    assert not {"petitioner", "name", "id_number", "phone", "petitioner_hash"} & set(rows[0].keys())
    answers = []
    for window in ("PT24H", "P7D"):
        for scope in ({}, *({"category": c} for c in ("labor", "housing")), {"region": "5101"}):
            found = await cluster.stats.get(
                "/v1/stats/hot-terms", params={"window": window, **scope}, headers=_bearer(OPERATOR)
            )
            assert found.status_code == 200, found.text
            answers.append(found.text)
    assert any(json.loads(a)["terms"] for a in answers), "the hot terms had something to show"
    shown = " ".join(answers)
    assert not [v for v in people if v in shown], "a person's value among the hot terms"


def test_the_figures_definitions_are_in_the_openapi_description() -> None:
    settings = StatsSettings(environment="test", _env_file=None)  # type: ignore[call-arg]
    document = create_stats(settings).api.openapi()
    description = document["paths"]["/v1/stats/summary"]["get"]["description"]
    for figure in ("on_time_rate", "median_days_to_conclude", "satisfaction", "overdue"):
        assert figure in description


async def test_zz_deadline_events_no_figure_uses_leave_no_inbox_record(cluster: Cluster, bootstrap: str) -> None:
    """Of the deadline events only an obligation's overdue and met are in a figure: the others (set, due-soon,
    closed, a window met) are skipped before any database work, with no inbox record, while the met event after
    them on the same partition is folded once, its inbox record kept (met adds to a count: a redelivery must not
    count it again), and so is the overdue one after that. Runs last: its matter has a fact row of its own."""
    matter, at = uuid.uuid4(), datetime.now(UTC)

    def event(deadline: DeadlineType, state: DeadlineState, **fields: Any) -> DeadlineEvent:
        return factories.deadline_event(state, deadline, matter_id=matter, at=at, **fields)

    ignored = [
        event(DeadlineType.ROUTING, DeadlineState.SET),
        event(DeadlineType.ACCEPTANCE, DeadlineState.DUE_SOON),
        event(DeadlineType.OBJECTION, DeadlineState.MET, window=True),
        event(DeadlineType.OBJECTION, DeadlineState.CLOSED, window=True),
    ]
    met = event(DeadlineType.ACCEPTANCE, DeadlineState.MET, on_time=True)
    last = event(DeadlineType.HANDLING, DeadlineState.OVERDUE)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for e in [*ignored, met, met, last]:  # the met one twice (a redelivery): counted once
            await producer.send_and_wait(DEADLINES_EVENTS.name, e.model_dump_json().encode(), key=str(matter).encode())
    finally:
        await producer.stop()
    pool = cluster.services["stats"].pool
    ids = [e.event_id for e in [*ignored, met, last]]

    async def kept() -> set[uuid.UUID]:
        rows = await pool.fetch("SELECT event_id FROM inbox WHERE event_id = ANY($1::uuid[])", ids)
        return {r["event_id"] for r in rows}

    async def folded() -> bool:
        return last.event_id in await kept()  # the partition's last: everything before it was taken

    await eventually(folded)
    assert await kept() == {met.event_id, last.event_id}, "no inbox record for an event no figure uses"
    fact = await pool.fetchrow("SELECT met, late, overdue FROM facts WHERE matter_id = $1", matter)
    assert dict(fact) == {"met": 1, "late": False, "overdue": True}
