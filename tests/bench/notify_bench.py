"""Notify's sending (`make bench` / `python -m tests.bench --only notify`).

Notify (`xinfang-notify`, a process of its own on a fresh database and consumer group) sends N receipts, half
by e-mail to the local stack's kind of SMTP server and half by SMS to the gateway stand-in (each its own
process too, deploy/local/). The receipts are planned first (their registered events consumed while the
senders are held back by quiet hours), then timed from the end of quiet hours to the last one the SMTP server
and the gateway have kept: the rate of sending, not of consuming.

The baseline, in the same run and against the same SMTP server: a plain aiosmtplib send loop of as many
e-mails (the same size), with as many sending at once as notify has senders. The ratio says what notify's
claiming, composing, sealing and bookkeeping per notice cost against the bare protocol.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import random
import subprocess
import time
import uuid
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
from aiokafka import AIOKafkaProducer

from tests import factories
from tests.integration.processes import free_port
from xinfang_shared.contracts.topics import BY_NAME, MATTERS_REGISTERED_V2
from xinfang_shared.tracking import new_tracking_code
from xinfang_shared.workdays import CHINA

from .common import ROOT, Figure, topic
from .service import ServiceProcess, start_group_at_end

SENDERS = 4


def _registered(i: int, run: str) -> bytes:
    petitioner = {"name": "测试人", "id_number": factories.id_number(), "phone": factories.mobile()}
    if i % 2 == 0:
        petitioner["email"] = f"p{i}-{run}@example.org"
    body = factories.submission(random.Random(i), petitioner=petitioner)
    event = factories.registration(body, tracking_code=new_tracking_code())
    return bytes(event.model_dump_json().encode())


def standin(script: str, port: int, folder: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                str(ROOT / ".venv/bin/python"),
                str(ROOT / "deploy/local" / script),
                *("--port", str(port), "--dir", str(folder)),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ | {"SMS_ACCESS_KEY": "bench", "SMS_RECEIPT_TOKEN": "bench"},
        )


async def listening(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        return
    raise TimeoutError(f"nothing listens on {port}")


def _kept(folder: Path, suffix: str) -> int:
    return sum(1 for _ in folder.glob(f"*{suffix}"))


async def _raw_smtp(port: int, n: int, size: int) -> float:
    """e-mails/s of a bare aiosmtplib loop, SENDERS at once, to the same server."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    body = "测" * (size // 3)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            msg = EmailMessage(policy=email.policy.SMTP)
            msg["From"], msg["To"], msg["Subject"] = "bench@example.org", f"raw{i}@example.org", "您的信访事项已登记"
            msg.set_content(body, charset="utf-8")
            await aiosmtplib.send(msg, hostname="127.0.0.1", port=port, start_tls=False, timeout=30)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(SENDERS)))
    return n / (time.perf_counter() - started)


async def measure(db_dsn: str, bootstrap: str, workdir: Path, n: int) -> tuple[list[Figure], list[str]]:
    run = uuid.uuid4().hex[:8]
    home = workdir / f"notify-{run}"
    mail_dir, sms_dir, raw_dir = home / "mail", home / "sms", home / "raw"
    mail_port, sms_port, raw_port, notify_port = (free_port() for _ in range(4))
    home.mkdir(parents=True, exist_ok=True)
    quiet_for = timedelta(seconds=max(30, n // 40))  # long enough for the e-mail to go first
    # A whole second: notify is told HH:MM:SS and starts at that second, so the SMS are timed from then, not
    # from up to a second later (when 1,000 SMS take about a second, that lost second was most of it).
    quiet_until = (datetime.now(CHINA) + quiet_for).replace(microsecond=0)
    stand_ins = [
        standin("mail_sink.py", mail_port, mail_dir, home / "mail.log"),
        standin("mail_sink.py", raw_port, raw_dir, home / "raw.log"),
        standin(
            "sms_gateway.py",
            sms_port,
            sms_dir,
            home / "sms.log",
            "--receipts-url",
            f"http://127.0.0.1:{notify_port}/v1/sms/receipts",
        ),
    ]
    group = f"bench-notify-{run}"
    notify = ServiceProcess(
        name="notify",
        binary=ROOT / ".venv/bin/xinfang-notify",
        dsn=db_dsn,
        port=notify_port,
        group_id=group,
        bootstrap=bootstrap,
        log_path=home / "notify.log",
        env={
            "SMTP_URL": f"smtp://127.0.0.1:{mail_port}",
            "SMS_GATEWAY_URL": f"http://127.0.0.1:{sms_port}",
            "SMS_ACCESS_KEY": "bench",
            "SMS_RECEIPT_TOKEN": "bench",
            # Every notice here is a petitioner's: by e-mail or SMS. Quiet hours hold the SMS while the e-mail
            # goes, so the e-mail is sent first, and timed; then the SMS.
            "QUIET_HOURS_START": (datetime.now(CHINA) - timedelta(minutes=1)).strftime("%H:%M:%S"),
            "QUIET_HOURS_END": quiet_until.strftime("%H:%M:%S"),
            "SENDERS": str(SENDERS),
            "EMAIL_PER_S": "100000",
            "SMS_PER_S": "100000",
            "SEND_POLL_S": "0.2",
        },
    )
    notes: list[str] = []
    try:
        for port in (mail_port, raw_port, sms_port):
            await listening(port)
        notify.migrate()
        await start_group_at_end(bootstrap, group, [topic(t.name) for t in BY_NAME.values() if "notify" in t.consumers])
        notify.start()
        await notify.wait_healthy()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            for i in range(n):
                await producer.send(topic(MATTERS_REGISTERED_V2.name), _registered(i, run), key=uuid.uuid4().bytes)
            await producer.flush()
        finally:
            await producer.stop()
        emails = n - n // 2
        started = time.perf_counter()
        while _kept(mail_dir, ".eml") < emails:
            notify.check_alive()
            await asyncio.sleep(0.05)
        email_rate = emails / (time.perf_counter() - started)
        if datetime.now(CHINA) >= quiet_until:
            notes.append("notify: the e-mail took longer than quiet hours: some SMS were sent alongside (rate mixed)")
        wait = (quiet_until - datetime.now(CHINA)).total_seconds()
        await asyncio.sleep(max(wait, 0))
        started = time.perf_counter()
        while _kept(sms_dir, ".json") < n // 2:
            notify.check_alive()
            await asyncio.sleep(0.05)
        sms_rate = (n // 2) / (time.perf_counter() - started)
        size = len(next(mail_dir.glob("*.eml")).read_bytes())
        raw_rate = await _raw_smtp(raw_port, emails, size)
        duplicates = _kept(mail_dir, ".eml") - emails
        sms_kept = [json.loads(p.read_text()) for p in sms_dir.glob("*.json")]
        if duplicates or len({k["out_id"] for k in sms_kept}) != len(sms_kept):
            notes.append(f"notify: !!! a notice was sent twice ({duplicates} e-mail)")
    finally:
        notify.stop()
        for proc in stand_ins:
            proc.terminate()
            proc.wait(10)
    return [
        Figure("notify e-mail receipts/s (real SMTP)", email_rate, "notices/s", email_rate / raw_rate),
        Figure("notify SMS receipts/s (gateway)", sms_rate, "notices/s"),
        Figure("raw aiosmtplib loop, same server", raw_rate, "e-mails/s"),
    ], notes
