"""Notify through the real pipeline (intake → routing → supervision → notify, on the real broker and database)
with the real SMTP server and the real SMS gateway stand-in as processes of their own (deploy/local/): what
reaches a petitioner's inbox or phone, once; the gateway down, SMTP deferring and refusing; quiet hours;
the operator's list; personal data kept out of notify's logs (checked on the raw records)."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import random
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from tests import factories
from tests.integration.conftest import eventually
from tests.integration.pipeline import UPSTREAM, common_settings, prepare, upstream
from tests.integration.processes import free_port, start_standin, terminate
from tests.personal_data import People, capture_logs, log_leaks
from xinfang_notify.app import create_service as create_notify
from xinfang_notify.settings import NotifySettings
from xinfang_shared.contracts.reference import DeadlineType
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.periods import period_last_day
from xinfang_shared.service import Service
from xinfang_shared.workdays import CHINA

RUN = uuid.uuid4().hex[:8]
CHANNEL_KEY, OPERATOR = f"notify-channel-{RUN}", f"notify-operator-{RUN}"
CITY = "city-5101"
UNIT_KEYS = {CITY: f"notify-{CITY}-{RUN}"}
SMS_KEY, RECEIPT_TOKEN = f"sms-key-{RUN}", f"receipt-token-{RUN}"
QUIET_FOR = timedelta(seconds=45)  # petitioner SMS are held this long after the module starts


@dataclass
class Standin:
    proc: subprocess.Popen[bytes]
    port: int
    folder: Path

    def kept(self, suffix: str) -> list[Path]:
        return sorted(self.folder.glob(f"*{suffix}"))


@dataclass
class Pipeline:
    services: dict[str, Service]
    intake: httpx.AsyncClient
    routing: httpx.AsyncClient
    notify: httpx.AsyncClient
    mail: Standin
    sms: Standin
    people: People
    logs: Any
    quiet_until: datetime

    async def submit(
        self, *, with_email: bool = True, petitioner: dict[str, str] | None = None, **overrides: Any
    ) -> dict[str, Any]:
        petitioner = petitioner or self.people.petitioner()
        if not with_email:
            petitioner.pop("email")
        body = factories.submission(random.Random(), petitioner=petitioner, **overrides)
        self.people.record_submission(body)
        response = await self.intake.post("/v1/submissions", json=body, headers=_bearer(CHANNEL_KEY))
        assert response.status_code == 202, response.text
        return dict(response.json()) | {"petitioner": petitioner}

    async def feedback(self, matter_id: str, action: str, **fields: Any) -> None:
        body = {"matter_id": matter_id, "unit": CITY, "action": action, "at": datetime.now(UTC).isoformat(), **fields}
        response = await self.routing.post(f"/v1/units/{CITY}/feedback", json=body, headers=_bearer(UNIT_KEYS[CITY]))
        assert response.status_code == 202, response.text

    async def listed(self, matter_id: str) -> list[dict[str, Any]]:
        response = await self.notify.get(
            "/v1/notifications", params={"matter_id": matter_id}, headers=_bearer(OPERATOR)
        )
        assert response.status_code == 200, response.text
        return list(response.json())

    async def notice(self, matter_id: str, notice: str, status: str = "sent", timeout: float = 60) -> dict[str, Any]:
        async def reached() -> bool:
            return any(n["notice"] == notice and n["status"] == status for n in await self.listed(matter_id))

        await eventually(reached, timeout=timeout)
        return next(n for n in await self.listed(matter_id) if n["notice"] == notice and n["status"] == status)

    def mails_to(self, address: str) -> list[email.message.EmailMessage]:
        found = []
        for path in self.mail.kept(".eml"):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if message["To"] == address:
                found.append(message)
        return found

    def sms_to(self, phone: str, template: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(path.read_text()) for path in self.sms.kept(".json")]
        return [k for k in found if k["to"] == phone and (template is None or k["template_code"] == template)]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _text(message: email.message.EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


async def _standin(script: str, port: int, folder: Path, log: Path, *extra: str) -> Standin:
    env = {"SMS_ACCESS_KEY": SMS_KEY, "SMS_RECEIPT_TOKEN": RECEIPT_TOKEN}
    proc = await start_standin(script, port, folder, log, *extra, env=env)
    return Standin(proc, port, folder)


@pytest.fixture(scope="module")
async def pipeline(database: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:
    home = tmp_path_factory.mktemp("notify")
    notify_port = free_port()
    mail = await _standin("mail_sink.py", free_port(), home / "mail", home / "mail.log")
    sms = await _standin(
        "sms_gateway.py",
        free_port(),
        home / "sms",
        home / "sms.log",
        "--receipts-url",
        f"http://127.0.0.1:{notify_port}/v1/sms/receipts",
    )
    quiet_from = datetime.now(CHINA) - timedelta(minutes=1)
    quiet_until = datetime.now(CHINA) + QUIET_FOR
    common = common_settings(database, bootstrap, OPERATOR)
    groups = await prepare(database, bootstrap, f"test-notify-{RUN}", (*UPSTREAM, "notify"))
    with capture_logs() as logs:
        services = upstream(groups, common, channel_key=CHANNEL_KEY, unit_keys=UNIT_KEYS)
        intake, routing, supervision = services["intake"], services["routing"], services["supervision"]
        notify_settings = NotifySettings(
            kafka_group_id=groups["notify"],
            http_port=notify_port,
            smtp_url=f"smtp://127.0.0.1:{mail.port}",
            sms_gateway_url=f"http://127.0.0.1:{sms.port}",
            sms_access_key=SecretStr(SMS_KEY),
            sms_receipt_token=SecretStr(RECEIPT_TOKEN),
            quiet_hours_start=quiet_from.time().replace(microsecond=0),
            quiet_hours_end=quiet_until.time().replace(microsecond=0),
            send_poll_s=0.2,
            send_backoff_initial_s=0.5,
            send_backoff_max_s=2.0,
            send_attempts=4,
            **common,
        )
        notify = create_notify(notify_settings)
        # Notify listens on a port of its own: the gateway POSTs its delivery receipts there.
        server = uvicorn.Server(uvicorn.Config(notify.api, host="127.0.0.1", port=notify_port, log_config=None))
        serving = asyncio.create_task(server.serve())
        for service in (intake, routing, supervision):
            await service.start()
        await eventually(lambda: server.started, timeout=60)
        clients = {
            "intake": httpx.AsyncClient(transport=httpx.ASGITransport(app=intake.api), base_url="http://intake"),
            "routing": httpx.AsyncClient(transport=httpx.ASGITransport(app=routing.api), base_url="http://routing"),
            "notify": httpx.AsyncClient(base_url=f"http://127.0.0.1:{notify_port}", timeout=30),
        }
        services = {"intake": intake, "routing": routing, "supervision": supervision, "notify": notify}
        try:
            yield Pipeline(
                services,
                clients["intake"],
                clients["routing"],
                clients["notify"],
                mail,
                sms,
                People(),
                logs,
                quiet_until,
            )
        finally:
            for client in clients.values():
                await client.aclose()
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(serving, 30)
            for service in (supervision, routing, intake):
                await service.stop()
            terminate(mail.proc)
            terminate(sms.proc)


async def test_a_petitioner_s_sms_waits_out_quiet_hours_then_goes_once(pipeline: Pipeline) -> None:
    """Runs first: quiet hours (here: from a minute before the module started to QUIET_FOR after) hold it."""
    answer = await pipeline.submit(with_email=False)
    held = await pipeline.notice(answer["matter_id"], "receipt", status="held")
    phone = answer["petitioner"]["phone"]
    assert (held["channel"], held["recipient_kind"]) == ("sms", "petitioner"), "a held notice names its channel"
    assert held["address"] == phone[:3] + "****" + phone[-4:], "and its address, masked"
    assert not pipeline.sms_to(answer["petitioner"]["phone"])
    assert datetime.now(CHINA) < pipeline.quiet_until, "the test ran too late to see the hold"
    sent = await pipeline.notice(answer["matter_id"], "receipt", status="delivered", timeout=120)
    assert datetime.now(CHINA) >= pipeline.quiet_until - timedelta(seconds=1)
    assert sent["address"] == answer["petitioner"]["phone"][:3] + "****" + answer["petitioner"]["phone"][-4:]
    kept = pipeline.sms_to(answer["petitioner"]["phone"], "XF_RECEIPT_ZH")
    assert len(kept) == 1 and answer["tracking_code"] in kept[0]["text"] and kept[0]["out_id"]


async def _after_quiet_hours(pipeline: Pipeline) -> None:
    wait = (pipeline.quiet_until - datetime.now(CHINA)).total_seconds()
    if wait > 0:
        await asyncio.sleep(wait + 1)


async def test_a_receipt_by_email_then_the_steps_after_the_unit_s_feedback(pipeline: Pipeline) -> None:
    answer = await pipeline.submit(location={"region_code": "510104"}, category="labor")
    address, matter = answer["petitioner"]["email"], answer["matter_id"]
    await pipeline.notice(matter, "receipt")
    receipts = [m for m in pipeline.mails_to(address) if "已登记" in m["Subject"]]
    assert len(receipts) == 1
    assert answer["tracking_code"] in receipts[0]["Subject"] and answer["tracking_code"] in _text(receipts[0])
    await pipeline.notice(matter, "transferred")
    transferred = next(m for m in pipeline.mails_to(address) if "转送" in m["Subject"])
    assert "成都市信访局" in _text(transferred)

    await pipeline.feedback(matter, "accepted")
    await pipeline.notice(matter, "accepted")
    await pipeline.feedback(matter, "extension-requested", extension_days=20, reason="需要赴现场核查工资台账")
    await pipeline.notice(matter, "extended")
    extended = next(m for m in pipeline.mails_to(address) if "延长" in m["Subject"])
    assert "需要赴现场核查工资台账" in _text(extended) and "20" in _text(extended)
    before = datetime.now(UTC)
    await pipeline.feedback(matter, "concluded", opinion={"result": "support", "text": "已责成企业补发工资。"})
    await pipeline.notice(matter, "opinion")
    after = datetime.now(UTC)
    opinion = next(m for m in pipeline.mails_to(address) if "处理意见" in m["Subject"])
    text = _text(opinion)
    assert "已责成企业补发工资。" in text and "复查" in text
    # The review window's last day, as the shared deadline rules count it from the opinion (to the day's end,
    # past a holiday). (Not supervision's figure here: its controlled clock may run ahead in this database.)
    window = DeadlineRules.default().request_window(DeadlineType.REVIEW)
    last_days = {period_last_day(window.due(at)) for at in (before, after)}
    assert any(f"{d.year}年{d.month}月{d.day}日" in text for d in last_days), (last_days, text)
    # Each (notice, recipient) once: the mailbox holds one of each, with distinct Message-IDs.
    notices = Counter(n["notice"] for n in await pipeline.listed(matter))
    assert notices == Counter({"receipt": 1, "transferred": 1, "accepted": 1, "extended": 1, "opinion": 1})
    ids = [m["Message-ID"] for m in pipeline.mails_to(address)]
    assert len(ids) == 5 == len(set(ids))
    listed = await pipeline.listed(matter)
    assert all(n["address"] == address[0] + "***@" + address.split("@")[1] for n in listed)


async def test_a_repeat_gets_repeat_not_a_receipt_nor_transferred(pipeline: Pipeline) -> None:
    person = pipeline.people.petitioner()
    text = {
        "title": "关于拆迁补偿款未发放的反映",
        "content": "我家拆迁后补偿款至今未发放，多次询问无果，请求督促发放。",
    }
    body = factories.submission(random.Random(), petitioner=person, **text)
    again = dict(body, external_id=f"ext-{uuid.uuid4()}")
    r1 = await pipeline.intake.post("/v1/submissions", json=body, headers=_bearer(CHANNEL_KEY))
    r2 = await pipeline.intake.post("/v1/submissions", json=again, headers=_bearer(CHANNEL_KEY))
    assert r2.json()["status"] == "duplicate", r2.text
    copy = r2.json()["matter_id"]
    await pipeline.notice(copy, "repeat")
    await pipeline.notice(r1.json()["matter_id"], "transferred")
    assert {n["notice"] for n in await pipeline.listed(copy)} == {"repeat"}
    mail = next(m for m in pipeline.mails_to(person["email"]) if r2.json()["tracking_code"] in m["Subject"])
    assert r1.json()["tracking_code"] in _text(mail), "it names the matter it repeats"


async def test_a_stranger_who_knows_someone_s_id_number_learns_nothing_of_their_matter(pipeline: Pipeline) -> None:
    """The attack: submit the victim's matter again with the victim's ID number (and name, which is often known
    too) and an address of one's own, and be told the victim's tracking code, which opens the look-up and the
    rating. Same petitioner needs the ID number and the name; a repeat notice names an earlier code only where the
    earlier matter's own notices go; a text too short to compare is never a repeat."""
    victim = pipeline.people.petitioner()
    text = {
        "title": "关于某小区征地补偿款被村委会截留的反映",
        "content": "我家承包地去年被征收，补偿款一直被村委会截留，多次找镇政府反映无果，请求督促依法发放。",
    }
    theirs = (
        await pipeline.intake.post("/v1/submissions", json=_body(victim, **text), headers=_bearer(CHANNEL_KEY))
    ).json()
    await pipeline.notice(theirs["matter_id"], "receipt")
    victim_code = theirs["tracking_code"]

    def stranger(**known: str) -> dict[str, str]:
        own = pipeline.people.petitioner()
        return own | known

    # Knowing the ID number alone: another petitioner, a new matter.
    by_id = stranger(id_number=victim["id_number"])
    answer = (
        await pipeline.intake.post("/v1/submissions", json=_body(by_id, **text), headers=_bearer(CHANNEL_KEY))
    ).json()
    assert answer["status"] == "registered"
    # Knowing the ID number and the name: the same petitioner by the bureau's rule, so a repeat, but told at their own
    # address, which is not where the victim's matter is told: the notice names no earlier code.
    both = stranger(id_number=victim["id_number"], name=victim["name"])
    repeat = (
        await pipeline.intake.post("/v1/submissions", json=_body(both, **text), headers=_bearer(CHANNEL_KEY))
    ).json()
    assert repeat["status"] == "duplicate"
    # A two-character text matches nothing, even with both.
    short = await pipeline.intake.post(
        "/v1/submissions", json=_body(both, title="问题", content="问题"), headers=_bearer(CHANNEL_KEY)
    )
    assert short.json()["status"] == "registered"

    await pipeline.notice(answer["matter_id"], "receipt")
    await pipeline.notice(repeat["matter_id"], "repeat")
    await pipeline.notice(short.json()["matter_id"], "receipt")
    for person in (by_id, both):
        told = " ".join(m["Subject"] + _text(m) for m in pipeline.mails_to(person["email"]))
        assert told and victim_code not in told, "a stranger was told the victim's tracking code"
    told = " ".join(_text(m) for m in pipeline.mails_to(both["email"]))
    assert repeat["tracking_code"] in told, "the stranger is told of their own matter"
    # Nor does the look-up of their own code lead to the victim's matter.
    for code in (answer["tracking_code"], repeat["tracking_code"]):
        seen = await pipeline.intake.get(f"/v1/matters/{code}")
        assert seen.status_code == 200 and victim_code not in seen.text and theirs["matter_id"] not in seen.text


def _body(petitioner: dict[str, str], **fields: Any) -> dict[str, Any]:
    return factories.submission(random.Random(), petitioner=petitioner, location={"region_code": "510104"}, **fields)


async def test_the_gateway_down_for_a_while_delays_an_sms_and_it_still_goes_once(pipeline: Pipeline) -> None:
    await _after_quiet_hours(pipeline)
    gateway = httpx.AsyncClient(base_url=f"http://127.0.0.1:{pipeline.sms.port}")
    try:
        assert (await gateway.post("/admin/mode", json={"mode": "fail"})).status_code == 200
        answer = await pipeline.submit(with_email=False)
        phone = answer["petitioner"]["phone"]

        async def retried() -> bool:
            return any(
                n["notice"] == "receipt" and n["attempts"] >= 2 for n in await pipeline.listed(answer["matter_id"])
            )

        await eventually(retried, timeout=60)
        assert not pipeline.sms_to(phone)
        await gateway.post("/admin/mode", json={"mode": "ok"})
        await pipeline.notice(answer["matter_id"], "receipt", status="delivered", timeout=60)
        assert len(pipeline.sms_to(phone, "XF_RECEIPT_ZH")) == 1
    finally:
        await gateway.post("/admin/mode", json={"mode": "ok"})
        await gateway.aclose()


async def test_smtp_deferring_is_retried_and_refusing_is_failed_with_the_reason(pipeline: Pipeline) -> None:
    deferred, refused = f"defer-{RUN}@example.org", f"refuse-{RUN}@example.org"
    mode = pipeline.mail.folder / "mode.json"
    mode.write_text(json.dumps({"defer": [deferred], "reject": [refused]}))
    try:
        later = await pipeline.submit(petitioner=dict(pipeline.people.petitioner(), email=deferred))
        never = await pipeline.submit(petitioner=dict(pipeline.people.petitioner(), email=refused))

        async def tried_twice() -> bool:
            return any(
                n["notice"] == "receipt" and n["attempts"] >= 2 for n in await pipeline.listed(later["matter_id"])
            )

        await eventually(tried_twice, timeout=60)
        failed = await pipeline.notice(never["matter_id"], "receipt", status="failed")
        assert "550" in (failed["error"] or "") and failed["attempts"] == 1, "a permanent refusal is not retried"
        dead = (await pipeline.notify.get("/v1/notifications/failed", headers=_bearer(OPERATOR))).json()
        assert failed["id"] in {n["id"] for n in dead}
        mode.write_text(json.dumps({}))  # the server takes it now
        await pipeline.notice(later["matter_id"], "receipt")
        assert len([m for m in pipeline.mails_to(deferred) if "已登记" in m["Subject"]]) == 1
        # The operator sends the refused one again once the mailbox exists.
        retry = await pipeline.notify.post(
            f"/v1/notifications/{failed['id']}/retry", headers=_bearer(OPERATOR) | {"X-Operator": "tester"}
        )
        assert retry.status_code == 202, retry.text
        await pipeline.notice(never["matter_id"], "receipt")
        assert len([m for m in pipeline.mails_to(refused) if "已登记" in m["Subject"]]) == 1
        again = await pipeline.notify.post(
            f"/v1/notifications/{failed['id']}/retry", headers=_bearer(OPERATOR) | {"X-Operator": "tester"}
        )
        assert again.status_code == 409
    finally:
        mode.write_text(json.dumps({}))


async def test_the_list_needs_the_operator_key_and_receipts_the_gateway_s_token(pipeline: Pipeline) -> None:
    assert (await pipeline.notify.get("/v1/notifications", params={"matter_id": str(uuid.uuid4())})).status_code == 401
    receipt = [{"out_id": uuid.uuid4().hex, "success": True}]
    assert (await pipeline.notify.post("/v1/sms/receipts", json=receipt)).status_code == 401
    ok = await pipeline.notify.post("/v1/sms/receipts", json=receipt, headers=_bearer(RECEIPT_TOKEN))
    assert ok.json() == {"code": 0, "msg": "成功"}


async def test_zz_no_personal_data_in_notify_s_logs(pipeline: Pipeline) -> None:
    """Runs last: every notice above went out with the petitioners' addresses and phones."""
    assert len(pipeline.people) > 10
    notify_records = [c for c in pipeline.logs.captured if c.record.name.startswith("xinfang_notify")]
    assert notify_records, "the capture saw notify's own records (the refused and the failed notices log)"
    assert not (leaks := log_leaks(pipeline.logs, pipeline.people)), f"personal data in the logs: {leaks}"
    at_rest = await pipeline.services["notify"].pool.fetch(
        "SELECT params::text AS p, address_masked FROM notifications"
    )
    for row in at_rest:
        for secret in pipeline.people.values:
            assert secret not in row["p"] and secret != row["address_masked"]
