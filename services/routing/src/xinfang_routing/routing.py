"""Routing a registered matter: category (given or inferred), office and unit by the rule book, then
matters.routed.v1, the unit's inbox message and matters.status.v1 through the outbox, in one transaction. A new
matter is placed before it is stored, so that it is written once, already routed.

Reviews (复查) and re-reviews (复核) are matters of their own, linked to the matter whose opinion they contest
(`related_matter_id`): they go one level above whoever gave that opinion, and registering one moves that
matter to review-requested / re-review-requested. A concluded re-review is final: the whole chain (the
original matter, its review, its re-review) is terminated (三级终结). A chain whose request window lapses
unused is closed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from xinfang_shared import outbox
from xinfang_shared.contracts.events import (
    Location,
    MatterRegisteredV2,
    MatterRouted,
    MatterStatus,
    MatterStatusChanged,
    Petitioner,
    UnitInboxMessage,
)
from xinfang_shared.contracts.reference import (
    DEPARTMENT_FOR_CATEGORY,
    REVIEW_OFFICE_UNIT,
    Category,
    DeadlineType,
    Kind,
    Office,
)
from xinfang_shared.contracts.topics import MATTERS_ROUTED, MATTERS_STATUS, unit_inbox_topic
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.outbox import Outgoing
from xinfang_shared.personal import PersonalDataVault
from xinfang_shared.tracking import normalise
from xinfang_shared.workdays import CHINA

from .categories import CategoryInference
from .rules import RuleBook

S = MatterStatus
REVIEW_LEVEL = {Kind.REVIEW_REQUEST: 1, Kind.RE_REVIEW_REQUEST: 2}
# Registering a review (level 1) or a re-review (level 2): the status the contested matter must be in, and
# the one it moves to.
REQUESTED = {1: (S.CONCLUDED, S.REVIEW_REQUESTED), 2: (S.REVIEW_CONCLUDED, S.RE_REVIEW_REQUESTED)}
# The request window of each level, as supervision publishes it: (the level, the status) whose window it is.
LAPSES = {DeadlineType.REVIEW: (0, S.CONCLUDED), DeadlineType.RE_REVIEW: (1, S.REVIEW_CONCLUDED)}
# A chain ends (terminated, or closed when a window lapses) for the matters still waiting on it.
AWAITING_THE_CHAIN = (S.REVIEW_REQUESTED, S.RE_REVIEW_REQUESTED)


@dataclass(frozen=True)
class Placement:
    office: str
    unit: str | None
    office_rule: str
    unit_rule: str
    rules_version: str


@dataclass(frozen=True)
class Change:
    """A lifecycle change of one matter: its history row and its matters.status.v1."""

    matter_id: uuid.UUID
    previous: MatterStatus | None
    status: MatterStatus
    unit: str | None
    at: datetime
    actor: str
    action: str
    rule: str | None = None
    reason: str | None = None
    opinion: Any = None
    extension_days: int | None = None
    reported_at: datetime | None = None
    # With action routed: what matters.routed.v1 says too, on the status event (its readers read only that one).
    category: Category | None = None
    office_rule: str | None = None


# The matters row routing writes for a new registration (updated_at: the transaction's time), with its types.
MATTER_COLUMNS = (
    "matter_id", "tracking_code", "kind", "facts", "details", "personal_data", "registered_at", "status", "category",
    "category_inferred", "category_confidence", "needs_review", "review_level", "related_matter_id", "office",
    "unit", "office_rule", "unit_rule", "rules_version", "transferred_at", "status_at",
)  # fmt: skip
MATTER_TYPES = (
    "uuid", "text", "text", "jsonb", "jsonb", "bytea", "timestamptz", "text", "text", "bool", "real", "bool", "int",
    "uuid", "text", "text", "text", "text", "text", "timestamptz", "timestamptz",
)  # fmt: skip


@dataclass(frozen=True)
class Registration:
    """What routing makes of one registration before anything is written: the matter's row (MATTER_COLUMNS),
    its first lifecycle change, where it goes, the matter a review contests, and its routed event and inbox
    message."""

    event: MatterRegisteredV2
    row: tuple[Any, ...]
    change: Change
    placement: Placement | None
    related: Any
    review_level: int
    out: list[Outgoing]


class Router:
    def __init__(
        self,
        rulebook: RuleBook,
        inference: CategoryInference,
        vault: PersonalDataVault,
        deadlines: DeadlineRules,
    ) -> None:
        self.rulebook = rulebook
        self.inference = inference
        self.vault = vault
        self.deadlines = deadlines

    @staticmethod
    def facts(event: MatterRegisteredV2, category: Category, in_sensitive_period: bool) -> dict[str, Any]:
        """The facts rules may test: no personal data."""
        return {
            "kind": event.kind.value,
            "channel": event.channel.value,
            "addressee": event.addressee.value,
            "mailbox": event.mailbox.value if event.mailbox else None,
            "assigned_by": event.assigned_by.value if event.assigned_by else None,
            "level": event.level.value,
            "headcount": event.headcount,
            "visit.place": event.visit.place.value if event.visit else None,
            "visit.unusual": event.visit.unusual if event.visit else None,
            "location.region_code": event.location.region_code if event.location else None,
            "category": category.value,
            "in_sensitive_period": in_sensitive_period,
        }

    async def route_registered(
        self, conn: asyncpg.Connection, events: Sequence[MatterRegisteredV2], now: datetime
    ) -> None:
        """Route a batch of registrations (their personal blocks opened: the unit's inbox needs the petitioner):
        each placed first, then every new matter's row, every history row and every event written in one
        statement each. A matter already stored (the same matter under another event id) is left as it is."""
        registrations: dict[uuid.UUID, Registration] = {}
        for event in events:
            if event.matter_id not in registrations:
                registrations[event.matter_id] = await self._register(conn, event, now)
        stored = await self._store(conn, list(registrations.values()))
        out: list[Outgoing] = []
        changes: list[tuple[Change, str | None]] = []
        received: list[MatterRegisteredV2] = []
        for registration in registrations.values():
            if registration.event.matter_id not in stored:
                continue  # routed already
            if registration.event.received_by:
                received.append(registration.event)
            if registration.related is not None and registration.placement is not None:
                out += await self._request_made(
                    conn, registration.related, registration.review_level, registration.event.matter_id, now
                )
            out += registration.out
            changes.append((registration.change, registration.placement.office if registration.placement else None))
        # Who registered it at reception comes first in its history (rows are read in the order written).
        await self._received(conn, received)
        # A matter's status change after its routed event and its inbox message (the order units rely on).
        out += await self._record_many(conn, changes)
        await outbox.enqueue_many(conn, out)

    async def _register(self, conn: asyncpg.Connection, event: MatterRegisteredV2, now: datetime) -> Registration:
        """What routing makes of one registration, nothing written yet: only a review reads (the matter it
        contests)."""
        personal = event.opened()
        if event.category is not None:
            category, inferred, confidence, needs_review = event.category, False, None, False
        else:
            guess = self.inference.infer(event.title, event.content)
            category, inferred, confidence, needs_review = guess.category, True, guess.confidence, guess.needs_review
        rules = self.rulebook.rules()
        day = event.registered_at.astimezone(CHINA).date()
        facts = self.facts(event, category, rules.in_sensitive_period(day))
        details = {
            "title": event.title,
            "content": event.content,
            "location": event.location.model_dump(mode="json") if event.location else None,
        }
        personal_data = {
            "petitioner": personal.petitioner.model_dump(mode="json"),
            "representatives": [r.model_dump(mode="json") for r in personal.representatives],
        }
        repeat = (
            MatterStatus.DUPLICATE
            if event.duplicate_of
            else (MatterStatus.NOT_ACCEPTED_AGAIN if event.not_accepted_again else None)
        )
        review_level = REVIEW_LEVEL.get(event.kind, 0)
        related = (
            await self._related(conn, event.related_matter_id, personal.related_tracking_code) if review_level else None
        )
        # Repeats are recorded, not routed (DOMAIN.md: repeats).
        placement = None if repeat else self._place(facts, related, review_level, rules.version)
        status = repeat or self._assigned_status(placement.unit if placement else None)
        placed = (
            (placement.office, placement.unit, placement.office_rule, placement.unit_rule, placement.rules_version, now)
            if placement
            else (None,) * 6
        )
        row = (
            event.matter_id,
            personal.tracking_code,
            event.kind.value,
            facts,
            details,
            self.vault.seal(personal_data),
            event.registered_at,
            status.value,
            category.value,
            inferred,
            confidence,
            needs_review,
            review_level,
            related["matter_id"] if related else None,
            *placed,
            now,
        )
        if placement is None:
            change = Change(
                event.matter_id,
                MatterStatus.REGISTERED,
                status,
                None,
                now,
                actor="routing",
                action="recorded-repeat",
                reason=str(event.duplicate_of or ""),
            )
            return Registration(event, row, change, None, related, review_level, [])
        key = str(event.matter_id)
        routed = MatterRouted(
            matter_id=event.matter_id,
            office=Office(placement.office),
            unit=placement.unit,
            category=category,
            category_inferred=inferred,
            rule=placement.office_rule,
            routed_at=now,
        )
        out = [Outgoing(MATTERS_ROUTED.name, key, routed)]
        if placement.unit is not None:
            # The personal data as opened above: no need to open what was sealed again.
            matter = {
                "office": placement.office,
                "kind": event.kind.value,
                "category": category.value,
                "details": details,
            }
            message = self._inbox_message(event.matter_id, placement.unit, matter, personal_data, now)
            out.append(Outgoing(unit_inbox_topic(placement.unit), key, message))
        change = Change(
            event.matter_id,
            MatterStatus.REGISTERED,
            status,
            placement.unit,
            now,
            actor="routing",
            action="routed",
            rule=f"{placement.office_rule}/{placement.unit_rule}",
            category=category,
            office_rule=placement.office_rule,
        )
        return Registration(event, row, change, placement, related, review_level, out)

    @staticmethod
    async def _received(conn: asyncpg.Connection, events: list[MatterRegisteredV2]) -> None:
        """The first history row of each matter a person registered at reception (`received_by`, which intake
        takes only from the console's own key): who, at its registration. It changes no status, so it
        publishes nothing; written only with the matter's row (a redelivered registration adds nothing)."""
        if not events:
            return
        await conn.execute(
            "INSERT INTO history (matter_id, at, actor, action, to_status)"
            " SELECT m, a, r, 'received', $4 FROM unnest($1::uuid[], $2::timestamptz[], $3::text[]) AS u(m, a, r)",
            [e.matter_id for e in events],
            [e.registered_at for e in events],
            [e.received_by for e in events],
            MatterStatus.REGISTERED.value,
        )

    @staticmethod
    async def _store(conn: asyncpg.Connection, registrations: list[Registration]) -> set[uuid.UUID]:
        """The new matters' rows, already placed, in one statement; returns the matters stored now."""
        if not registrations:
            return set()
        # updated_at: the transaction's now(), as a status change (_changed()) sets it.
        stored = await conn.fetch(
            f"INSERT INTO matters ({', '.join(MATTER_COLUMNS)}, updated_at)"
            f" SELECT *, now() FROM unnest({', '.join(f'${i + 1}::{t}[]' for i, t in enumerate(MATTER_TYPES))})"
            " ON CONFLICT (matter_id) DO NOTHING RETURNING matter_id",
            *(list(column) for column in zip(*(r.row for r in registrations), strict=True)),
        )
        return {row["matter_id"] for row in stored}

    def _place(self, facts: dict[str, Any], related: Any, review_level: int, version: str) -> Placement:
        decision = self.rulebook.current.decide(facts)
        if not review_level:
            return Placement(decision.office, decision.unit, decision.office_rule, decision.unit_rule, version)
        # Review: one level above the unit that gave the contested opinion.
        earlier_unit = related["unit"] if related else None
        if earlier_unit and earlier_unit.startswith("city-"):
            department = DEPARTMENT_FOR_CATEGORY.get(Category(related["category"] or "other"))
            if department:
                return Placement(
                    decision.office, department, decision.office_rule, "review-city-to-department", version
                )
        # A department's opinion, or a department's review, is decided by the provincial government: the
        # Supervision and Review Office handles it as the unit (and so does the one above its own review).
        return Placement(decision.office, REVIEW_OFFICE_UNIT, decision.office_rule, "review-by-office", version)

    async def _request_made(
        self, conn: asyncpg.Connection, related: Any, level: int, request: uuid.UUID, now: datetime
    ) -> list[Outgoing]:
        """A review (re-review) of `related` was registered: it is review-requested (re-review-requested).
        Returns what it publishes (nothing when the matter was not awaiting it)."""
        awaited, requested = REQUESTED[level]
        status = await conn.fetchval("SELECT status FROM matters WHERE matter_id = $1 FOR UPDATE", related["matter_id"])
        # Intake admits a request only against a concluded opinion in its window; a chain closed meanwhile
        # (the window lapsed as the request came in) is reopened by it.
        if status not in (awaited, S.CLOSED):
            return []
        change = Change(
            related["matter_id"],
            S(status),
            requested,
            related["unit"],
            now,
            actor="routing",
            action=requested.value,
            reason=f"requested by matter {request}",
        )
        return [await self._changed(conn, change)]

    async def window_lapsed(
        self, conn: asyncpg.Connection, matter_id: uuid.UUID, window: DeadlineType, now: datetime
    ) -> bool:
        """Supervision says the petitioner's window to ask one level up about this matter's opinion lapsed
        unused: the matter is closed, and with it the matters of its chain that waited on it."""
        row = await conn.fetchrow(
            "SELECT status, unit, review_level FROM matters WHERE matter_id = $1 FOR UPDATE", matter_id
        )
        if row is None or (row["review_level"], row["status"]) != LAPSES[window]:
            return False  # not that matter's window (or it was used meanwhile)
        why = f"the window to request a {window.value} of matter {matter_id} lapsed unused"
        await self.change(
            conn, matter_id, S(row["status"]), S.CLOSED, row["unit"], now, actor="routing", action="closed", reason=why
        )
        await self.end_chain(conn, matter_id, S.CLOSED, now, why=why)
        return True

    async def end_chain(
        self, conn: asyncpg.Connection, matter_id: uuid.UUID, status: MatterStatus, now: datetime, *, why: str
    ) -> None:
        """The matters `matter_id` contests (up its chain) that still wait on it end with it: terminated when
        its re-review concluded, closed when its request window lapsed unused."""
        related = await conn.fetchval("SELECT related_matter_id FROM matters WHERE matter_id = $1", matter_id)
        while related is not None:
            row = await conn.fetchrow(
                "SELECT status, unit, related_matter_id FROM matters WHERE matter_id = $1 FOR UPDATE", related
            )
            if row is None:
                return
            if row["status"] in AWAITING_THE_CHAIN:
                await self.change(
                    conn,
                    related,
                    S(row["status"]),
                    status,
                    row["unit"],
                    now,
                    actor="routing",
                    action=status.value,
                    reason=why,
                )
            related = row["related_matter_id"]

    async def assign(
        self,
        conn: asyncpg.Connection,
        matter_id: uuid.UUID,
        unit: str | None,
        now: datetime,
        *,
        actor: str,
        action: str,
        rule: str | None,
        reason: str | None,
        previous: MatterStatus,
    ) -> None:
        """Transfer to `unit` (its inbox message) or put the matter in its office's manual queue."""
        status = self._assigned_status(unit)
        before = await conn.fetchval("SELECT unit FROM matters WHERE matter_id=$1 FOR UPDATE", matter_id)
        row = await conn.fetchrow(
            "UPDATE matters SET unit=$2, status=$3, transferred_at=$4, updated_at=$4 WHERE matter_id=$1"
            " RETURNING office, kind, category, category_inferred, details, personal_data",
            matter_id,
            unit,
            status.value,
            now,
        )
        key = str(matter_id)
        out: list[Outgoing] = []
        if previous == MatterStatus.TRANSFERRED and before is not None and before != unit:
            # It had the matter (and did not return it): it is told that the matter left it.
            withdrawal = self._withdrawal(matter_id, before, unit, row, reason)
            out.append(Outgoing(unit_inbox_topic(before), key, withdrawal))
        if unit is not None:
            out.append(
                Outgoing(
                    MATTERS_ROUTED.name,
                    key,
                    MatterRouted(
                        matter_id=matter_id,
                        office=Office(row["office"]),
                        unit=unit,
                        category=row["category"] or "other",
                        category_inferred=row["category_inferred"],
                        rule=rule or action,
                        routed_at=now,
                    ),
                )
            )
            personal = self.vault.open(bytes(row["personal_data"])) if row["personal_data"] else {}
            out.append(Outgoing(unit_inbox_topic(unit), key, self._inbox_message(matter_id, unit, row, personal, now)))
        change = Change(matter_id, previous, status, unit, now, actor=actor, action=action, rule=rule, reason=reason)
        out.append(await self._changed(conn, change))
        await outbox.enqueue_many(conn, out)

    @staticmethod
    def _assigned_status(unit: str | None) -> MatterStatus:
        return MatterStatus.TRANSFERRED if unit else MatterStatus.AWAITING_ASSIGNMENT

    def objection_ends(self, transferred_at: datetime) -> datetime:
        return self.deadlines[DeadlineType.OBJECTION].due(transferred_at)

    @staticmethod
    def _withdrawal(matter_id: uuid.UUID, unit: str, now_with: str | None, row: Any, reason: str | None) -> Any:
        where = f"to {now_with}" if now_with else "back to the office's queue"
        return UnitInboxMessage(
            type="withdrawal",
            matter_id=matter_id,
            unit=unit,
            office=Office(row["office"]),
            order_text=f"撤回 Withdrawn: matter {matter_id} was reassigned {where}"
            + (f" ({reason})" if reason else "")
            + "; it is no longer yours to handle, and nothing more is expected from you on it.",
        )

    def _inbox_message(
        self, matter_id: uuid.UUID, unit: str, row: Any, personal: object, now: datetime
    ) -> UnitInboxMessage:
        """`row`: the matter's office, kind, category and details; `personal`: its personal data, opened."""
        details = row["details"]
        accusation = row["kind"] == Kind.ACCUSATION
        return UnitInboxMessage(
            type="assign" if row["office"] == Office.SUPERVISION else "transfer",
            matter_id=matter_id,
            unit=unit,
            office=Office(row["office"]),
            respond_by={
                "acceptance": self.deadlines[DeadlineType.ACCEPTANCE].due(now),
                "objection": self.objection_ends(now),
            },
            kind=Kind(row["kind"]),
            category=Category(row["category"]),
            title=details["title"],
            content=details["content"],
            location=Location.model_validate(details["location"]) if details.get("location") else None,
            # The accuser's identity never goes towards the accused (statutory): an accusation's inbox
            # message carries no petitioner.
            petitioner=None
            if accusation or not isinstance(personal, dict)
            else Petitioner.model_validate(personal["petitioner"]),
        )

    async def change(
        self,
        conn: asyncpg.Connection,
        matter_id: uuid.UUID,
        previous: MatterStatus | None,
        status: MatterStatus,
        unit: str | None,
        now: datetime,
        *,
        actor: str,
        action: str,
        rule: str | None = None,
        reason: str | None = None,
        opinion: Any = None,
        extension_days: int | None = None,
        reported_at: datetime | None = None,
    ) -> None:
        change = Change(
            matter_id, previous, status, unit, now, actor, action, rule, reason, opinion, extension_days, reported_at
        )
        await outbox.enqueue_many(conn, [await self._changed(conn, change)])

    async def _changed(self, conn: asyncpg.Connection, change: Change) -> Outgoing:
        """The matter moves to `change.status`: its row and history; returns its status event, to publish."""
        office = await conn.fetchval(
            "UPDATE matters SET status=$2, status_at=$3, updated_at=now() WHERE matter_id=$1 RETURNING office",
            change.matter_id,
            change.status.value,
            change.at,
        )
        return await self._recorded(conn, change, office)

    async def _recorded(self, conn: asyncpg.Connection, change: Change, office: str | None) -> Outgoing:
        """The history row of a change the matter's row already shows; returns its status event, to publish."""
        return (await self._record_many(conn, [(change, office)]))[0]

    @staticmethod
    async def _record_many(conn: asyncpg.Connection, changes: list[tuple[Change, str | None]]) -> list[Outgoing]:
        """The history rows of changes the matters' rows already show (with each matter's office), in one
        statement; returns their status events, to publish."""
        if not changes:
            return []
        rows = [
            (
                c.matter_id,
                c.at,
                c.actor,
                c.action,
                c.previous.value if c.previous else None,
                c.status.value,
                office,
                c.unit,
                c.rule,
                c.reason,
                c.reported_at,
            )
            for c, office in changes
        ]
        await conn.execute(
            "INSERT INTO history (matter_id, at, actor, action, from_status, to_status, office, unit, rule, reason,"
            " reported_at) SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],"
            " $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[])",
            *(list(column) for column in zip(*rows, strict=True)),
        )
        return [
            Outgoing(
                MATTERS_STATUS.name,
                str(c.matter_id),
                MatterStatusChanged(
                    matter_id=c.matter_id,
                    status=c.status,
                    previous_status=c.previous,
                    unit=c.unit,
                    at=c.at,
                    action=c.action,
                    opinion=c.opinion,
                    extension_days=c.extension_days,
                    office=Office(office) if office else None,
                    reason=c.reason,
                    reported_at=c.reported_at,
                    category=c.category,
                    rule=c.office_rule,
                ),
            )
            for c, office in changes
        ]

    async def _related(self, conn: asyncpg.Connection, matter_id: uuid.UUID | None, code: str | None) -> Any:
        """The matter a review contests: by the id intake resolved (v2), or by the code a registration drained
        from v1 named."""
        columns = "SELECT matter_id, unit, category, review_level FROM matters"
        if matter_id is not None:
            return await conn.fetchrow(f"{columns} WHERE matter_id=$1", matter_id)
        if code:
            return await conn.fetchrow(f"{columns} WHERE tracking_code=$1", normalise(code))
        return None
