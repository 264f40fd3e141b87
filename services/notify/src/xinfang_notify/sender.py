"""Sending planned notices: a step of its own after the consumers' commits, so a slow SMTP server or gateway
never holds back consumption.

Workers in every instance claim due notices (store.claim: SKIP LOCKED, a lease), compose each (the template
of its language, the recipient's address opened from the seal or read from the contact registry) and send it.
  - sent: the server or the gateway took it (SMS: then `delivered` / `undelivered` from its receipt);
  - a petitioner's SMS in quiet hours (Beijing time) is `held` until they end; urgent notices never are;
  - a transient failure (SMTP 4xx, the gateway down or slow) is retried, backing off with jitter; after the
    last attempt, or at once for a permanent one (a bad address, SMTP 5xx), `failed` with the reason, listed
    for operators, who may send it again;
  - a notice about a matter notify has not seen registered yet (the topics are read independently) waits.
A worker that dies between the server's acceptance and its write leaves the lease to lapse: the notice is
sent again with the same Message-ID / OutId.

A failure to compose (a template that does not render) is a bug, not the notice's fault: before such notices
are failed the sender's dead-letter limit is asked, and past it the sender halts (dlq_limit.py).

The senders' own bookkeeping (claims, "sent", retries) is written with synchronous_commit off: a write lost to a
database crash only lets a claim lapse, and the notice is sent again with the same key, as after a sender's
crash. Planning (the consumers) is durable as everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from xinfang_shared import outbox
from xinfang_shared.contracts.events import UnitInboxMessage, utc_now
from xinfang_shared.contracts.reference import Language, Office
from xinfang_shared.contracts.topics import unit_inbox_topic
from xinfang_shared.crashpoints import crash_point
from xinfang_shared.dlq_limit import DeadLetterLimit
from xinfang_shared.messaging import TRANSIENT_ERRORS
from xinfang_shared.personal import PersonalDataVault, mask_email, mask_phone
from xinfang_shared.ratelimit import TokenBuckets
from xinfang_shared.workdays import CHINA

from . import store
from .channels import Attachment, Email, SendFailed, Sms
from .registry import Contacts, RecipientKind, Via
from .render import NEXT, Renderer, scope, words
from .report_fetch import ReportFetcher
from .settings import NotifySettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    via: Via
    address: str  # an e-mail address, a phone number, or a unit's code (its inbox topic)
    language: Language

    def reaches_same(self, other: Target) -> bool:
        """The same inbox or phone (addresses compared as their owners write them in other cases and forms)."""
        return self.via == other.via and _address(self) == _address(other)

    @property
    def masked(self) -> str:
        if self.via == Via.EMAIL:
            return mask_email(self.address)
        if self.via == Via.SMS:
            return mask_phone(self.address)
        return unit_inbox_topic(self.address)


def _address(target: Target) -> str:
    if target.via == Via.EMAIL:
        return target.address.strip().casefold()
    digits = "".join(ch for ch in target.address if ch.isdigit())
    return digits.removeprefix("86") if len(digits) == 13 else digits


EARLIER_CODE_WAIT = timedelta(minutes=2)
# Notices about no matter: their matter_id is the alert's or the report's.
ABOUT_NO_MATTER = frozenset({"surge", "report"})


class WaitForMatter(Exception):
    """Notify has not seen the matter registered yet: the notice waits."""


class Doorbell:
    """Wakes one waiting sender per ring (a ring while none waits is kept for the next): a planned batch of
    notices wakes one sender, not all of them to claim the same rows; a sender that claims a full batch rings
    again, so under load they all work."""

    def __init__(self) -> None:
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._rung = False

    def ring(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._rung = True

    def ring_all(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
        self._rung = True

    async def wait(self, timeout_s: float) -> None:
        """Until rung, or `timeout_s` (the poll that covers a lost notification)."""
        if self._rung:
            self._rung = False
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            pass
        finally:
            if waiter in self._waiting:
                self._waiting.remove(waiter)


class Sender:
    def __init__(
        self,
        settings: NotifySettings,
        pool: asyncpg.Pool,
        vault: PersonalDataVault,
        contacts: Contacts,
        renderer: Renderer,
        email: Email,
        sms: Sms,
        limit: DeadLetterLimit,
        metrics: CollectorRegistry,
        reports: ReportFetcher | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.vault = vault
        self.contacts = contacts
        self.renderer = renderer
        self.email = email
        self.sms = sms
        self.limit = limit
        self.reports = reports
        self.rates = {
            Via.EMAIL: TokenBuckets(rate_per_s=settings.email_per_s, burst=max(1, int(settings.email_per_s))),
            Via.SMS: TokenBuckets(rate_per_s=settings.sms_per_s, burst=max(1, int(settings.sms_per_s))),
        }
        self._wake = Doorbell()
        self._stopping = False
        self.outcomes = Counter(
            "xinfang_notices", "Notices by channel and what became of them", ["channel", "outcome"], registry=metrics
        )

    # ---- the loop -------------------------------------------------------------------------------------

    async def run(self) -> None:
        listener: asyncpg.Connection | None = None
        try:
            with contextlib.suppress(Exception):  # without LISTEN it polls
                listener = await asyncpg.connect(self.settings.database_url)
                await listener.add_listener(f"{self.settings.db_schema}_notifications", lambda *_: self._wake.ring())
            await asyncio.gather(*(self._work() for _ in range(self.settings.senders)))
        finally:
            if listener is not None and not listener.is_closed():
                await listener.close()

    def stop(self) -> None:
        self._stopping = True
        self._wake.ring_all()

    async def _work(self) -> None:
        while not self._stopping:
            try:
                claimed = [] if self.limit.halted else await self.run_once()
            except TRANSIENT_ERRORS as exc:
                log.warning("notices could not be claimed; will retry", extra={"error_type": type(exc).__name__})
                claimed = []
            if len(claimed) >= self.settings.send_batch:
                self._wake.ring()  # a full claim: there may be more, so another sender joins in
            elif not claimed:
                await self._wake.wait(self.settings.send_poll_s)

    async def run_once(self) -> list[store.Claimed]:
        """Claim a batch of due notices and deliver each; returns what was claimed."""
        claimed = await store.claim(self.pool, self.settings.send_batch, timedelta(seconds=self.settings.send_lease_s))
        accepted: list[store.Accepted] = []
        try:
            for notice in claimed:
                await self.deliver(notice, accepted)
        finally:
            # What the server or the gateway took is marked sent in one statement for the batch (a crash before
            # it: the claims lapse and those notices are sent again, with the same keys).
            if accepted:
                await store.sent_many(self.pool, accepted)
        return claimed

    # ---- one notice -------------------------------------------------------------------------------------

    async def deliver(self, n: store.Claimed, accepted: list[store.Accepted]) -> None:
        """Compose and send one notice; an e-mail or SMS the other side took is added to `accepted`, to be
        marked sent by the caller."""
        now = utc_now()
        try:
            target = self._target(n)
            subject, body = await self._compose(n, target)
        except WaitForMatter:
            if now - n.created_at > timedelta(seconds=self.settings.await_registration_s):
                await store.failed(self.pool, n, "the matter was never seen registered", channel=None, masked=None)
                self.outcomes.labels("none", "failed").inc()
            else:
                await store.later(self.pool, n, now + timedelta(seconds=2), counts=False)
            return
        except Exception as exc:  # a template that does not render: a bug
            if not self.limit.admit([True], exc):
                await store.later(self.pool, n, now + timedelta(seconds=30), counts=False, reason="sender halted")
                return
            log.exception("a notice could not be composed", extra={"notice": n.notice, "id": n.id})
            await store.failed(self.pool, n, f"could not be composed: {type(exc).__name__}", channel=None, masked=None)
            return
        if target.via == Via.SMS and not n.urgent and n.recipient_kind == RecipientKind.PETITIONER:
            quiet_until = self.quiet_until(now)
            if quiet_until is not None:
                await store.later(
                    self.pool, n, quiet_until, status="held", counts=False, channel=Via.SMS.value, masked=target.masked
                )
                self.outcomes.labels("sms", "held").inc()
                return
        lease = self.settings.send_lease_s
        held_for = asyncio.get_running_loop().time() - n.claimed_at
        if held_for > lease / 2 and not await store.renew(self.pool, n, timedelta(seconds=lease)):
            return  # half the claim's lease gone, and it could not be renewed: another sender has it
        try:
            provider_id = await self._send(n, target, subject, body)
        except SendFailed as failure:
            await self._failed(n, target, failure, now)
            return
        if target.via != Via.TOPIC:  # a topic notice was marked sent in the transaction that published it
            crash_point("notify.accepted")  # the server took it, not yet marked sent (crashpoints.py)
            accepted.append(store.Accepted(n, target.via.value, target.masked, provider_id, utc_now()))
        self.limit.succeeded()
        self.outcomes.labels(target.via.value, "sent").inc()

    def _target(self, n: store.Claimed) -> Target:
        if n.recipient_kind == RecipientKind.PETITIONER:
            if n.matter is None:
                raise WaitForMatter
            return self._petitioner(n.matter)
        if n.matter is None and n.notice not in ABOUT_NO_MATTER:
            raise WaitForMatter  # what notify keeps of the matter (a visit's headcount, say) is not in yet
        contact = self.contacts.of(RecipientKind(n.recipient_kind), n.recipient)
        if contact.via == Via.TOPIC and n.recipient_kind == RecipientKind.UNIT:
            return Target(Via.TOPIC, n.recipient, Language.ZH_CN)
        # A report's notice in the report's language (an English report is asked for English readers).
        language = Language(n.params.get("language", Language.ZH_CN.value)) if n.notice == "report" else None
        return Target(Via.EMAIL, contact.email, language or Language.ZH_CN)

    def _petitioner(self, matter: Any) -> Target:
        """Where a matter's petitioner is told: the e-mail address given, else the phone."""
        sealed = self.vault.open(bytes(matter["contact"]))
        assert isinstance(sealed, dict)
        language = Language(matter["language"])
        if matter["by_email"]:
            return Target(Via.EMAIL, str(sealed["email"]), language)
        return Target(Via.SMS, str(sealed["phone"]), language)

    async def _compose(self, n: store.Claimed, target: Target) -> tuple[str, str]:
        language = target.language
        p = dict(n.params)
        w = words(language)
        p["matter_id"] = str(n.matter_id)
        if n.matter is not None:
            p |= {"registered_at": n.matter["registered_at"], "headcount": n.matter["headcount"]}
            p |= {"place": n.matter["visit_place"], "unusual": n.matter["visit_unusual"]}
            if n.recipient_kind == RecipientKind.PETITIONER:
                # The tracking code is the petitioner's secret (look-up and rating): it is in no other notice.
                code = n.matter["tracking_code"]
                p |= {"tracking_code": code, "lookup_url": self.settings.public_lookup_url + code}
        if "unit_code" in p or n.recipient_kind == RecipientKind.UNIT:
            unit = p.get("unit_code") or n.recipient
            p["unit_name"] = self.contacts.unit_name(unit, language)
        if "office" in p:
            office = p["office"] or Office.SUPERVISION.value
            p["office_name"] = self.contacts.offices[office].name(language).removeprefix("四川省信访局")
        if "level" in p:
            p |= {"level_name": w[p["level"]], "result_name": w[p["result"]]}
            p["next_name"] = w[NEXT[p["level"]]] if p["level"] in NEXT else ""
        if "deadline" in p:
            p["deadline_name"] = w.get(p["deadline"], p["deadline"])
        if n.notice == "repeat":
            p["earlier_code"] = await self._earlier_code(n, target, p.get("earlier_id"))
        if n.notice == "surge":
            p["scope"] = scope(p.get("region_code"), p.get("category"), language)
            p["window"] = w.get(p["window"], p["window"])  # PT15M: "15 minutes", "15分钟"
        if n.notice == "report":
            p["recipient_name"] = self.contacts.of(RecipientKind(n.recipient_kind), n.recipient).name(language)
        rendered = self.renderer.render(n.notice, language, p)
        return rendered.subject, rendered.body

    async def _earlier_code(self, n: store.Claimed, target: Target, earlier_id: str | None) -> str | None:
        """The earlier matter's tracking code, for a repeat notice, only when the notice goes where that matter's
        own notices go (the same e-mail address, or the same phone): whoever submitted with someone's ID number
        and name but their own address learns nothing of that person's matter."""
        if not earlier_id:
            return None
        earlier = await store.matter(self.pool, uuid.UUID(earlier_id))
        if earlier is None:
            # Its registration may come in on another partition after this one: wait a while, then send the
            # notice without the code (the earlier matter may predate notify).
            if utc_now() - n.created_at <= EARLIER_CODE_WAIT:
                raise WaitForMatter
            return None
        code: str = earlier["tracking_code"]
        return code if self._petitioner(earlier).reaches_same(target) else None

    async def _send(self, n: store.Claimed, target: Target, subject: str, body: str) -> str:
        if target.via == Via.TOPIC:
            return await self._to_inbox(n, target, body)
        attachments = [await self._report(n)] if n.notice == "report" else []
        await self._rate(target.via)
        if target.via == Via.EMAIL:
            return await self.email.send(n.key, target.address, subject, body, attachments)
        template = f"XF_{n.notice.upper().replace('-', '_')}_{'ZH' if target.language == Language.ZH_CN else 'EN'}"
        return await self.sms.send(n.key, target.address, template, {"content": body})

    async def _report(self, n: store.Claimed) -> Attachment:
        """The report's PDF from stats (report_fetch.py): a failure to fetch it is a transient send failure."""
        if self.reports is None:
            raise SendFailed("no stats URL to fetch the report from", False)
        p = n.params
        pdf = await self.reports.pdf(uuid.UUID(p["report_id"]))
        name = f"xinfang-report-{p['period_start']}-{p['period_end']}-{p['language']}.pdf"
        return Attachment(name, "application/pdf", pdf)

    async def _to_inbox(self, n: store.Claimed, target: Target, body: str) -> str:
        """A reminder on the unit's inbox topic, through the outbox: published once, in the transaction that
        marks the notice sent."""
        p = n.params
        message = UnitInboxMessage(
            type="reminder",
            matter_id=n.matter_id,
            unit=target.address,
            office=Office(p.get("office") or Office.SUPERVISION.value),
            respond_by={p["deadline"]: datetime.fromisoformat(p["due_at"])} if "deadline" in p else {},
            order_text=body,
        )
        async with self.pool.acquire() as conn, conn.transaction():
            if await store.sent(conn, n, Via.TOPIC.value, target.masked, str(message.event_id)):
                await outbox.enqueue(conn, unit_inbox_topic(target.address), message, key=str(n.matter_id))
        return str(message.event_id)

    async def _failed(self, n: store.Claimed, target: Target, failure: SendFailed, now: datetime) -> None:
        channel = target.via.value
        if failure.permanent or n.attempts >= self.settings.send_attempts:
            why = failure.reason if failure.permanent else f"{failure.reason} (after {n.attempts} attempts)"
            await store.failed(self.pool, n, why, channel=channel, masked=target.masked)
            self.outcomes.labels(channel, "failed").inc()
            log.warning("a notice failed", extra={"notice": n.notice, "id": n.id, "channel": channel, "why": why})
            return
        delay = min(self.settings.send_backoff_max_s, self.settings.send_backoff_initial_s * 2 ** (n.attempts - 1))
        at = now + timedelta(seconds=delay * random.uniform(0.5, 1.5))
        await store.later(self.pool, n, at, reason=failure.reason)
        self.outcomes.labels(channel, "retried").inc()

    async def _rate(self, via: Via) -> None:
        """Wait for the channel's next token (its provider's rate limit)."""
        for _ in range(1000):
            wait = self.rates[via].take(via.value)
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    def quiet_until(self, now: datetime) -> datetime | None:
        """When quiet hours end, if `now` is in them (Beijing time); None otherwise."""
        start, end = self.settings.quiet_hours_start, self.settings.quiet_hours_end
        if start == end:
            return None
        local = now.astimezone(CHINA)
        t = local.time()
        quiet = start <= t < end if start < end else (t >= start or t < end)
        if not quiet:
            return None
        ends = datetime.combine(local.date(), end, tzinfo=CHINA)
        return ends if ends > local else ends + timedelta(days=1)
