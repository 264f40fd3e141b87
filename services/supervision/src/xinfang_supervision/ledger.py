"""The deadline ledger: every statutory deadline of every matter, opened, met, extended, paused and resumed as
the lifecycle events arrive. Pure: a `Book` holds the deadlines of the matters in hand (loaded by `store`),
each event changes them in memory and notes what it published, and `store` writes the changed rows, their
history and their events in the caller's transaction, one statement per table for a whole batch. So a
deadline's state and its events never disagree, and a batch of a hundred changes costs a handful of statements.

Which event does what (DOMAIN.md, lifecycle and deadlines):
  registered              → routing opens (not for a repeat: it is never routed)
  transferred             → routing met; acceptance and objection open for the unit (a new unit: new round)
  awaiting-assignment     → the previous unit's acceptance and objection close; routing stays open
  objected                → objection met; acceptance closes
  accepted / in-review / in-re-review (from transferred)
                          → acceptance met, objection closes; handling / review / re-review opens
  not-accepted            → acceptance met, objection closes
  concluded / review-concluded / re-review-concluded
                          → handling / review / re-review met; after the first two the petitioner's window
                            to ask one level up opens (published as `review` / `re-review` on this matter)
  review-requested / re-review-requested
                          → that window met (the request came in it)
  extension-requested     → the running handling deadline extended, or the request refused with a reason
  closed, terminated, duplicate, not-accepted-again
                          → whatever is still open closes
Every deadline that ends without being met (a window that lapses, a deadline closed by termination or
reassignment) is published as `closed`. Besides the events, the API pauses and resumes a deadline for a hearing,
and an office's head (or an operator) extends one where its rule allows (`Book.grant`), as a unit's is.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson

from xinfang_shared import outbox
from xinfang_shared.contracts.events import DeadlineEvent, FeedbackRejected, FieldError, MatterStatusChanged
from xinfang_shared.contracts.reference import UNITS, DeadlineState, DeadlineType, Office
from xinfang_shared.contracts.topics import (
    DEADLINE_WARNINGS,
    DEADLINES_EVENTS,
    FEEDBACK_REJECTED,
    unit_feedback_rejected_topic,
)
from xinfang_shared.deadlines import DeadlineRule, DeadlineRules

from .history import HistoryRow
from .statuses import CONCLUSION_MEETS, DECIDING_OPENS, ENDS_EVERYTHING, REQUEST_MEETS, REQUEST_OPENS, S

D = DeadlineType
CLOSED = DeadlineState.CLOSED.value  # a window that lapsed, or a deadline that no longer applies
EXTENSIBLE = (D.HANDLING, D.REVIEW, D.RE_REVIEW)


@dataclass(frozen=True)
class RegisteredFacts:
    """What supervision reads of a registration (no petitioner, no tracking code: it holds no key to them)."""

    matter_id: uuid.UUID
    registered_at: datetime
    repeat: bool


class Refusal(Exception):
    """An operator's request that cannot be done; `code` is the HTTP answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class DeadlineRow:
    """One row of the deadlines table, as the ledger changes it (the columns but updated_at)."""

    matter_id: uuid.UUID
    deadline: str
    unit: str | None
    state: str
    stage: str
    open: bool
    round: int
    started_at: datetime
    due_at: datetime
    warn_at: datetime | None
    escalate_at: datetime | None
    next_check_at: datetime | None
    met_at: datetime | None
    overdue_at: datetime | None
    escalated_at: datetime | None
    extensions: int
    extended_days: int
    paused_at: datetime | None
    paused_total: timedelta
    is_window: bool

    def end_pause(self, at: datetime) -> None:
        """Met or closed during a pause: the pause ends there, and its time does not count against the deadline."""
        if self.paused_at is not None:
            paused = at - self.paused_at
            self.due_at += paused
            self.paused_total += paused
            self.paused_at = None


ROW_COLUMNS = tuple(f.name for f in fields(DeadlineRow))


class Entry(NamedTuple):
    """One state a deadline reached: its history row and its event are both made of it."""

    matter: uuid.UUID
    deadline: D
    state: DeadlineState
    due: datetime
    unit: str | None
    at: datetime
    round: int
    on_time: bool | None = None
    detail: str | None = None
    window: bool = False
    extension: tuple[int, str | None] | None = None


class Book:
    """The deadlines of the matters in hand, changed in memory in the order of the events; what changed and what
    to publish are kept for `store.save`. Every read and write of a deadline in a batch goes through here, so an
    event sees what the events before it in the batch did."""

    def __init__(self, rules: DeadlineRules, rows: list[DeadlineRow], offices: dict[uuid.UUID, str | None]) -> None:
        self.rules = rules
        self.rows = {(r.matter_id, r.deadline): r for r in rows}
        self.offices = offices  # each matter's office as stored, once known
        self.changed: dict[tuple[uuid.UUID, str], DeadlineRow] = {}
        self.entries: list[Entry] = []
        self.history: list[HistoryRow] = []  # written with the entries' rows: refusals of an extension
        self.refusals: list[outbox.Outgoing] = []

    # ---- lifecycle events -------------------------------------------------------------------------------

    def registered(self, facts: RegisteredFacts, shift: timedelta) -> None:
        # A repeat is never routed. The transfer may have been read first (the topics are read independently):
        # then routing stays as it is.
        if not facts.repeat and self._row(facts.matter_id, D.ROUTING) is None:
            self.open(facts.matter_id, D.ROUTING, None, facts.registered_at + shift)

    def status_changed(self, event: MatterStatusChanged, shift: timedelta) -> None:
        at = event.at + shift
        if event.action == "extension-requested":
            self.extend(event.matter_id, event.unit, event.extension_days or 0, at, reason=event.reason)
        elif event.action != "received":
            self._follow(event, at)

    def _follow(self, event: MatterStatusChanged, at: datetime) -> None:
        """What the lifecycle change does to the matter's deadlines (the table in this module's docstring)."""
        matter, unit, status = event.matter_id, event.unit, event.status
        if status == S.TRANSFERRED:
            if not self.meet(matter, D.ROUTING, at) and self._row(matter, D.ROUTING) is None:
                # Read before its registration: the routing deadline is taken to start at the transfer.
                self.open(matter, D.ROUTING, None, at)
                self.meet(matter, D.ROUTING, at)
            for deadline in (D.ACCEPTANCE, D.OBJECTION):
                self.open(matter, deadline, unit, at)
        elif status == S.AWAITING_ASSIGNMENT:
            for deadline in (D.ACCEPTANCE, D.OBJECTION):
                self.close(matter, deadline, at, "back to the office's queue")
            # Unseen registration, or back in the queue after an objection (routing was met): it must be
            # assigned (again), in time.
            routing = self._row(matter, D.ROUTING)
            if routing is None or not routing.open:
                self.open(matter, D.ROUTING, None, at)
        elif status == S.OBJECTED:
            self.meet(matter, D.OBJECTION, at)
            self.close(matter, D.ACCEPTANCE, at, "objected")
        elif status in DECIDING_OPENS and event.previous_status == S.TRANSFERRED:
            self.meet(matter, D.ACCEPTANCE, at)
            self.close(matter, D.OBJECTION, at, "accepted")
            self.open(matter, DECIDING_OPENS[status], unit, at)
        elif status == S.NOT_ACCEPTED:
            self.meet(matter, D.ACCEPTANCE, at)
            self.close(matter, D.OBJECTION, at, "not accepted")
        elif status in CONCLUSION_MEETS:
            self.meet(matter, CONCLUSION_MEETS[status], at)
            if status in REQUEST_OPENS:
                window = REQUEST_OPENS[status]
                self.open(matter, window, unit, at, rule=self.rules.request_window(window))
        elif status in REQUEST_MEETS:
            self.meet(matter, REQUEST_MEETS[status], at)
        elif status in ENDS_EVERYTHING:
            for deadline in D:
                self.close(matter, deadline, at, status.value)

    # ---- extension, pause, resume ---------------------------------------------------------------------

    def extend(
        self, matter: uuid.UUID, unit: str | None, days: int, at: datetime, *, reason: str | None = None
    ) -> None:
        """Grant the unit's extension of the running handling deadline, or refuse it on
        units.feedback.rejected.v1 with the reason."""
        row = next(
            (r for d in EXTENSIBLE if (r := self._row(matter, d)) is not None and r.open and not r.is_window), None
        )
        problem = self._extension_problem(row, days, at)
        if problem is not None:
            self._refuse_extension(matter, unit, days, problem, at)
            return
        assert row is not None
        self._extended(row, days, at, reason)

    def grant(self, matter: uuid.UUID, deadline: D, days: int, at: datetime, reason: str, *, by: str) -> None:
        """The office's head (or an operator, `by`) extends a running deadline where its rule allows, as a unit's
        extension is granted (the same event, which tells the petitioner why); the history names who. Raises
        Refusal: 404 no such deadline, 409 not extensible (now), 422 more days than its rule allows."""
        row = self._running(matter, deadline)
        problem = self._not_extensible(row) or self._too_late(row, at)
        if problem is not None:
            raise Refusal(409, problem)
        if (too_long := self._bad_days(row, days)) is not None:
            raise Refusal(422, too_long)
        self._extended(row, days, at, reason, detail=f"{by}: {reason}")

    def _extended(
        self, row: DeadlineRow, days: int, at: datetime, reason: str | None, *, detail: str | None = None
    ) -> None:
        deadline = D(row.deadline)
        rule = self.rules[deadline]
        row.due_at = rule.extended(row.due_at, days)
        row.warn_at = rule.warn_at(row.started_at, row.due_at)
        row.escalate_at = rule.escalate_at(row.due_at)
        row.stage, row.next_check_at = _stage_after_move(row.stage, at, row.warn_at, row.due_at, row.escalate_at)
        row.state, row.round = DeadlineState.EXTENDED.value, row.round + 1
        row.extensions += 1
        row.extended_days += days
        self._note(row, DeadlineState.EXTENDED, at, detail=detail, extension=(days, reason))

    def _extension_problem(self, row: DeadlineRow | None, days: int, at: datetime) -> str | None:
        if row is None:
            return "no handling deadline is running for this matter"
        return self._not_extensible(row) or self._bad_days(row, days) or self._too_late(row, at)

    def _not_extensible(self, row: DeadlineRow) -> str | None:
        deadline = D(row.deadline)
        rule = self.rules[deadline]
        if rule.max_extensions == 0 or row.is_window:
            return f"the {deadline.value} deadline cannot be extended"
        if row.extensions >= rule.max_extensions:
            return (
                f"the {deadline.value} deadline was already extended ({row.extended_days} days);"
                f" at most {rule.max_extensions} extension(s) are granted"
            )
        return None

    def _bad_days(self, row: DeadlineRow, days: int) -> str | None:
        most = self.rules[D(row.deadline)].max_extension_days
        return None if 1 <= days <= most else f"an extension of 1 to {most} days may be granted, not {days}"

    @staticmethod
    def _too_late(row: DeadlineRow, at: datetime) -> str | None:
        if row.paused_at is None and at > row.due_at:
            return f"the {row.deadline} deadline passed at {row.due_at.isoformat()}; ask before it passes"
        return None

    def _refuse_extension(self, matter: uuid.UUID, unit: str | None, days: int, problem: str, at: datetime) -> None:
        request = {"matter_id": str(matter), "unit": unit, "action": "extension-requested", "extension_days": days}
        refusal = FeedbackRejected(
            matter_id=matter,
            unit=unit,
            errors=[FieldError(field="extension_days", message=problem)],
            raw=orjson.dumps(request).decode(),
        )
        # To the unit that asked (its own topic); an extension asked in an operator's name on the shared topic
        # reaches the unit the matter is with all the same: it is that unit's deadline.
        topic = unit_feedback_rejected_topic(unit) if unit in UNITS else FEEDBACK_REJECTED.name
        self.refusals.append(outbox.Outgoing(topic, str(matter), refusal))
        # In the history of the handling deadline (a running one first), if the matter has one at all.
        candidates = [r for d in EXTENSIBLE if (r := self._row(matter, d)) is not None]
        if candidates:
            row = max(candidates, key=lambda r: r.open)
            self.history.append(
                (matter, row.deadline, row.round, "extension-refused", row.due_at, row.unit, at, problem)
            )

    def pause(self, matter: uuid.UUID, deadline: D, at: datetime, why: str) -> None:
        row = self._running(matter, deadline)
        if not self.rules[deadline].pausable or row.is_window:
            raise Refusal(409, f"the {deadline.value} deadline cannot be paused (its rule is not pausable)")
        if row.paused_at is not None:
            raise Refusal(409, f"the {deadline.value} deadline is already paused since {row.paused_at.isoformat()}")
        if row.stage in ("overdue", "escalated"):
            raise Refusal(409, f"the {deadline.value} deadline passed at {row.due_at.isoformat()}: too late to pause")
        row.paused_at, row.next_check_at, row.state = at, None, DeadlineState.PAUSED.value
        self._note(row, DeadlineState.PAUSED, at, detail=why)

    def resume(self, matter: uuid.UUID, deadline: D, at: datetime, why: str) -> None:
        """The paused time is not counted: every time of the deadline moves by it."""
        row = self._running(matter, deadline)
        if row.paused_at is None:
            raise Refusal(409, f"the {deadline.value} deadline is not paused")
        paused = max(at - row.paused_at, timedelta(0))
        row.due_at += paused
        row.warn_at = row.warn_at + paused if row.warn_at else None
        row.escalate_at = row.escalate_at + paused if row.escalate_at else None
        row.stage, row.next_check_at = _stage_after_move(row.stage, at, row.warn_at, row.due_at, row.escalate_at)
        row.paused_at, row.paused_total = None, row.paused_total + paused
        row.state, row.round = DeadlineState.RESUMED.value, row.round + 1
        self._note(row, DeadlineState.RESUMED, at, detail=why)

    def _running(self, matter: uuid.UUID, deadline: D) -> DeadlineRow:
        row = self._row(matter, deadline)
        if row is None:
            raise Refusal(404, f"matter {matter} has no {deadline.value} deadline")
        if not row.open:
            raise Refusal(409, f"the {deadline.value} deadline is no longer running (it is {row.state})")
        return row

    # ---- building blocks --------------------------------------------------------------------------------

    def _row(self, matter: uuid.UUID, deadline: D) -> DeadlineRow | None:
        return self.rows.get((matter, deadline.value))

    def _note(self, row: DeadlineRow, state: DeadlineState, at: datetime, **extra: Any) -> None:
        """Row changed and state reached: the row is to be written, the state recorded and published."""
        self.changed[(row.matter_id, row.deadline)] = row
        self.entries.append(
            Entry(
                row.matter_id,
                D(row.deadline),
                state,
                row.due_at,
                row.unit,
                at,
                row.round,
                window=row.is_window,
                **extra,
            )
        )

    def open(
        self,
        matter: uuid.UUID,
        deadline: D,
        unit: str | None,
        start: datetime,
        *,
        rule: DeadlineRule | None = None,
    ) -> None:
        """Start the deadline (by its rule, or the window `rule` given); one already running for another unit
        (or an earlier round) is closed first."""
        rule = rule or self.rules[deadline]
        previous = self._row(matter, deadline)
        if previous is not None and previous.open:
            self.close(matter, deadline, start, "started again")
        due = rule.due(start)
        warn = rule.warn_at(start, due)
        escalate = rule.escalate_at(due)
        row = DeadlineRow(
            matter_id=matter,
            deadline=deadline.value,
            unit=unit,
            state=DeadlineState.SET.value,
            stage="set",
            open=True,
            round=previous.round + 1 if previous is not None else 1,
            started_at=start,
            due_at=due,
            warn_at=warn,
            escalate_at=escalate,
            next_check_at=next_check("set", warn, due, escalate),
            met_at=None,
            overdue_at=None,
            escalated_at=None,
            extensions=0,
            extended_days=0,
            paused_at=None,
            paused_total=timedelta(0),
            is_window=not rule.obligation,
        )
        self.rows[(matter, deadline.value)] = row
        self._note(row, DeadlineState.SET, start)

    def meet(self, matter: uuid.UUID, deadline: D, at: datetime) -> bool:
        """The deadline met at `at`, if it is running; whether it was."""
        row = self._row(matter, deadline)
        if row is None or not row.open:
            return False
        row.end_pause(at)
        row.state, row.open, row.met_at, row.next_check_at = DeadlineState.MET.value, False, at, None
        # A window used is not a duty met: it counts in no on-time figure.
        self._note(row, DeadlineState.MET, at, on_time=None if row.is_window else at <= row.due_at)
        return True

    def close(self, matter: uuid.UUID, deadline: D, at: datetime, why: str) -> None:
        """The deadline ends unmet, if it is running."""
        row = self._row(matter, deadline)
        if row is None or not row.open:
            return
        row.end_pause(at)
        row.state, row.open, row.next_check_at = CLOSED, False, None
        self._note(row, DeadlineState.CLOSED, at, detail=why)

    # ---- what is written ----------------------------------------------------------------------------------

    def history_rows(self) -> list[HistoryRow]:
        noted = [
            (e.matter, e.deadline.value, e.round, e.state.value, e.due, e.unit, e.at, e.detail) for e in self.entries
        ]
        return noted + self.history

    def outgoing(self) -> list[outbox.Outgoing]:
        """The deadline events in the order they happened (a matter's in its order), then the refusals."""
        events = [
            DeadlineEvent(
                matter_id=e.matter,
                office=Office(office) if (office := self.offices.get(e.matter)) else None,
                deadline=e.deadline,
                state=e.state,
                due_at=e.due,
                unit=e.unit,
                at=e.at,
                on_time=e.on_time,
                window=e.window,
                extension_days=e.extension[0] if e.extension else None,
                reason=e.extension[1] if e.extension else None,
            )
            for e in self.entries
        ]
        return [record for event in events for record in deadline_records(event)] + self.refusals


def deadline_records(event: DeadlineEvent) -> list[outbox.Outgoing]:
    """Where a deadline event is published: deadlines.events.v1 always, deadlines.warnings.v1 as well when
    someone acts on it (the same event, the same event_id)."""
    key = str(event.matter_id)
    records = [outbox.Outgoing(DEADLINES_EVENTS.name, key, event)]
    if event.is_warning:
        records.append(outbox.Outgoing(DEADLINE_WARNINGS.name, key, event))
    return records


def next_check(stage: str, warn: datetime | None, due: datetime, escalate: datetime | None) -> datetime | None:
    """When the scheduler must next look at a running deadline in `stage`."""
    if warn is None:  # a window: looked at once more, when it lapses
        return due if stage == "set" else None
    return {"set": warn, "due-soon": due, "overdue": escalate}.get(stage)


def _stage_after_move(
    stage: str, now: datetime, warn: datetime | None, due: datetime, escalate: datetime | None
) -> tuple[str, datetime | None]:
    """Where the scheduler resumes after the due time moved later (an extension, a resume): before the new
    warning time it starts over (and warns again for the new due time); otherwise it goes on from its stage."""
    if warn is not None and now < warn:
        stage = "set"
    return stage, next_check(stage, warn, due, escalate)
