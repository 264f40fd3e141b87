"""Routing a registered matter: category (given or inferred), office and unit by the rule book, then
matters.routed.v1, the unit's inbox message and matters.status.v1 through the outbox, in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from xinfang_shared import outbox
from xinfang_shared.contracts.events import (
    Location,
    MatterRegistered,
    MatterRouted,
    MatterStatus,
    MatterStatusChanged,
    Petitioner,
    UnitInboxMessage,
)
from xinfang_shared.contracts.reference import DEPARTMENT_FOR_CATEGORY, Category, Kind, Office
from xinfang_shared.contracts.topics import MATTERS_ROUTED, MATTERS_STATUS, unit_inbox_topic
from xinfang_shared.personal import PersonalDataVault
from xinfang_shared.tracking import normalise
from xinfang_shared.workdays import add_working_days

from .categories import CategoryInference
from .rules import RuleBook

CHINA = ZoneInfo("Asia/Shanghai")
REVIEW_LEVEL = {Kind.REVIEW_REQUEST: 1, Kind.RE_REVIEW_REQUEST: 2}


@dataclass(frozen=True)
class Placement:
    office: str
    unit: str | None
    office_rule: str
    unit_rule: str
    rules_version: str


class Router:
    def __init__(
        self,
        rulebook: RuleBook,
        inference: CategoryInference,
        vault: PersonalDataVault,
        *,
        acceptance_days: int,
        objection_working_days: int,
    ) -> None:
        self.rulebook = rulebook
        self.inference = inference
        self.vault = vault
        self.acceptance = timedelta(days=acceptance_days)
        self.objection_working_days = objection_working_days

    @staticmethod
    def facts(event: MatterRegistered, category: Category, in_sensitive_period: bool) -> dict[str, Any]:
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

    async def route_registered(self, conn: asyncpg.Connection, event: MatterRegistered, now: datetime) -> None:
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
            "related_tracking_code": event.related_tracking_code,
        }
        sealed = self.vault.seal(
            {
                "petitioner": event.petitioner.model_dump(mode="json"),
                "representatives": [r.model_dump(mode="json") for r in event.representatives],
            }
        )
        repeat = (
            MatterStatus.DUPLICATE
            if event.duplicate_of
            else (MatterStatus.NOT_ACCEPTED_AGAIN if event.not_accepted_again else None)
        )
        review_level = REVIEW_LEVEL.get(event.kind, 0)
        related = await self._related(conn, event.related_tracking_code) if review_level else None
        inserted = await conn.fetchval(
            "INSERT INTO matters (matter_id, tracking_code, kind, facts, details, personal_data, registered_at,"
            " status, category, category_inferred, category_confidence, needs_review, review_level,"
            " related_matter_id, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,'registered',$8,$9,$10,$11,$12,$13,$14)"
            " ON CONFLICT (matter_id) DO NOTHING RETURNING true",
            event.matter_id,
            event.tracking_code,
            event.kind.value,
            facts,
            details,
            sealed,
            event.registered_at,
            category.value,
            inferred,
            confidence,
            needs_review,
            review_level,
            related["matter_id"] if related else None,
            now,
        )
        if not inserted:
            return  # the same matter under another event id: routed already
        if repeat is not None:
            # Recorded, not routed (DOMAIN.md: repeats).
            await self.change(
                conn,
                event.matter_id,
                MatterStatus.REGISTERED,
                repeat,
                None,
                now,
                actor="routing",
                action="recorded-repeat",
                reason=str(event.duplicate_of or ""),
            )
            return
        placement = self._place(facts, related, review_level, rules.version)
        rules_used = f"{placement.office_rule}/{placement.unit_rule}"
        await conn.execute(
            "UPDATE matters SET office=$2, unit=$3, office_rule=$4, unit_rule=$5, rules_version=$6 WHERE matter_id=$1",
            event.matter_id,
            placement.office,
            placement.unit,
            placement.office_rule,
            placement.unit_rule,
            placement.rules_version,
        )
        routed = MatterRouted(
            matter_id=event.matter_id,
            office=Office(placement.office),
            unit=placement.unit,
            category=category,
            category_inferred=inferred,
            rule=placement.office_rule,
            routed_at=now,
        )
        await outbox.enqueue(conn, MATTERS_ROUTED.name, routed, key=str(event.matter_id))
        await self.assign(
            conn,
            event.matter_id,
            placement.unit,
            now,
            actor="routing",
            action="routed",
            rule=rules_used,
            reason=None,
            previous=MatterStatus.REGISTERED,
        )

    def _place(self, facts: dict[str, Any], related: Any, review_level: int, version: str) -> Placement:
        decision = self.rulebook.current.decide(facts)
        if not review_level:
            return Placement(decision.office, decision.unit, decision.office_rule, decision.unit_rule, version)
        # Review: one level above the unit that handled the earlier matter.
        earlier_unit = related["unit"] if related else None
        if earlier_unit and earlier_unit.startswith("city-"):
            department = DEPARTMENT_FOR_CATEGORY.get(Category(related["category"] or "other"))
            if department:
                return Placement(
                    decision.office, department, decision.office_rule, "review-city-to-department", version
                )
        # A department's matter (or one without a unit) is reviewed by the Supervision and Review Office itself.
        return Placement(decision.office, None, decision.office_rule, "review-by-office", version)

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
        status = MatterStatus.TRANSFERRED if unit else MatterStatus.AWAITING_ASSIGNMENT
        row = await conn.fetchrow(
            "UPDATE matters SET unit=$2, status=$3, transferred_at=$4, updated_at=$4 WHERE matter_id=$1"
            " RETURNING office, tracking_code, kind, category, details, personal_data",
            matter_id,
            unit,
            status.value,
            now,
        )
        if unit is not None:
            await outbox.enqueue(
                conn, unit_inbox_topic(unit), self._inbox_message(matter_id, unit, row, now), key=str(matter_id)
            )
        await self.change(
            conn,
            matter_id,
            previous,
            status,
            unit,
            now,
            actor=actor,
            action=action,
            rule=rule,
            reason=reason,
        )

    def objection_ends(self, transferred_at: datetime) -> datetime:
        return add_working_days(transferred_at, self.objection_working_days)

    def _inbox_message(self, matter_id: uuid.UUID, unit: str, row: Any, now: datetime) -> UnitInboxMessage:
        details = row["details"]
        personal = self.vault.open(bytes(row["personal_data"])) if row["personal_data"] else {}
        accusation = row["kind"] == Kind.ACCUSATION
        return UnitInboxMessage(
            type="assign" if row["office"] == Office.SUPERVISION else "transfer",
            matter_id=matter_id,
            unit=unit,
            office=Office(row["office"]),
            tracking_code=row["tracking_code"],
            respond_by={"acceptance": now + self.acceptance, "objection": self.objection_ends(now)},
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
    ) -> None:
        office = await conn.fetchval(
            "UPDATE matters SET status=$2, updated_at=$3 WHERE matter_id=$1 RETURNING office",
            matter_id,
            status.value,
            now,
        )
        await conn.execute(
            "INSERT INTO history (matter_id, at, actor, action, from_status, to_status, office, unit, rule, reason)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
            matter_id,
            now,
            actor,
            action,
            previous.value if previous else None,
            status.value,
            office,
            unit,
            rule,
            reason,
        )
        event = MatterStatusChanged(
            matter_id=matter_id,
            status=status,
            previous_status=previous,
            unit=unit,
            at=now,
            action=action,
            opinion=opinion,
            extension_days=extension_days,
            office=Office(office) if office else None,
        )
        await outbox.enqueue(conn, MATTERS_STATUS.name, event, key=str(matter_id))

    async def _related(self, conn: asyncpg.Connection, code: str | None) -> Any:
        if not code:
            return None
        return await conn.fetchrow(
            "SELECT matter_id, unit, category, review_level FROM matters WHERE tracking_code=$1", normalise(code)
        )
