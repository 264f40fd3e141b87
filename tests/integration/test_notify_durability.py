"""kill -9 of notify mid-stream with 2,000 matters: every receipt is sent, none twice by (matter, notice,
recipient) as counted at the real SMTP server and the real SMS gateway, except the resends of the crash window
(the server or gateway took it, notify died before writing so), which carry the same Message-ID / OutId. The
number of those is printed: it is what a recipient that de-duplicates by key would have thrown away."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import random
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import consumed_by, start_group_at_end
from tests.integration.processes import ServiceProcess, free_port, start_standin, terminate
from xinfang_notify.app import MIGRATIONS
from xinfang_notify.settings import NotifySettings
from xinfang_shared.contracts.events import MatterRegisteredV2
from xinfang_shared.contracts.topics import MATTERS_REGISTERED_V2
from xinfang_shared.db import migrate_dsn
from xinfang_shared.tracking import new_tracking_code

MATTERS = 2_000
RUN = uuid.uuid4().hex[:8]


def _registered(i: int) -> MatterRegisteredV2:
    """As intake publishes it: half the petitioners gave an e-mail address (a receipt by e-mail), half did not
    (by SMS)."""
    petitioner = {"name": "测试人", "id_number": factories.id_number(), "phone": factories.mobile()}
    if i % 2 == 0:
        petitioner["email"] = f"p{i}-{RUN}@example.org"
    body = factories.submission(random.Random(i), petitioner=petitioner)
    event: MatterRegisteredV2 = factories.registration(body, tracking_code=new_tracking_code())
    return event


def _keys(mail: Path, sms: Path) -> tuple[Counter[str], Counter[str]]:
    """How often each Message-ID reached the SMTP server, and each OutId the gateway."""
    ids: Counter[str] = Counter()
    for path in mail.glob("*.eml"):
        ids[str(email.message_from_bytes(path.read_bytes(), policy=email.policy.default)["Message-ID"])] += 1
    out_ids: Counter[str] = Counter(json.loads(p.read_text())["out_id"] for p in sms.glob("*.json"))
    return ids, out_ids


async def test_kill_9_mid_stream_sends_every_receipt_once_but_for_same_key_resends(
    database: str, bootstrap: str, tmp_path: Path
) -> None:
    await migrate_dsn(database, "notify", MIGRATIONS)
    group = f"test-notify-kill9-{RUN}"
    await start_group_at_end(bootstrap, group, consumed_by("notify"))
    key, token = f"sms-{RUN}", f"token-{RUN}"
    mail_dir, sms_dir = tmp_path / "mail", tmp_path / "sms"
    mail_port, sms_port, notify_port = free_port(), free_port(), free_port()
    mail = await start_standin("mail_sink.py", mail_port, mail_dir, tmp_path / "mail.log")
    sms = await start_standin(
        "sms_gateway.py",
        sms_port,
        sms_dir,
        tmp_path / "sms.log",
        "--receipts-url",
        f"http://127.0.0.1:{notify_port}/v1/sms/receipts",
        env={"SMS_ACCESS_KEY": key, "SMS_RECEIPT_TOKEN": token},
    )
    env = os.environ | {
        "DATABASE_URL": database,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": group,
        "HTTP_PORT": str(notify_port),
        "LOG_LEVEL": "WARNING",
        "SMTP_URL": f"smtp://127.0.0.1:{mail_port}",
        "SMS_GATEWAY_URL": f"http://127.0.0.1:{sms_port}",
        "SMS_ACCESS_KEY": key,
        "SMS_RECEIPT_TOKEN": token,
        "QUIET_HOURS_START": "00:00",
        "QUIET_HOURS_END": "00:00",  # none: every SMS goes at once
        "SEND_LEASE_S": "3",  # a claim a dead sender held lapses soon
        "SEND_POLL_S": "0.2",
        "EMAIL_PER_S": "1000",
        "SMS_PER_S": "1000",
    }
    notify = ServiceProcess(env, tmp_path / "notify.log", service="notify")
    await notify.start()
    events = [_registered(i) for i in range(MATTERS)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for event in events:
            await producer.send(
                MATTERS_REGISTERED_V2.name, event.model_dump_json().encode(), key=str(event.matter_id).encode()
            )
        await producer.flush()
    finally:
        await producer.stop()
    try:

        def delivered() -> int:
            ids, out_ids = _keys(mail_dir, sms_dir)
            return len(ids) + len(out_ids)

        await eventually(lambda: delivered() >= 400, timeout=180)
        notify.kill9()
        at_kill = delivered()
        assert at_kill < MATTERS, "the kill came too late to test"
        await notify.start()
        await eventually(lambda: delivered() >= MATTERS, timeout=300)

        conn = await asyncpg.connect(database, server_settings={"search_path": "notify"})
        try:
            ours = [e.matter_id for e in events]
            rows = await conn.fetch(
                "SELECT matter_id, notice, status, key FROM notifications WHERE matter_id = ANY($1)", ours
            )

            async def all_done() -> bool:
                statuses = await conn.fetch(
                    "SELECT status, count(*) FROM notifications WHERE matter_id = ANY($1) GROUP BY status", ours
                )
                return {r["status"] for r in statuses} <= {"sent", "delivered"}

            await eventually(all_done, timeout=120)
        finally:
            await conn.close()
        assert len(rows) == MATTERS and {r["notice"] for r in rows} == {"receipt"}, "one receipt planned per matter"
        ids, out_ids = _keys(mail_dir, sms_dir)
        planned_keys = {str(r["key"]) for r in rows}
        assert {i.strip("<>").split("@")[0] for i in ids} | {str(uuid.UUID(o)) for o in out_ids} == planned_keys
        assert len(ids) == MATTERS // 2 and len(out_ids) == MATTERS // 2, "every receipt reached its server"
        resends = sum(n - 1 for n in ids.values()) + sum(n - 1 for n in out_ids.values())
        print(f"notify kill -9 after {at_kill} of {MATTERS} receipts: {resends} crash-window resend(s), same key")
        # A sender marks what it sent once per claimed batch: at most one batch per sender was in the window.
        settings = NotifySettings(_env_file=None, environment="test")  # type: ignore[call-arg]
        assert resends <= settings.senders * settings.send_batch
    finally:
        notify.stop()
        terminate(mail)
        terminate(sms)
        await asyncio.sleep(0)
