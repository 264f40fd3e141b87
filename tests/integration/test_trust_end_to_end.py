"""The whole cluster as it is deployed, on the tests' SCRAM listener: every service connects as its own principal
(service-<service>) under the ACLs the topic registry generates, so a permission the registry forgot stops the flow
here; a city system works its inbox as its own principal (unit-city-5101); a channel system writes its topic as
channel-letter. Then every topic is read from its beginning, and no petitioner's, representative's or accuser's
name, ID number, phone, address or e-mail is found in clear outside the handling unit's own inbox (and the channel
topic its channel system wrote it on), nor any tracking code anywhere."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from tests import factories
from tests.integration.conftest import Secured, eventually
from tests.integration.kafka_tools import Tail, consumed_by, read_whole_topic, start_group_at_end
from tests.integration.pipeline import MIGRATIONS
from tests.integration.processes import free_port, private_database, start_standin, terminate
from tests.personal_data import People
from tests.reference.city import ReferenceCity
from xinfang_intake.app import create_asgi
from xinfang_intake.settings import IntakeSettings
from xinfang_notify.app import create_service as create_notify
from xinfang_notify.settings import NotifySettings
from xinfang_routing.app import create_service as create_routing
from xinfang_routing.settings import RoutingSettings
from xinfang_shared.contracts.events import UnitFeedback
from xinfang_shared.contracts.reference import FeedbackAction
from xinfang_shared.contracts.topics import (
    MATTERS_STATUS,
    SERVICES,
    channel_rejected_topic,
    channel_topic,
    topics_to_create,
    unit_feedback_rejected_topic,
    unit_feedback_topic,
    unit_inbox_topic,
)
from xinfang_shared.db import migrate_dsn
from xinfang_shared.service import Service
from xinfang_stats.app import create_service as create_stats
from xinfang_stats.settings import StatsSettings
from xinfang_supervision.app import create_service as create_supervision
from xinfang_supervision.settings import SupervisionSettings

RUN = uuid.uuid4().hex[:8]
OPERATOR, CHANNEL_KEY = f"e2e-operator-{RUN}", f"e2e-channel-{RUN}"
CITY = "city-5101"


@dataclass
class Cluster:
    services: dict[str, Service]
    intake: httpx.AsyncClient
    secured: Secured
    bootstrap: str
    tail: Tail
    people: People

    async def submit(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("petitioner", self.people.petitioner())
        body = factories.submission(random.Random(), **fields)
        self.people.record_submission(body)
        response = await self.intake.post(
            "/v1/submissions", json=body, headers={"Authorization": f"Bearer {CHANNEL_KEY}"}
        )
        assert response.status_code == 202, response.text
        return dict(response.json()) | {"body": body}

    def statuses(self, matter_id: str) -> list[str]:
        key = matter_id.encode()
        return [orjson.loads(r.value)["status"] for r in self.tail.on(MATTERS_STATUS.name) if r.key == key]


def _settings(service: str, database: str, secured: Secured, **more: Any) -> dict[str, Any]:
    """Each service as its own principal on the SCRAM listener, in a consumer group its ACLs allow."""
    return {
        "database_url": database,
        "kafka_bootstrap_servers": secured.bootstrap,
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_username": f"service-{service}",
        "kafka_sasl_password": SecretStr(secured.passwords[f"service-{service}"]),
        "kafka_group_id": f"xinfang-{service}-e2e-{RUN}",
        "operator_api_key": SecretStr(OPERATOR),
        "outbox_poll_interval_s": 0.2,
        "_env_file": None,
        **more,
    }


@pytest.fixture(scope="module")
async def cluster(
    stack: dict[str, str], bootstrap: str, secured: Secured, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    home = tmp_path_factory.mktemp("trust")
    mail = await start_standin("mail_sink.py", (mail_port := free_port()), home / "mail", home / "mail.log")
    # Its delivery receipts go nowhere (notify here serves no HTTP): they are not what this module tests.
    nowhere = f"http://127.0.0.1:{free_port()}/v1/sms/receipts"
    sms = await start_standin(
        "sms_gateway.py", (sms_port := free_port()), home / "sms", home / "sms.log", "--receipts-url", nowhere
    )
    async with private_database(stack["DATABASE_URL"]) as database:
        for service in SERVICES:
            await migrate_dsn(database, service, MIGRATIONS[service])
            await start_group_at_end(bootstrap, f"xinfang-{service}-e2e-{RUN}", consumed_by(service))
        services: dict[str, Service] = {
            "intake": create_asgi(
                IntakeSettings(**_settings("intake", database, secured, channel_api_key=SecretStr(CHANNEL_KEY))),
                fast_path=False,
            )[0],
            "routing": create_routing(RoutingSettings(**_settings("routing", database, secured))),
            "supervision": create_supervision(SupervisionSettings(**_settings("supervision", database, secured))),
            "notify": create_notify(
                NotifySettings(
                    **_settings(
                        "notify",
                        database,
                        secured,
                        smtp_url=f"smtp://127.0.0.1:{mail_port}",
                        sms_gateway_url=f"http://127.0.0.1:{sms_port}",
                        quiet_hours_start="00:00",
                        quiet_hours_end="00:00",
                        send_poll_s=0.2,
                    )
                )
            ),
            "stats": create_stats(StatsSettings(**_settings("stats", database, secured))),
        }
        city_group = f"{CITY}-e2e-{RUN}"
        await start_group_at_end(bootstrap, city_group, [unit_inbox_topic(CITY)])
        city = ReferenceCity(CITY, secured.principal(f"unit-{CITY}"), group=city_group)
        tail = Tail(
            bootstrap, [MATTERS_STATUS.name, unit_feedback_rejected_topic(CITY), channel_rejected_topic("letter")]
        )
        await tail.start()
        for service in services.values():
            await service.start()
        stop = asyncio.Event()
        working = asyncio.create_task(city.run(stop))
        intake = httpx.AsyncClient(transport=httpx.ASGITransport(app=services["intake"].api), base_url="http://intake")
        try:
            yield Cluster(services, intake, secured, bootstrap, tail, People())
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(working, 30)
            await intake.aclose()
            for service in reversed(services.values()):
                await service.stop()
            await tail.stop()
            terminate(mail)
            terminate(sms)


async def test_a_matter_goes_through_every_service_each_as_its_own_principal(cluster: Cluster) -> None:
    """Registered, routed, transferred, received, accepted and concluded by the city as unit-city-5101, with the
    deadlines, the notices and the figures: every service read and wrote what the flow needs under its ACLs."""
    letter = await cluster.submit(location={"region_code": "510104"}, category="labor")
    matter = letter["matter_id"]
    await eventually(lambda: "concluded" in cluster.statuses(matter), timeout=90)
    assert {"transferred", "accepted", "concluded"} <= set(cluster.statuses(matter))

    async def noticed() -> bool:
        rows = await cluster.services["notify"].pool.fetch(
            "SELECT notice FROM notifications WHERE matter_id = $1 AND status IN ('sent', 'delivered')",
            uuid.UUID(matter),
        )
        return {"receipt", "transferred", "accepted", "opinion"} <= {r["notice"] for r in rows}

    await eventually(noticed, timeout=60)

    async def counted() -> bool:
        row = await cluster.services["stats"].pool.fetchrow(
            "SELECT concluded_at FROM facts WHERE matter_id = $1", uuid.UUID(matter)
        )
        return row is not None and row["concluded_at"] is not None

    await eventually(counted, timeout=60)

    async def met() -> bool:
        rows = await cluster.services["supervision"].pool.fetch(
            "SELECT deadline, state FROM deadlines WHERE matter_id = $1", uuid.UUID(matter)
        )
        return {("routing", "met"), ("acceptance", "met"), ("handling", "met")} <= {
            (r["deadline"], r["state"]) for r in rows
        }

    await eventually(met, timeout=60)


async def test_a_unit_acting_in_another_units_name_is_refused_and_told_on_its_own_topic(cluster: Cluster) -> None:
    """The unit is its topic's: city-5103 cannot write city-5101's topic (the broker refuses), and on its own topic
    a body naming city-5101 is refused by routing, to city-5103's own refusals, and changes nothing."""
    letter = await cluster.submit(location={"region_code": "510104"}, category="housing")
    matter = letter["matter_id"]
    await eventually(lambda: "transferred" in cluster.statuses(matter), timeout=60)
    intruder = cluster.secured.principal("unit-city-5103")
    # Tailed from before the body is sent: the refusal may be published before a tail started after it.
    tail = Tail(cluster.bootstrap, [unit_feedback_rejected_topic("city-5103")])
    await tail.start()
    try:
        producer = AIOKafkaProducer(**intruder.aiokafka(), acks="all")
        await producer.start()
        try:
            as_5101 = UnitFeedback(
                matter_id=uuid.UUID(matter),
                unit=CITY,
                action=FeedbackAction.NOT_ACCEPTED,
                at=datetime.now(UTC),
                reason="x",
            )
            await producer.send_and_wait(
                unit_feedback_topic("city-5103"), as_5101.model_dump_json().encode(), key=matter.encode()
            )
        finally:
            await producer.stop()
        refused = await tail.wait(
            unit_feedback_rejected_topic("city-5103"), lambda r: r.key == matter.encode(), timeout=30
        )
    finally:
        await tail.stop()
    assert orjson.loads(refused[0].value)["errors"][0]["field"] == "unit"
    assert "not-accepted" not in cluster.statuses(matter)


async def test_no_personal_data_nor_tracking_code_on_any_topic_outside_the_unit_s_own_inbox(cluster: Cluster) -> None:
    """Runs last: a letter, a group visit with representatives, an accusation, a repeat, one on the channel topic and
    one refused there, all through every service; then every topic of the registry and every dead-letter topic,
    read whole."""
    rng = random.Random()
    answers = [
        await cluster.submit(location={"region_code": "510104"}, category="labor"),
        await cluster.submit(
            channel="visit",
            visit={"place": "chengdu"},
            headcount=6,
            representatives=[cluster.people.person(), cluster.people.person()],
            location={"region_code": "510104"},
        ),
    ]
    accusation = await cluster.submit(kind="accusation", location={"region_code": "510104"}, category="discipline")
    repeat = await cluster.submit(**{k: v for k, v in answers[0]["body"].items() if k not in ("external_id",)})
    assert repeat["status"] == "duplicate"
    # On the channel topic, as the letter channel's system: one good, one refused (its phone is no phone).
    letters = cluster.secured.principal("channel-letter")
    good = factories.submission(rng, petitioner=cluster.people.petitioner(), location={"region_code": "510104"})
    bad_phone = f"call-me-{uuid.uuid4().hex[:8]}"
    bad = factories.submission(rng, petitioner=cluster.people.petitioner() | {"phone": bad_phone})
    for body in (good, bad):
        cluster.people.record_submission(body)
    producer = AIOKafkaProducer(**letters.aiokafka(), acks="all")
    await producer.start()
    try:
        for body in (good, bad):
            await producer.send_and_wait(channel_topic("letter"), orjson.dumps(body), key=body["external_id"].encode())
    finally:
        await producer.stop()
    await cluster.tail.wait(
        channel_rejected_topic("letter"), lambda r: r.key == bad["external_id"].encode(), timeout=60
    )
    codes = [a["tracking_code"] for a in (*answers, accusation, repeat)]
    ours = [uuid.UUID(a["matter_id"]) for a in (*answers, accusation, repeat)]

    async def everything_done() -> bool:
        notify = await cluster.services["notify"].pool.fetchval(
            "SELECT count(*) FROM notifications WHERE matter_id = ANY($1) AND notice IN ('receipt', 'repeat')"
            " AND status IN ('sent', 'delivered')",
            ours,
        )
        stats = await cluster.services["stats"].pool.fetchval(
            "SELECT count(*) FROM facts WHERE matter_id = ANY($1)", ours
        )
        good_seen = await cluster.services["intake"].pool.fetchval(
            "SELECT count(*) FROM matters WHERE external_id = $1", good["external_id"]
        )
        return bool(notify == len(ours) and stats == len(ours) and good_seen == 1)

    await eventually(everything_done, timeout=120)
    for matter in (answers[0], answers[1]):
        await eventually(lambda m=matter: "concluded" in cluster.statuses(m["matter_id"]), timeout=90)
    for service in cluster.services.values():
        await eventually(lambda s=service: _outbox_empty(s), timeout=60)

    inbox = unit_inbox_topic(CITY)
    handled_there = [answers[0]["body"], answers[1]["body"], good]  # the city handles these: its inbox may name them
    allowed = {
        inbox: {v for body in handled_there for v in _values(body["petitioner"])},
        channel_topic("letter"): {v for body in (good, bad) for p in _people(body) for v in _values(p)},
    }
    everyone = {
        v
        for body in (*[a["body"] for a in (*answers, accusation)], good, bad)
        for p in _people(body)
        for v in _values(p)
    }
    leaks: list[str] = []
    for topic in sorted(topics_to_create()):
        text = b"\n".join(
            (r.value or b"") + b" " + (r.key or b"") for r in await read_whole_topic(cluster.bootstrap, topic)
        )
        decoded = text.decode("utf-8", "replace")
        for value in everyone - allowed.get(topic, set()):
            if value in decoded:
                leaks.append(f"{topic}: {cluster.people.values.get(value, 'personal')}")
        for code in codes:
            if code in decoded:
                leaks.append(f"{topic}: a tracking code")
    assert not leaks, f"found in clear: {sorted(set(leaks))}"
    # And the accuser is unknown to the unit that handles the accusation (statutory), not just absent elsewhere.
    discipline = b"".join(
        r.value or b"" for r in await read_whole_topic(cluster.bootstrap, unit_inbox_topic("dept-discipline"))
    )
    assert not [v for v in _values(accusation["body"]["petitioner"]) if v.encode() in discipline]


def _people(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [body["petitioner"], *body.get("representatives", [])]


def _values(person: dict[str, Any]) -> set[str]:
    return {
        str(v)
        for k, v in person.items()
        if k in ("name", "id_number", "phone", "address", "email") and v and len(str(v)) >= 4
    }


async def _outbox_empty(service: Service) -> bool:
    return not await service.pool.fetchval("SELECT EXISTS (SELECT 1 FROM outbox)")
