"""The analysis report on the real pipeline: a generated month of matters (every channel, several cities, a
surge of one city, group and massive visits, repeats, late and on-time matters, ratings) and the month before it
go through Kafka into two stats instances; then
  - a report asked for over the API has, in its PDF's text, every headline figure the API's summary gives for the
    same period, the channels' rows, the summary naming the largest change (the surging city), and no personal
    data of anyone; page 1 rendered is not blank and its Chinese is text set in the embedded Noto CJK font;
  - the monthly report (the month the schedule says is due now) is made once by the two instances, published once,
    and e-mailed once to the general office and each leader, the PDF attached (notify fetching it from stats)."""

from __future__ import annotations

import asyncio
import contextlib
import email
import random
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from email import policy
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel, SecretStr

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.kafka_tools import Tail, consumed_by, start_group_at_end
from tests.integration.processes import free_port, private_database, start_standin, terminate
from xinfang_notify.app import MIGRATIONS as NOTIFY_MIGRATIONS
from xinfang_notify.app import create_service as create_notify
from xinfang_notify.registry import Contacts
from xinfang_notify.settings import NotifySettings
from xinfang_shared.contracts.events import MatterRated, MatterStatusChanged, utc_now
from xinfang_shared.contracts.reference import Channel, DeadlineState
from xinfang_shared.contracts.topics import (
    DEADLINES_EVENTS,
    MATTERS_RATED,
    MATTERS_REGISTERED_V2,
    MATTERS_STATUS,
    STATS_REPORTS,
)
from xinfang_shared.db import migrate_dsn
from xinfang_shared.service import Service
from xinfang_shared.workdays import CHINA
from xinfang_stats.app import MIGRATIONS as STATS_MIGRATIONS
from xinfang_stats.app import create_service as create_stats
from xinfang_stats.figures import Period
from xinfang_stats.report import monthly_due
from xinfang_stats.settings import StatsSettings

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "pdftotext"], capture_output=True).returncode != 0, reason="poppler-utils missing"
)
RUN = uuid.uuid4().hex[:8]
OPERATOR = f"report-operator-{RUN}"
CITIES = ("510104", "510302", "510703", "513401")  # 成都, 自贡, 绵阳, 凉山
SURGING = "510703"  # 绵阳: a burst in the month, the largest change
UNITS = {"510104": "city-5101", "510302": "city-5103", "510703": "city-5107", "513401": "city-5134"}
CATEGORIES = ("land", "housing", "labor", "health")
OFFICES = ("letters-1", "letters-2", "reception", "online")
NAMES = ("张建国", "李秀英", "王德明")  # the petitioners: none may show in the PDF


@dataclass
class Month:
    stats: httpx.AsyncClient
    period: Period
    mail: Path
    reports: Tail
    secrets: list[str]


def _matter(rng: random.Random, at: datetime, region: str, channel: str, i: int) -> list[tuple[str, BaseModel]]:
    """One matter's events: registered, routed and transferred; most accepted; some concluded (met on time or
    late), some overdue, escalated; some rated. Every tenth a duplicate, a few visits in groups, one massive."""
    headcount = 60 if i % 97 == 7 else 6 if channel == "visit" and i % 5 == 0 else 1
    body = factories.submission(rng, channel=channel, location={"region_code": region, "detail": "某街道"})
    body["petitioner"]["name"] = NAMES[i % len(NAMES)]
    if headcount > 1:
        body["headcount"] = headcount
        body["representatives"] = [
            {"name": "代表甲", "id_number": factories.id_number(rng), "phone": factories.mobile(rng)}
        ]
    extra: dict[str, Any] = {"duplicate_of": uuid.uuid4()} if i % 10 == 3 else {}
    registered = factories.registration(body, registered_at=at, **extra)
    events: list[tuple[str, BaseModel]] = [(MATTERS_REGISTERED_V2.name, registered)]
    if extra:
        return events
    matter, unit = registered.matter_id, UNITS[region]
    office, category = OFFICES[i % len(OFFICES)], CATEGORIES[i % len(CATEGORIES)]

    def change(status: str, previous: str, action: str, hours: float, **fields: Any) -> None:
        events.append(
            (
                MATTERS_STATUS.name,
                MatterStatusChanged(
                    matter_id=matter,
                    status=status,
                    previous_status=previous,
                    unit=unit,
                    at=at + timedelta(hours=hours),
                    action=action,
                    **fields,
                ),
            )
        )

    change("transferred", "registered", "routed", 1, office=office, category=category, rule="r")
    if i % 6 == 5:
        return events  # routed, not accepted yet
    change("accepted", "transferred", "accepted", 30)
    if i % 4 == 0:  # overdue, then escalated: not concluded
        due = at + timedelta(days=15)
        events.append(
            (DEADLINES_EVENTS.name, factories.deadline_event(DeadlineState.OVERDUE, matter_id=matter, at=due))
        )
        escalated = factories.deadline_event(DeadlineState.ESCALATED, matter_id=matter, at=due + timedelta(days=7))
        events.append((DEADLINES_EVENTS.name, escalated))
        return events
    late = i % 4 == 1 and i % 3 == 0
    met = factories.deadline_event(DeadlineState.MET, matter_id=matter, at=at + timedelta(hours=30), on_time=not late)
    events.append((DEADLINES_EVENTS.name, met))
    change("concluded", "accepted", "concluded", 24 * (3 + i % 20))
    if i % 3 != 2:
        rating = ("satisfied", "basically-satisfied", "unsatisfied")[i % 3]
        events.append((MATTERS_RATED.name, MatterRated(matter_id=matter, rating=rating, at=at + timedelta(days=25))))
    return events


def _generated(period: Period) -> list[tuple[str, BaseModel]]:
    """The month before `period` (a few matters a day) and `period` (more, every channel, and the surge)."""
    rng = random.Random(21)
    events: list[tuple[str, BaseModel]] = []
    i = 0
    for before, month in ((True, period.previous()), (False, period)):
        day = month.start
        while day <= month.end:
            base = datetime.combine(day, time(9), tzinfo=CHINA)
            per_day = 2 if before else 3
            for n in range(per_day):
                region = CITIES[(i + n) % len(CITIES)]
                channel = list(Channel)[i % len(Channel)].value
                events += _matter(rng, base + timedelta(minutes=37 * n), region, channel, i)
                i += 1
            if not before and day.day == 12:  # the surge: 40 matters from one city in an hour
                for k in range(40):
                    channel = list(Channel)[k % len(Channel)].value
                    events += _matter(rng, base + timedelta(hours=5, seconds=80 * k), SURGING, channel, i)
                    i += 1
            day += timedelta(days=1)
    return events


async def _serve(app: Any, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: bool(server.started), timeout=10)
    return server, task


@pytest.fixture(scope="module")
async def month(
    stack: dict[str, str], bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Month]:
    home = tmp_path_factory.mktemp("report")
    mail_port, stats_port = free_port(), free_port()
    mail = await start_standin("mail_sink.py", mail_port, home / "mail", home / "mail.log")
    period = monthly_due(utc_now())
    assert period is not None
    async with private_database(stack["DATABASE_URL"]) as database:
        common: dict[str, Any] = {
            "database_url": database,
            "kafka_bootstrap_servers": bootstrap,
            "operator_api_key": SecretStr(OPERATOR),
            "outbox_poll_interval_s": 0.2,
            "_env_file": None,
        }
        stats_group, notify_group = f"test-report-stats-{RUN}", f"test-report-notify-{RUN}"
        await start_group_at_end(bootstrap, stats_group, consumed_by("stats"))
        await start_group_at_end(bootstrap, notify_group, consumed_by("notify"))
        await migrate_dsn(database, "stats", STATS_MIGRATIONS)
        await migrate_dsn(database, "notify", NOTIFY_MIGRATIONS)
        # Two stats instances (one consumer group, one database), as `make up STATS=2` runs them.
        instances: list[Service] = [
            create_stats(StatsSettings(kafka_group_id=stats_group, report_poll_s=0.5, **common)) for _ in range(2)
        ]
        notify = create_notify(
            NotifySettings(
                kafka_group_id=notify_group,
                smtp_url=f"smtp://127.0.0.1:{mail_port}",
                send_poll_s=0.2,
                stats_url=f"http://127.0.0.1:{stats_port}",
                **common,
            )
        )
        reports = Tail(bootstrap, [STATS_REPORTS.name])
        await reports.start()
        for service in (*instances, notify):
            await service.start()
        server, serving = await _serve(instances[1].api, stats_port)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=instances[0].api),
            base_url="http://stats",
            timeout=60,
            headers={"Authorization": f"Bearer {OPERATOR}"},
        )
        events = _generated(period)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
        await producer.start()
        try:
            for topic, event in events:
                key = str(getattr(event, "matter_id", "")).encode()
                await producer.send(topic, event.model_dump_json().encode(), key=key)
            await producer.flush()
        finally:
            await producer.stop()
        registered = sum(1 for t, _ in events if t == MATTERS_REGISTERED_V2.name)
        ratings = sum(1 for t, _ in events if t == MATTERS_RATED.name)

        async def folded() -> bool:
            whole = Period(period.previous().start, period.end)
            rows = await client.get("/v1/stats/summary", params={"from": str(whole.start), "to": str(whole.end)})
            counts = rows.json()["rows"]
            rated = await instances[0].pool.fetchval("SELECT count(rating) FROM facts")
            return sum(r["registered"] for r in counts) == registered and rated == ratings

        await eventually(folded, timeout=120)
        secrets = [p for _, e in events if (p := _personal(e))]
        try:
            yield Month(client, period, home / "mail", reports, [s for group in secrets for s in group])
        finally:
            await client.aclose()
            server.should_exit = True
            with contextlib.suppress(Exception):
                await serving
            await notify.stop()
            for service in instances:
                await service.stop()
            await reports.stop()
            terminate(mail)


def _personal(event: BaseModel) -> list[str] | None:
    opened = getattr(event, "opened", None)
    if opened is None:
        return None
    people = opened()
    found = [people.petitioner.name, people.petitioner.id_number, people.petitioner.phone, people.tracking_code]
    for r in people.representatives or []:
        found += [r.name, r.id_number, r.phone]
    return found


async def _made(stats: httpx.AsyncClient, body: dict[str, Any]) -> tuple[bytes, str]:
    asked = await stats.post("/v1/stats/reports", json=body)
    assert asked.status_code == 202, asked.text
    report_id = asked.json()["report_id"]
    assert asked.json()["status"] == "pending"
    early = await stats.get(f"/v1/stats/reports/{report_id}")
    assert early.status_code in (200, 409)

    async def ready() -> bool:
        listed = {r["report_id"]: r for r in (await stats.get("/v1/stats/reports")).json()}
        assert listed[report_id]["status"] != "failed"
        return bool(listed[report_id]["status"] == "ready")

    await eventually(ready, timeout=90)
    got = await stats.get(f"/v1/stats/reports/{report_id}")
    assert got.status_code == 200 and got.headers["content-type"] == "application/pdf"
    return got.content, report_id


def _text(pdf: bytes, tmp: Path) -> str:
    path = tmp / "report.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True, text=True).stdout


def _row(text: str, label: str) -> list[str]:
    """The first table row the label starts (a chart's axis labels have no number after them)."""
    return next(w for line in text.splitlines() if (w := line.split())[:1] == [label] and w[1:2] and w[1].isdigit())


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.2f}%"


async def test_the_pdf_shows_the_apis_figures_and_nobodys_personal_data(month: Month, tmp_path: Path) -> None:
    pdf, _ = await _made(month.stats, {"from": str(month.period.start), "to": str(month.period.end)})
    text = _text(pdf, tmp_path)
    params = {"from": str(month.period.start), "to": str(month.period.end), "compare": "true"}
    by_channel = (await month.stats.get("/v1/stats/summary", params=params | {"group_by": "channel"})).json()
    rows, previous = by_channel["rows"], by_channel["previous"]["rows"]
    lines: dict[str, list[str]] = {}
    for line in text.splitlines():  # the first line a label starts: the headline table, on page 1
        if line.split():
            lines.setdefault(line.split()[0], line.split())
    # The headline: each count of the period and the previous one, as the API's rows add up.
    for label, key in (("登记", "registered"), ("重复件", "repeats"), ("转送交办", "routed"), ("受理", "accepted"),
                       ("办结", "concluded"), ("超期", "overdue")):  # fmt: skip
        now, before = sum(r[key] for r in rows), sum(r[key] for r in previous)
        assert lines[label][1:3] == [str(now), str(before)], (label, lines[label])
    assert all(sum(r[k] for r in rows) > 0 for k in ("registered", "repeats", "concluded", "overdue"))
    # The rates, for all matters: the API's figure for one group that holds them all (every channel's rows
    # together give the same counts; the on-time rate is checked per channel below).
    total_concluded = sum(r["concluded"] for r in rows)
    on_time = sum(round(r["on_time_rate"] * r["concluded"]) for r in rows if r["on_time_rate"] is not None)
    assert lines["按期办结率"][1] == _percent(round(on_time / total_concluded, 4))
    rated = (await month.stats.get("/v1/stats/summary", params=params | {"group_by": "category"})).json()["rows"]
    assert rated and all(r["satisfaction"] is not None for r in rated if r["concluded"])
    # Every channel's row: its registrations now, before, and a year before (none then).
    names = {"letter": "来信", "visit": "来访", "online": "网上信访", "mailbox": "领导信箱"}
    for r in rows:
        before = next((p["registered"] for p in previous if p["key"] == r["key"]), 0)
        row = _row(text, names.get(r["key"], r["key"]))
        assert row[1:3] == [str(r["registered"]), str(before)], row
    assert {r["key"] for r in rows} == {c.value for c in Channel}, "every channel came in"
    # The on-time rate of each office, as the API's by office.
    offices = (await month.stats.get("/v1/stats/summary", params=params | {"group_by": "office"})).json()["rows"]
    for r in offices:
        if r["on_time_rate"] is not None:
            assert _percent(r["on_time_rate"]) in text
    # The summary names the largest change: the surging city, by the API's own counts.
    cities = (await month.stats.get("/v1/stats/summary", params=params | {"group_by": "region"})).json()
    surging = next(r for r in cities["rows"] if r["key"] == SURGING[:4])
    before = next(r for r in cities["previous"]["rows"] if r["key"] == SURGING[:4])
    flat = re.sub(r"\s+", "", text)  # a sentence may wrap
    largest = f"变化最大的是城市「绵阳市」：由上期{before['registered']}件增加至{surging['registered']}件"
    assert largest in flat, flat[flat.index("一、综述") : flat.index("一、综述") + 400]
    assert re.search(r"大规模集体访[（(]批[）)]\s+[1-9]", text), "the massive visit is counted"
    assert "集体访" in text and "督办" in text and "满意率" in text
    # Nobody's personal data: no name, ID number, phone or tracking code of any petitioner or representative.
    assert month.secrets and not [s for s in month.secrets if s in text], "a person's data in the report"
    # Page 1: not blank, and its Chinese is text set in an embedded CJK font (not boxes, not pictures).
    (tmp_path / "report.pdf").write_bytes(pdf)
    fonts = subprocess.run(["pdffonts", str(tmp_path / "report.pdf")], capture_output=True, text=True).stdout
    assert re.search(r"Noto-Sans-CJK-SC\S*\s+CID Type 0C.*yes\s+yes\s+yes", fonts), fonts
    subprocess.run(["pdftoppm", "-f", "1", "-l", "1", "-r", "50", "-gray", "-png", str(tmp_path / "report.pdf"),
                    str(tmp_path / "page")], check=True)  # fmt: skip
    png = tmp_path / "page-1.png"
    from PIL import Image

    histogram = Image.open(png).convert("L").histogram()  # pixels per grey level
    dark = sum(histogram[:128]) / sum(histogram)
    assert 0.01 < dark < 0.5, f"page 1 is blank or black ({dark:.3f} dark)"
    page1 = subprocess.run(
        ["pdftotext", "-f", "1", "-l", "1", str(tmp_path / "report.pdf"), "-"], capture_output=True, text=True
    ).stdout
    assert "四川省信访局" in page1 and "信访形势分析报告" in page1 and "一、综述" in page1


async def test_an_english_report_and_a_quarter(month: Month, tmp_path: Path) -> None:
    quarter = {"from": str(month.period.previous().start), "to": str(month.period.end), "language": "en"}
    pdf, _ = await _made(month.stats, quarter)
    text = _text(pdf, tmp_path)
    whole = (await month.stats.get("/v1/stats/summary", params=quarter | {"group_by": "channel"})).json()["rows"]
    registered = _row(text, "Registered")
    assert registered[1] == str(sum(r["registered"] for r in whole))
    assert "Analysis report on letters and visits" in text and "The largest change was" in text
    refused = await month.stats.post("/v1/stats/reports", json={"from": "2026-05-02", "to": "2026-05-01"})
    assert refused.status_code == 422
    anyone = await month.stats.get("/v1/stats/reports", headers={"Authorization": "Bearer not-the-key"})
    assert anyone.status_code == 401


async def test_the_monthly_report_is_made_once_and_e_mailed_once_by_two_instances(month: Month) -> None:
    contacts = Contacts.load(NotifySettings(_env_file=None).contacts_file)  # type: ignore[call-arg]
    wanted = {contacts.offices["general"].email} | {c.email for c in contacts.leaders.values()}

    def mails() -> list[email.message.EmailMessage]:
        found = []
        for path in sorted(month.mail.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            if "分析报告" in str(message["Subject"]):
                found.append(message)
        return found  # type: ignore[return-value]

    await eventually(lambda: {str(m["To"]) for m in mails()} >= wanted, timeout=120)
    await asyncio.sleep(3)  # anything sent twice would be in by now
    sent = mails()
    assert sorted(str(m["To"]) for m in sent) == sorted(wanted), "each recipient once"
    for message in sent:
        attached = [p for p in message.iter_attachments() if p.get_content_type() == "application/pdf"]
        assert len(attached) == 1 and attached[0].get_content().startswith(b"%PDF")
    published = [orjson.loads(r.value) for r in month.reports.on(STATS_REPORTS.name)]
    assert len(published) == 1, "the monthly report is published once"
    assert published[0]["period_start"] == str(month.period.start)
    listed = (await month.stats.get("/v1/stats/reports")).json()
    monthly = [r for r in listed if r["monthly"]]
    assert len(monthly) == 1 and monthly[0]["from"] == str(month.period.start) and monthly[0]["status"] == "ready"
    assert set(published[0]) >= {"report_id", "period_start", "period_end", "language", "pages", "size_bytes"}
    assert not {"pdf", "content"} & set(published[0]), "no content on the bus"
