"""Surges on generated days, through the real broker and database: 29 days of registrations for two cities
published on matters.registered.v2 (as intake would have registered them then); one city has a surge of a few
hours on the last day. Stats raises one alert, for that city only, closes it when the rate is back, lists it
and publishes it; notify tells the guidance office by e-mail (through the real SMTP sink).

The counts are deterministic (no random draws), so whatever day the test runs on, the calm city's counts are
calm by construction and the surge is far outside any baseline (its first quarter hour already): this tests
the plumbing (event time, watermarks, the watch, the outbox, notify), not the statistics
(tests/unit/test_surge.py and surge_eval do)."""

from __future__ import annotations

import email
import email.policy
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import Tail, consumed_by, start_group_at_end
from tests.integration.processes import free_port, private_database, start_standin, terminate
from xinfang_notify.app import MIGRATIONS as NOTIFY_MIGRATIONS
from xinfang_notify.app import create_service as create_notify
from xinfang_notify.settings import NotifySettings
from xinfang_shared.contracts.events import MatterRegisteredV2
from xinfang_shared.contracts.reference import Addressee, Channel, Kind, Level
from xinfang_shared.contracts.topics import MATTERS_REGISTERED_V2, STATS_ALERTS
from xinfang_shared.db import migrate_dsn
from xinfang_shared.service import Service
from xinfang_shared.tracking import new_tracking_code
from xinfang_stats.app import MIGRATIONS as STATS_MIGRATIONS
from xinfang_stats.app import create_service as create_stats
from xinfang_stats.rebuild import rebuild
from xinfang_stats.settings import StatsSettings
from xinfang_stats.surge import beijing_hour

RUN = uuid.uuid4().hex[:8]
OPERATOR = f"surge-operator-{RUN}"
SURGING, CALM = "513401", "510104"  # 凉山 (Liangshan), 成都 (Chengdu)
DAYS = 29
SURGE_HOURS = (10, 9, 8)  # hours before the last generated hour ends: three hours of surge
SURGE_EXTRA = 25  # matters more in each of them
GUIDANCE = "guidance@xfj.sc.gov.example"


@dataclass
class Surge:
    stats: httpx.AsyncClient
    services: dict[str, Service]
    alerts: Tail
    mail_folder: Path
    published: int
    end: datetime  # the end of the last generated hour
    settings: StatsSettings
    started: datetime  # before the first generated registration was published


def _per_hour(hour: datetime) -> int:
    """The ordinary count of one city in one Beijing hour: more in office hours, a little more on some days."""
    local = beijing_hour(hour)
    base = 4 if 8 <= local.hour < 18 else 1
    return base + local.toordinal() % 3 - 1 + (1 if base == 1 else 0)  # 0..5, never negative


def _registration(region: str, at: datetime) -> MatterRegisteredV2:
    body = {
        "external_id": f"surge-{uuid.uuid4()}",
        "channel": Channel.ONLINE.value,
        "submitted_at": at.isoformat(),
        "kind": Kind.COMPLAINT.value,
        "addressee": Addressee.PROVINCIAL_GOVERNMENT.value,
        "petitioner": {"name": "测试人", "id_number": factories.id_number(), "phone": factories.mobile()},
        "location": {"region_code": region},
        "level": Level.LOCAL.value,
        "title": "关于小区物业费的反映",
        "content": "物业公司擅自上涨物业费，请求核查。",
    }
    event: MatterRegisteredV2 = factories.registration(body, tracking_code=new_tracking_code(), registered_at=at)
    return event


def _generated(end: datetime) -> list[MatterRegisteredV2]:
    """DAYS days of registrations up to `end` (a Beijing hour), in time order, for both cities."""
    matters = []
    hour = end - timedelta(days=DAYS)
    surge = {end - timedelta(hours=h) for h in SURGE_HOURS}
    while hour < end:
        for region in (SURGING, CALM):
            count = _per_hour(hour) + (SURGE_EXTRA if region == SURGING and hour in surge else 0)
            for i in range(count):
                matters.append(_registration(region, hour + timedelta(seconds=(3600 * i) // max(count, 1) + 7)))
        hour += timedelta(hours=1)
    return sorted(matters, key=lambda m: m.registered_at)


@pytest.fixture(scope="module")
async def surge(
    stack: dict[str, str], bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Surge]:
    home = tmp_path_factory.mktemp("surge")
    mail_port = free_port()
    mail = await start_standin("mail_sink.py", mail_port, home / "mail", home / "mail.log")
    async with private_database(stack["DATABASE_URL"]) as database:
        common: dict[str, Any] = {
            "database_url": database,
            "kafka_bootstrap_servers": bootstrap,
            "operator_api_key": SecretStr(OPERATOR),
            "outbox_poll_interval_s": 0.2,
            "_env_file": None,
        }
        stats_group, notify_group = f"test-surge-stats-{RUN}", f"test-surge-notify-{RUN}"
        await start_group_at_end(bootstrap, stats_group, consumed_by("stats"))
        await start_group_at_end(bootstrap, notify_group, [STATS_ALERTS.name])  # the alerts from now on
        await migrate_dsn(database, "stats", STATS_MIGRATIONS)
        await migrate_dsn(database, "notify", NOTIFY_MIGRATIONS)
        stats_settings = StatsSettings(kafka_group_id=stats_group, surge_check_s=0.5, **common)
        stats = create_stats(stats_settings)
        alerts = Tail(bootstrap, [STATS_ALERTS.name])
        await alerts.start()
        await stats.start()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=stats.api), base_url="http://stats", timeout=30)
        started = datetime.now(UTC) - timedelta(seconds=1)
        end = beijing_hour(datetime.now(UTC))
        generated = _generated(end)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
        await producer.start()
        try:
            for matter in generated:
                await producer.send(
                    MATTERS_REGISTERED_V2.name, matter.model_dump_json().encode(), key=str(matter.matter_id).encode()
                )
            await producer.flush()
        finally:
            await producer.stop()
        # Notify starts after the generated registrations (it would acknowledge each to its petitioner): at the
        # end of everything it reads but the alerts.
        await start_group_at_end(bootstrap, notify_group, [t for t in consumed_by("notify") if t != STATS_ALERTS.name])
        notify = create_notify(
            NotifySettings(
                kafka_group_id=notify_group,
                smtp_url=f"smtp://127.0.0.1:{mail_port}",
                send_poll_s=0.2,
                **common,
            )
        )
        await notify.start()
        try:
            services: dict[str, Service] = {"notify": notify, "stats": stats}
            yield Surge(client, services, alerts, home / "mail", len(generated), end, stats_settings, started)
        finally:
            await client.aclose()
            await notify.stop()
            await stats.stop()
            await alerts.stop()
            terminate(mail)


async def _alerts(surge: Surge, **params: str) -> list[dict[str, Any]]:
    response = await surge.stats.get("/v1/stats/alerts", params=params, headers={"Authorization": f"Bearer {OPERATOR}"})
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_a_surge_in_one_city_raises_one_alert_that_closes_and_reaches_guidance(surge: Surge) -> None:
    published = [orjson.loads(r.value) for r in await surge.alerts.wait(STATS_ALERTS.name, lambda r: True, 2, 120)]
    opened, closed = published[0], published[1]
    assert (opened["state"], closed["state"]) == ("open", "closed")
    assert opened["region_code"] == SURGING[:4] and opened["category"] is None
    assert opened["alert_id"] == closed["alert_id"]
    # raised within the surge's first hour, by its trailing 15 or 60 minutes (which first depends on the hour of
    # the day the test runs at), far above the window's share of an ordinary hour
    assert opened["window"] in ("PT15M", "PT1H") and opened["baseline"] < 6
    assert opened["observed"] >= max(5, 2 * opened["baseline"])
    first_surge_hour = surge.end - timedelta(hours=SURGE_HOURS[0])
    assert first_surge_hour < datetime.fromisoformat(opened["at"]) < first_surge_hour + timedelta(hours=1)
    assert "baseline days" in opened["method"]  # the statistical test, not the cold-start floor
    assert datetime.fromisoformat(opened["at"]) < datetime.fromisoformat(closed["at"])
    listed = await _alerts(surge)
    assert [(a["alert_id"], a["state"], a["region_code"]) for a in listed] == [
        (opened["alert_id"], "closed", SURGING[:4])
    ]

    def mailed() -> list[email.message.EmailMessage]:
        found = []
        for path in sorted(surge.mail_folder.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if message["To"] == GUIDANCE:
                found.append(message)
        return found

    await eventually(lambda: bool(mailed()), timeout=60)
    body = mailed()[0].get_body(preferencelist=("plain",))
    assert body is not None and "凉山" in str(body.get_content())


async def test_the_calm_city_raises_none_and_every_minute_was_checked(surge: Surge) -> None:
    await surge.alerts.wait(STATS_ALERTS.name, lambda r: True, 2, 120)
    published = [orjson.loads(r.value) for r in surge.alerts.on(STATS_ALERTS.name)]
    assert all(a["region_code"] != CALM[:4] for a in published)
    assert len(published) == 2, published
    # Both cities were checked, every minute, up to the end of the generated data (less the straggler wait):
    # their states say so.
    stats = surge.services["stats"]
    rows = await stats.pool.fetch("SELECT series, state FROM surge_series ORDER BY series")
    states = {r["series"]: orjson.loads(r["state"]) for r in rows}
    assert set(states) == {f"region:{CALM[:4]}", f"region:{SURGING[:4]}"}
    for state in states.values():
        assert datetime.fromisoformat(state["last_minute"]) >= surge.end - timedelta(minutes=1)
    assert await stats.pool.fetchval("SELECT sum(matters) FROM hourly") == surge.published


async def test_a_replay_raises_the_live_alerts(surge: Surge) -> None:
    """`xinfang-stats rebuild` folds the same registrations and checks every minute they cover in one catch-up:
    the same alerts, same ids, same minutes, as live stats raised checking them round after round."""
    await surge.alerts.wait(STATS_ALERTS.name, lambda r: True, 2, 120)
    rebuilt = await rebuild(surge.settings, "stats_rebuilt", since=surge.started, out=io.StringIO())
    assert rebuilt.surges is not None and rebuilt.surges.opened >= 1
    # Only what the generated hours decide: a test running beside this one may register matters from now on.
    query = "SELECT * FROM {}.alerts WHERE opened_at <= $1 ORDER BY alert_id"
    stats = surge.services["stats"]
    live = [dict(r) for r in await stats.pool.fetch(query.format("stats"), surge.end)]
    replayed = [dict(r) for r in await stats.pool.fetch(query.format("stats_rebuilt"), surge.end)]
    assert live and replayed == live
