"""Which event gives which notice to whom (DOMAIN.md, Notices): pure functions of the event, no I/O.

Each returns the notices planned (`Planned`): the notice, its recipient, what of the matter it is about when
one matter can give several (a unit, a deadline's due time), and the template's parameters: facts of the
event only, never anyone's personal data (the petitioner's address is looked up when it is sent).

  matters.registered.v2   receipt, or repeat (duplicate of an open matter, or not accepted again)
  matters.status.v1       urgent-visit to guidance (routed by the special-visit rule: massive, unusual, to
                          Beijing, sensitive), transferred (per unit), accepted, not-accepted, opinion (with the
                          window to ask one level up), terminated (once, on the re-review that ends the chain)
  deadlines.warnings.v1   extended (to the petitioner), due-soon / overdue (to the unit; never for a window),
                          escalated (to the Supervision and Review Office)
  stats.alerts.v1         surge to guidance (when an alert opens)
  stats.reports.v1        report to the general office and each of the bureau's leaders (the PDF attached)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from xinfang_shared.contracts.events import (
    DeadlineEvent,
    MatterRegisteredV2,
    MatterStatus,
    MatterStatusChanged,
    StatsAlert,
    StatsReport,
)
from xinfang_shared.contracts.reference import DeadlineState, DeadlineType, Office
from xinfang_shared.deadlines import DeadlineRules

from .registry import Notice, NoticeRule, RecipientKind

S = MatterStatus
_KEYS = uuid.UUID("1c4f6f2e-8a7d-4b8e-9f3a-2d6b5c1e7a90")
SPECIAL_VISIT_RULE = "office-4-special-visit"
# The opinion at each level, and the window it opens to ask one level up (none after a re-review: final).
OPINIONS = {
    S.CONCLUDED: ("handling", DeadlineType.REVIEW),
    S.REVIEW_CONCLUDED: ("review", DeadlineType.RE_REVIEW),
    S.RE_REVIEW_CONCLUDED: ("re-review", None),
}
ACCEPTED = {S.ACCEPTED, S.IN_REVIEW, S.IN_RE_REVIEW}


@dataclass(frozen=True)
class Planned:
    matter_id: uuid.UUID
    notice: Notice
    recipient_kind: RecipientKind
    recipient: str
    urgent: bool
    about: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> uuid.UUID:
        """The idempotency key of this notice to this recipient: Message-ID, OutId."""
        return uuid.uuid5(_KEYS, f"{self.matter_id}|{self.notice}|{self.recipient}|{self.about}")


class Rules:
    def __init__(
        self, table: dict[Notice, NoticeRule], deadlines: DeadlineRules, leaders: tuple[str, ...] = ()
    ) -> None:
        self.table = table
        self.deadlines = deadlines
        self.leaders = leaders  # the contact registry's leaders, for the notices that go to them too

    def _plan(
        self, matter_id: uuid.UUID, notice: Notice, *, unit: str | None = None, about: str = "", **params: Any
    ) -> list[Planned]:
        rule = self.table[notice]
        if rule.to == RecipientKind.UNIT:
            if unit is None:
                return []
            recipient = unit
        elif rule.to == RecipientKind.OFFICE:
            assert rule.office is not None
            recipient = rule.office
        else:
            recipient = RecipientKind.PETITIONER.value
        planned = [Planned(matter_id, notice, rule.to, recipient, rule.urgent, about, _json(params))]
        if rule.leaders:
            planned += [
                Planned(matter_id, notice, RecipientKind.LEADER, leader, rule.urgent, about, _json(params))
                for leader in self.leaders
            ]
        return planned

    def registered(self, e: MatterRegisteredV2) -> list[Planned]:
        if e.duplicate_of is not None or e.not_accepted_again:
            repeat = "duplicate" if e.duplicate_of is not None else "not-accepted-again"
            earlier = str(e.duplicate_of) if e.duplicate_of else None
            return self._plan(e.matter_id, Notice.REPEAT, repeat=repeat, earlier_id=earlier, at=e.registered_at)
        return self._plan(e.matter_id, Notice.RECEIPT, at=e.registered_at)

    def status(self, e: MatterStatusChanged) -> list[Planned]:
        # The change a matter is routed by names the rule (notify does not read matters.routed.v1).
        if e.action == "routed" and e.office == Office.GUIDANCE and e.rule == SPECIAL_VISIT_RULE:
            return self._plan(e.matter_id, Notice.URGENT_VISIT, at=e.at) + self._status(e)
        return self._status(e)

    def _status(self, e: MatterStatusChanged) -> list[Planned]:
        if e.status == S.TRANSFERRED and e.unit:
            # Told of each unit that gets the matter (a reassignment is news); of one unit once.
            return self._plan(e.matter_id, Notice.TRANSFERRED, about=e.unit, unit_code=e.unit, at=e.at)
        if e.status in ACCEPTED and e.action == "accepted":
            return self._plan(e.matter_id, Notice.ACCEPTED, about=e.status.value, unit_code=e.unit, at=e.at)
        if e.status == S.NOT_ACCEPTED:
            return self._plan(e.matter_id, Notice.NOT_ACCEPTED, unit_code=e.unit, at=e.at, reason=e.reason or "")
        if e.status in OPINIONS and e.opinion is not None:
            level, window = OPINIONS[e.status]
            until = self.deadlines.request_window(window).due(e.at) if window else None
            return self._plan(
                e.matter_id,
                Notice.OPINION,
                about=level,
                unit_code=e.unit,
                at=e.at,
                level=level,
                result=e.opinion.result.value,
                opinion=e.opinion.text,
                request_until=until,
            )
        if e.status == S.TERMINATED and e.previous_status == S.RE_REVIEW_CONCLUDED:
            return self._plan(e.matter_id, Notice.TERMINATED, at=e.at)
        return []

    def deadline(self, e: DeadlineEvent) -> list[Planned]:
        due = e.due_at.isoformat()
        common: dict[str, Any] = {"deadline": e.deadline.value, "due_at": e.due_at, "office": e.office, "at": e.at}
        if e.state == DeadlineState.EXTENDED:
            return self._plan(
                e.matter_id, Notice.EXTENDED, about=due, days=e.extension_days, reason=e.reason or "", **common
            )
        if e.window:
            return []  # a window binds nobody: nobody is urged about it
        if e.state == DeadlineState.DUE_SOON:
            return self._plan(e.matter_id, Notice.DUE_SOON, unit=e.unit, about=f"{e.deadline}@{due}", **common)
        if e.state == DeadlineState.OVERDUE:
            return self._plan(e.matter_id, Notice.OVERDUE, unit=e.unit, about=f"{e.deadline}@{due}", **common)
        if e.state == DeadlineState.ESCALATED:
            return self._plan(e.matter_id, Notice.ESCALATED, about=f"{e.deadline}@{due}", unit_code=e.unit, **common)
        return []

    def alert(self, e: StatsAlert) -> list[Planned]:
        if getattr(e, "state", "open") != "open":
            return []
        alert_id = getattr(e, "alert_id", None) or e.event_id
        return self._plan(
            alert_id,
            Notice.SURGE,
            at=e.at,
            region_code=e.region_code,
            category=e.category.value if e.category else None,
            window=e.window,
            observed=e.observed,
            baseline=e.baseline,
            method=getattr(e, "method", "") or "",
        )

    def report(self, e: StatsReport) -> list[Planned]:
        """The report's notice, keyed by the report (one per recipient whatever the redeliveries)."""
        return self._plan(
            e.report_id,
            Notice.REPORT,
            report_id=str(e.report_id),
            period_start=str(e.period_start),
            period_end=str(e.period_end),
            language=e.language.value,
            pages=e.pages,
        )


def _json(params: dict[str, Any]) -> dict[str, Any]:
    """Template parameters as JSON values (times as RFC 3339)."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in params.items()}
