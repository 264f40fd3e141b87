"""Notify without a broker or a database: which event gives which notice to whom, what a batch asks of the
database (nothing when it plans nothing), that every notice renders in both languages from what the sender
gives it (StrictUndefined: nothing missing), the e-mail's MIME, masking, and quiet hours."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests import factories
from xinfang_notify.app import State, handle
from xinfang_notify.channels import Email, SendFailed, message_id
from xinfang_notify.registry import Contacts, Notice, RecipientKind, Via, load_notices
from xinfang_notify.render import Renderer
from xinfang_notify.rules import Planned, Rules
from xinfang_notify.sender import EARLIER_CODE_WAIT, Sender, Target, WaitForMatter
from xinfang_notify.settings import NotifySettings
from xinfang_notify.store import Claimed
from xinfang_shared.contracts.events import (
    DeadlineEvent,
    MatterRegisteredV2,
    MatterStatusChanged,
    Opinion,
    StatsAlert,
    StatsReport,
)
from xinfang_shared.contracts.reference import Language
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.dlq_limit import DeadLetterLimit
from xinfang_shared.periods import period_end
from xinfang_shared.workdays import CHINA

SETTINGS = NotifySettings(_env_file=None, environment="test")  # type: ignore[call-arg]
CONTACTS = Contacts.load(SETTINGS.contacts_file)
RULES = Rules(load_notices(SETTINGS.notices_file), DeadlineRules.default(), tuple(CONTACTS.leaders))
AT = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
MATTER = uuid.uuid4()
REPORT = StatsReport(
    report_id=uuid.uuid4(),
    period_start=date(2026, 10, 1),
    period_end=date(2026, 10, 31),
    language="zh-CN",
    pages=9,
    size_bytes=400_000,
)


def _registered(**overrides: Any) -> MatterRegisteredV2:
    body = factories.submission(random.Random(3), **overrides)
    event: MatterRegisteredV2 = factories.registration(
        body, matter_id=MATTER, tracking_code="ABCD-EFGH-JKMN-PQRS", registered_at=AT
    )
    return event


def _status(status: str, **fields: Any) -> MatterStatusChanged:
    fields.setdefault("unit", "city-5101")
    fields.setdefault("previous_status", None)
    return MatterStatusChanged(matter_id=MATTER, status=status, at=AT, **fields)


def _deadline(state: str, **fields: Any) -> DeadlineEvent:
    fields.setdefault("unit", "city-5101")
    fields.setdefault("deadline", "acceptance")
    return DeadlineEvent(matter_id=MATTER, state=state, due_at=AT + timedelta(days=15), at=AT, **fields)


def _only(planned: list[Planned]) -> Planned:
    assert len(planned) == 1, planned
    return planned[0]


# --- who gets which notice ---------------------------------------------------------------------------


def test_a_registration_gives_a_receipt_and_a_repeat_gives_repeat_instead() -> None:
    assert _only(RULES.registered(_registered())).notice == Notice.RECEIPT
    duplicate = _registered().model_copy(update={"duplicate_of": uuid.uuid4()})
    repeat = _only(RULES.registered(duplicate))
    assert (repeat.notice, repeat.params["repeat"]) == (Notice.REPEAT, "duplicate")
    again = _only(RULES.registered(_registered().model_copy(update={"not_accepted_again": True})))
    assert (again.notice, again.params["repeat"]) == (Notice.REPEAT, "not-accepted-again")
    assert again.recipient == "petitioner"


def test_status_changes_tell_the_petitioner_each_step() -> None:
    first = _only(RULES.status(_status("transferred")))
    other = _only(RULES.status(_status("transferred", unit="city-5103")))
    assert first.notice == other.notice == Notice.TRANSFERRED and first.key != other.key, "a new unit is news"
    assert _only(RULES.status(_status("accepted", action="accepted"))).notice == Notice.ACCEPTED
    refused = _only(RULES.status(_status("not-accepted", action="not-accepted", reason="不属于信访事项")))
    assert (refused.notice, refused.params["reason"]) == (Notice.NOT_ACCEPTED, "不属于信访事项")
    assert RULES.status(_status("objected")) == []


def test_an_opinion_says_until_when_a_review_may_be_asked_and_the_re_review_is_final() -> None:
    opinion = Opinion(result="explain", text="已答复")
    handled = _only(RULES.status(_status("concluded", opinion=opinion)))
    assert handled.params["request_until"] == period_end(AT, 30).isoformat()
    final = _only(RULES.status(_status("re-review-concluded", opinion=opinion)))
    assert final.params["request_until"] is None and final.params["level"] == "re-review"
    # The chain's end is told once: on the re-review that ends it, not on every matter terminated with it.
    assert _only(RULES.status(_status("terminated", previous_status="re-review-concluded"))).notice == Notice.TERMINATED
    assert RULES.status(_status("terminated", previous_status="re-review-requested")) == []


def test_deadlines_urge_the_unit_never_for_a_window_and_escalate_to_supervision() -> None:
    soon = _only(RULES.deadline(_deadline("due-soon")))
    assert (soon.notice, soon.recipient_kind, soon.recipient) == (Notice.DUE_SOON, RecipientKind.UNIT, "city-5101")
    assert RULES.deadline(_deadline("closed", window=True)) == []
    assert RULES.deadline(_deadline("due-soon", deadline="objection", window=True)) == []
    escalated = _only(RULES.deadline(_deadline("escalated")))
    assert (escalated.recipient_kind, escalated.recipient) == (RecipientKind.OFFICE, "supervision")
    extended = _only(RULES.deadline(_deadline("extended", extension_days=20, reason="需现场核查")))
    assert (extended.recipient, extended.params["days"], extended.params["reason"]) == ("petitioner", 20, "需现场核查")
    assert RULES.deadline(_deadline("met", on_time=True)) == []


def test_a_special_visit_and_a_surge_go_to_guidance_urgently() -> None:
    # Routed to guidance by the special-visit rule, awaiting assignment there: the change says so.
    routed = _status(
        "awaiting-assignment", unit=None, action="routed", office="guidance", rule="office-4-special-visit"
    )
    urgent = _only(RULES.status(routed))
    assert (urgent.notice, urgent.recipient, urgent.urgent) == (Notice.URGENT_VISIT, "guidance", True)
    assert RULES.status(routed.model_copy(update={"office": "reception", "rule": "office-5-visit"})) == []
    alert = StatsAlert(region_code="5134", window="PT1H", observed=60, baseline=4.2, at=AT, method="negative binomial")
    surge = _only(RULES.alert(alert))
    assert (surge.notice, surge.recipient, surge.urgent) == (Notice.SURGE, "guidance", True)
    assert surge.matter_id == alert.alert_id
    assert RULES.alert(alert.model_copy(update={"state": "closed"})) == []


def test_the_key_is_one_per_matter_notice_recipient_and_about() -> None:
    a = _only(RULES.registered(_registered()))
    assert a.key == _only(RULES.registered(_registered())).key, "the same notice again has the same key"
    assert message_id(a.key) == f"<{a.key}@xinfang.sc.gov.example>"


# --- what a batch asks of the database ---------------------------------------------------------------


class Pool:
    """Records what a batch's handling asks of PostgreSQL: connections taken, transactions, statements."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Pool]:
        self.calls.append("acquire")
        yield self

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.calls.append("BEGIN")
        yield
        self.calls.append("COMMIT")

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, int]]:
        assert sql.startswith("INSERT INTO notifications") and "ON CONFLICT DO NOTHING" in sql
        self.calls.append(f"insert {len(args[0])} notices")
        return [{"id": i} for i in range(len(args[0]))]


def _state(pool: Pool) -> State:
    return State(pool, RULES, None, None)  # type: ignore[arg-type]


def _each(rule: Any) -> Any:
    return lambda state, events: [p for e in events for p in rule(e)]


async def test_a_batch_that_plans_nothing_takes_no_connection_and_commits_nothing() -> None:
    pool = Pool()
    nothing = [
        _deadline("set"),
        _deadline("met", on_time=True),
        _deadline("due-soon", deadline="objection", window=True),
        _deadline("closed", window=True),
    ]
    assert await handle(_state(pool), nothing, _each(RULES.deadline)) == 0
    routed = _status("awaiting-assignment", unit=None, action="routed", office="reception", rule="office-5-visit")
    assert await handle(_state(pool), [routed], _each(RULES.status)) == 0
    assert pool.calls == []


async def test_a_batch_that_only_plans_is_one_insert_on_the_notices_unique_keys() -> None:
    pool = Pool()
    events = [_deadline("set"), _deadline("due-soon"), _deadline("escalated")]
    assert await handle(_state(pool), events, _each(RULES.deadline)) == 2
    assert pool.calls == ["acquire", "insert 2 notices"]


async def test_a_registration_keeps_its_matter_and_plans_in_one_transaction() -> None:
    pool = Pool()

    async def keep(conn: Any, state: State, events: list[MatterRegisteredV2]) -> None:
        assert conn is pool
        pool.calls.append(f"keep {len(events)} matters")

    assert await handle(_state(pool), [_registered()], _each(RULES.registered), keep) == 1
    assert pool.calls == ["acquire", "BEGIN", "keep 1 matters", "insert 1 notices", "COMMIT"]


# --- every notice renders, in both languages, from what the sender gives it ------------------------------


# The petitioner's contact, as notify keeps it (its "seal" here is plain JSON: _Vault opens it).
CONTACT = {"email": "zhang@example.org", "phone": "13812345678"}


class _Vault:
    def open(self, sealed: bytes) -> object:
        return json.loads(sealed)


def _target(language: Language) -> Target:
    return Target(Via.EMAIL, CONTACT["email"], language)


def _sender(pool: object = None) -> Sender:
    return Sender(
        SETTINGS,
        pool,  # type: ignore[arg-type]  # only a repeat reads the database to compose (the earlier code)
        _Vault(),  # type: ignore[arg-type]
        CONTACTS,
        Renderer(),
        Email(SETTINGS.smtp_url, SETTINGS.smtp_from, 5),
        None,  # type: ignore[arg-type]
        DeadLetterLimit("compose"),
        CollectorRegistry(),
    )


def _claimed(p: Planned, language: Language) -> Claimed:
    matter = {
        "tracking_code": "ABCD-EFGH-JKMN-PQRS",
        "language": language.value,
        "contact": json.dumps(CONTACT).encode(),
        "by_email": True,
        "headcount": 60,
        "visit_place": "beijing",
        "visit_unusual": True,
        "registered_at": AT,
    }
    params = {k: v for k, v in p.params.items()}
    params.pop("earlier_id", None)
    return Claimed(
        0, p.key, p.matter_id, p.notice.value, p.recipient_kind.value, p.recipient, p.urgent, params, 1, AT, matter
    )


def _every_notice() -> list[Planned]:
    opinion = Opinion(result="not-support", text="经核查，诉求缺乏依据。")
    alert = StatsAlert(region_code="5134", category="labor", window="PT1H", observed=60, baseline=4.2, at=AT)
    routed = _status(
        "awaiting-assignment", unit=None, action="routed", office="guidance", rule="office-4-special-visit"
    )
    planned = [
        *RULES.registered(_registered()),
        *RULES.registered(_registered().model_copy(update={"not_accepted_again": True})),
        *RULES.status(routed),
        *RULES.status(_status("transferred")),
        *RULES.status(_status("in-review", action="accepted", unit="dept-human-resources")),
        *RULES.status(_status("not-accepted", reason="不属于本单位职责")),
        *RULES.status(_status("concluded", opinion=opinion)),
        *RULES.status(_status("review-concluded", opinion=opinion)),
        *RULES.status(_status("re-review-concluded", opinion=opinion, unit="office-supervision")),
        *RULES.status(_status("terminated", previous_status="re-review-concluded")),
        *RULES.deadline(_deadline("extended", deadline="handling", extension_days=20, reason="需要现场核查")),
        *RULES.deadline(_deadline("due-soon", office="letters-2")),
        *RULES.deadline(_deadline("overdue", office="letters-2")),
        *RULES.deadline(_deadline("escalated", office="letters-2")),
        *RULES.alert(alert),
        *RULES.report(REPORT),
    ]
    assert {p.notice for p in planned} == set(Notice), "every notice of the contract is planned by some event"
    return planned


@pytest.mark.parametrize("language", list(Language))
async def test_every_notice_renders_in_both_languages(language: Language) -> None:
    sender = _sender()
    for planned in _every_notice():
        subject, body = await sender._compose(_claimed(planned, language), _target(language))
        assert subject and body.strip(), planned.notice
        if planned.recipient_kind == RecipientKind.PETITIONER:
            assert "ABCD-EFGH-JKMN-PQRS" in subject + body
        else:
            # The tracking code opens the look-up and the rating: only the petitioner is told it.
            assert "ABCD-EFGH-JKMN-PQRS" not in subject + body, planned.notice
            if planned.notice not in (Notice.SURGE, Notice.REPORT):
                assert str(MATTER) in subject + body, f"{planned.notice} names the matter by its id"
        for secret in ("zhang@example.org", "13812345678", "测试人"):
            assert secret not in subject + body, "a notice never holds anyone's personal data"
        if planned.notice == Notice.OPINION and planned.params["request_until"]:
            ends = datetime.fromisoformat(planned.params["request_until"])
            last_day = (ends - timedelta(seconds=1)).astimezone(CHINA)
            assert str(last_day.day) in body, "the review window's last day is shown"
    english = (await sender._compose(_claimed(_every_notice()[0], Language.EN), _target(Language.EN)))[1]
    chinese = (await sender._compose(_claimed(_every_notice()[0], Language.ZH_CN), _target(Language.ZH_CN)))[1]
    assert "Tracking code" in english and "查询码" in chinese


class _Earlier:
    """The one query composing a repeat makes: the earlier matter's row, if notify has seen it."""

    def __init__(self, rows: dict[uuid.UUID, dict[str, Any]]) -> None:
        self.rows = rows

    async def fetchrow(self, sql: str, matter_id: uuid.UUID) -> dict[str, Any] | None:
        return self.rows.get(matter_id)


def _earlier_row(code: str, **contact: str | None) -> dict[str, Any]:
    return {
        "tracking_code": code,
        "language": "zh-CN",
        "contact": json.dumps(CONTACT | contact).encode(),
        "by_email": bool((CONTACT | contact)["email"]),
    }


def _repeat_of(earlier: uuid.UUID) -> Any:
    planned = _only(RULES.registered(_registered().model_copy(update={"duplicate_of": earlier})))
    assert planned.params["earlier_id"] == str(earlier)

    def claimed(created_at: datetime) -> Claimed:
        c = _claimed(planned, Language.ZH_CN)
        return dataclasses.replace(c, params=dict(planned.params), created_at=created_at)

    return claimed


async def test_a_repeat_names_the_earlier_code_and_waits_a_while_for_it_to_be_seen() -> None:
    earlier = uuid.uuid4()
    claimed, now, target = _repeat_of(earlier), datetime.now(UTC), _target(Language.ZH_CN)
    seen = _sender(_Earlier({earlier: _earlier_row("WXYZ-2345-6789-ABCD")}))
    assert "WXYZ-2345-6789-ABCD" in (await seen._compose(claimed(now), target))[1]
    # The same inbox written another way is the same person's.
    shouted = _sender(_Earlier({earlier: _earlier_row("WXYZ-2345-6789-ABCD", email=" ZHANG@Example.org")}))
    assert "WXYZ-2345-6789-ABCD" in (await shouted._compose(claimed(now), target))[1]
    unseen = _sender(_Earlier({}))
    with pytest.raises(WaitForMatter):  # its registration may still be on its way, on another partition
        await unseen._compose(claimed(now), target)
    body = (await unseen._compose(claimed(now - EARLIER_CODE_WAIT - timedelta(seconds=1)), target))[1]
    assert "查询码 ABCD-EFGH-JKMN-PQRS" in body and "WXYZ" not in body, "sent without it after the wait"


@pytest.mark.parametrize(
    "theirs",
    [
        {"email": "victim@example.org"},  # the earlier matter's notices go to another inbox
        {"email": None, "phone": "13900000000"},  # the earlier petitioner is told by SMS, on another phone
        {"email": None},  # by SMS on this very phone: still not where this notice goes (e-mail)
    ],
)
async def test_a_repeat_names_no_earlier_code_where_the_earlier_matter_is_told_elsewhere(
    theirs: dict[str, str | None],
) -> None:
    """Whoever knows someone's ID number and name and submits with their own address is registered as a repeat
    (the same petitioner raising the same matter), but learns nothing of that person's matter."""
    earlier = uuid.uuid4()
    sender = _sender(_Earlier({earlier: _earlier_row("WXYZ-2345-6789-ABCD", **theirs)}))
    subject, body = await sender._compose(_repeat_of(earlier)(datetime.now(UTC)), _target(Language.ZH_CN))
    assert "WXYZ" not in subject + body
    assert "ABCD-EFGH-JKMN-PQRS" in body, "the notice still names the petitioner's own new code"


def test_a_template_that_names_what_it_is_not_given_fails_instead_of_printing_nothing() -> None:
    with pytest.raises(Exception, match="tracking_code"):
        Renderer().render("receipt", Language.ZH_CN, {"registered_at": AT.isoformat(), "lookup_url": "x"})


# --- e-mail, masking, quiet hours --------------------------------------------------------------------


def test_the_email_is_utf8_with_an_encoded_subject_and_the_notice_key_as_message_id() -> None:
    key = uuid.uuid4()
    smtp = Email(SETTINGS.smtp_url, SETTINGS.smtp_from, 5)
    raw = smtp.message(key, "zhang@example.org", "您的信访事项已登记", "正文：测试\n")
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n")[0], "the subject is an RFC 2047 encoded word"
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "您的信访事项已登记" and parsed["Message-ID"] == f"<{key}@xinfang.sc.gov.example>"
    assert parsed.get_content().replace("\r\n", "\n") == "正文：测试\n" and parsed.get_content_charset() == "utf-8"


def test_a_long_subject_folds_into_encoded_words_that_decode_to_it_and_headers_cannot_be_injected() -> None:
    smtp = Email(SETTINGS.smtp_url, "四川省信访局 <xinfang@xfj.sc.gov.example>", 5)
    subject = "关于您反映的问题的处理意见书已经送达，请注意查收并按期答复（第二次提醒）" * 2
    raw = smtp.message(uuid.uuid4(), "li@example.org", subject + "\r\nBcc: x@evil.example", "正文" * 500)
    head = raw.split(b"\r\n\r\n")[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n")), "every header line within RFC 5322's 78"
    assert b"Bcc:" not in head
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == subject + "  Bcc: x@evil.example"
    assert parsed["From"].addresses[0].display_name == "四川省信访局"
    assert parsed.get_content() == "正文" * 500
    with pytest.raises(SendFailed):
        smtp.message(uuid.uuid4(), "li@example.org\r\nBcc: x@evil.example", "s", "b")


def test_quiet_hours_hold_until_their_end_in_beijing_time() -> None:
    sender = _sender()
    night = datetime(2026, 11, 20, 22, 30, tzinfo=CHINA)
    assert sender.quiet_until(night) == datetime(2026, 11, 21, 8, 0, tzinfo=CHINA)
    assert sender.quiet_until(datetime(2026, 11, 21, 7, 59, tzinfo=CHINA)) == datetime(2026, 11, 21, 8, 0, tzinfo=CHINA)
    assert sender.quiet_until(datetime(2026, 11, 21, 8, 0, tzinfo=CHINA)) is None
    assert sender.quiet_until(datetime(2026, 11, 21, 12, 0, tzinfo=CHINA)) is None
    sender.settings = NotifySettings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        quiet_hours_start=time(12),
        quiet_hours_end=time(13),
    )
    noon = datetime(2026, 11, 21, 12, 30, tzinfo=CHINA)
    assert sender.quiet_until(noon) == datetime(2026, 11, 21, 13, 0, tzinfo=CHINA)


async def test_a_ring_wakes_one_waiting_sender_and_is_kept_when_none_waits() -> None:
    import asyncio

    from xinfang_notify.sender import Doorbell

    bell = Doorbell()
    woken: list[int] = []

    async def sender(i: int) -> None:
        await bell.wait(5)
        woken.append(i)

    waiting = [asyncio.create_task(sender(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    bell.ring()
    await asyncio.sleep(0.01)
    assert woken == [0], "one ring, one sender"
    bell.ring_all()
    await asyncio.gather(*waiting)
    assert sorted(woken) == [0, 1, 2]
    bell.ring()  # none waits: the next to wait goes at once
    await asyncio.wait_for(bell.wait(5), 0.5)
    started = asyncio.get_running_loop().time()
    await bell.wait(0.05)  # rung once only: this one waits its timeout
    assert asyncio.get_running_loop().time() - started >= 0.04


def test_the_report_goes_to_the_general_office_and_each_leader_once_per_report() -> None:
    planned = RULES.report(REPORT)
    assert {(p.recipient_kind, p.recipient) for p in planned} == {(RecipientKind.OFFICE, "general")} | {
        (RecipientKind.LEADER, leader) for leader in CONTACTS.leaders
    }
    assert len(CONTACTS.leaders) >= 1, "the registry names the bureau's leaders"
    assert RULES.report(REPORT.model_copy(update={"event_id": uuid.uuid4()})) == planned, "a redelivery: same keys"
    assert {p.matter_id for p in planned} == {REPORT.report_id}


def test_a_report_e_mail_carries_the_pdf_as_an_attachment() -> None:
    from email import message_from_bytes, policy

    from xinfang_notify.channels import Attachment

    pdf = b"%PDF-1.7 a report\n%%EOF"
    raw = Email(SETTINGS.smtp_url, SETTINGS.smtp_from, 5).message(
        uuid.uuid4(),
        "director@xfj.sc.gov.example",
        "【分析报告】2026-10",
        "见附件。\n",
        [Attachment("r.pdf", "application/pdf", pdf)],
    )
    parsed = message_from_bytes(raw, policy=policy.default)
    parts = {part.get_content_type(): part for part in parsed.walk()}
    assert parts["application/pdf"].get_content() == pdf and parts["application/pdf"].get_filename() == "r.pdf"
    assert "见附件" in parts["text/plain"].get_content()
    assert parsed["Subject"] == "【分析报告】2026-10"


def test_every_window_a_surge_alert_may_name_is_said_in_words() -> None:
    """A surge notice says "the last 15 minutes", never "PT15M" (the windows stats.alerts.v1 carries)."""
    from xinfang_notify.render import WORDS
    from xinfang_stats.surge import SlidingConfig, SurgeConfig

    for language, words in WORDS.items():
        for window in {*SlidingConfig().windows, *SurgeConfig().windows}:
            assert window in words and not words[window].startswith("PT"), (language, window)
