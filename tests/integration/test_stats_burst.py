"""Early warning that is early, on the real broker and a fresh database: stats with its default settings (the
surge watch every 10 s, stragglers waited for 20 s) and no history at all (cold start: the floor of 50 matters
in the trailing hour). A trickle from Chengdu, then 120 matters from Liangshan within one minute: stats.alerts.v1
carries the Liangshan alert within 2 minutes of the 50th, and nothing for Chengdu.

Before sliding windows an hour was judged only once it had ended (plus 5 minutes), so this burst raised nothing
for up to an hour: the test fails on that watch."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from tests.integration.kafka_tools import Tail, consumed_by, start_group_at_end
from tests.integration.processes import private_database
from tests.integration.test_stats_surge import _registration
from xinfang_shared.contracts.topics import MATTERS_REGISTERED_V2, STATS_ALERTS
from xinfang_shared.db import migrate_dsn
from xinfang_stats.app import MIGRATIONS
from xinfang_stats.app import create_service as create_stats
from xinfang_stats.settings import StatsSettings

RUN = uuid.uuid4().hex[:8]
BURST_REGION, TRICKLE_REGION = "513401", "510104"  # 凉山 (Liangshan), 成都 (Chengdu)
BURST, FLOOR = 120, 50
LIMIT_S = 120.0


async def test_a_burst_of_120_from_one_city_alerts_within_two_minutes_and_a_trickle_elsewhere_none(
    stack: dict[str, str], bootstrap: str
) -> None:
    async with private_database(stack["DATABASE_URL"]) as database:
        group = f"test-burst-stats-{RUN}"
        await start_group_at_end(bootstrap, group, consumed_by("stats"))
        await migrate_dsn(database, "stats", MIGRATIONS)
        settings = StatsSettings(
            database_url=database,
            kafka_bootstrap_servers=bootstrap,
            kafka_group_id=group,
            operator_api_key=SecretStr(f"burst-{RUN}"),
            outbox_poll_interval_s=0.2,
            _env_file=None,
        )
        assert (settings.surge_check_s, settings.surge_lateness_s) == (10.0, 20.0)  # the defaults are tested
        stats = create_stats(settings)
        alerts = Tail(bootstrap, [STATS_ALERTS.name])
        await alerts.start()
        await stats.start()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            topic = MATTERS_REGISTERED_V2.name
            partitions = sorted(await producer.partitions_for(topic))

            async def send(region: str, at: datetime, partition: int | None = None) -> None:
                matter = _registration(region, at)
                await producer.send_and_wait(
                    topic, matter.model_dump_json().encode(), key=str(matter.matter_id).encode(), partition=partition
                )

            # The trickle: one matter on each partition (so the watch knows every partition's event time), a
            # minute apart in the last quarter of an hour; fewer than the floor, as a calm city's would be.
            now = datetime.now(UTC)
            for i, partition in enumerate(partitions):
                await send(TRICKLE_REGION, now - timedelta(minutes=len(partitions) - i), partition)
            # The burst: 120 registrations within one minute, as they come.
            fiftieth = 0.0
            for i in range(BURST):
                await send(BURST_REGION, datetime.now(UTC))
                if i + 1 == FLOOR:
                    fiftieth, fiftieth_at = time.monotonic(), datetime.now(UTC)
                await asyncio.sleep(0.4)
            for _ in range(3):  # a little more trickle while the burst is judged
                await send(TRICKLE_REGION, datetime.now(UTC))
            opened = await alerts.wait(
                STATS_ALERTS.name,
                lambda r: orjson.loads(r.value)["region_code"] == BURST_REGION[:4],
                timeout=LIMIT_S - (time.monotonic() - fiftieth),
            )
            took = time.monotonic() - fiftieth
            alert = orjson.loads(opened[0].value)
            assert took <= LIMIT_S, took
            assert alert["state"] == "open" and alert["category"] is None
            assert alert["observed"] >= FLOOR and "cold-start floor" in alert["method"]
            assert alert["window"] == "PT1H"
            # `at` is the window's end: the first minute boundary after the 50th matter, or the next
            assert timedelta(0) < datetime.fromisoformat(alert["at"]) - fiftieth_at <= timedelta(minutes=2)
            # Nothing else: the trickle stays calm while the burst is watched for another round and a half.
            await asyncio.sleep(1.5 * settings.surge_check_s)
            published = [orjson.loads(r.value) for r in alerts.on(STATS_ALERTS.name)]
            assert [(a["region_code"], a["state"]) for a in published] == [(BURST_REGION[:4], "open")], published
        finally:
            await producer.stop()
            await stats.stop()
            await alerts.stop()
