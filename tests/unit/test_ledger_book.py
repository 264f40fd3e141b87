"""Supervision's ledger decides in memory (ledger.Book) what a batch of lifecycle events does to the matters'
deadlines; store.py only loads and writes. These tests drive the Book without a database: a matter's events in
one batch see what the events before them did, and a batch gives what the same events give one at a time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from xinfang_shared.contracts.events import MatterStatus, MatterStatusChanged
from xinfang_shared.contracts.reference import DeadlineState, DeadlineType
from xinfang_shared.contracts.topics import DEADLINE_WARNINGS, DEADLINES_EVENTS, unit_feedback_rejected_topic
from xinfang_shared.deadlines import DeadlineRules
from xinfang_supervision.ledger import Book, Refusal, RegisteredFacts

RULES = DeadlineRules.default()
D, S, St = DeadlineType, MatterStatus, DeadlineState
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
UNIT = "city-5101"
NO_SHIFT = timedelta(0)


def change(matter: uuid.UUID, previous: S | None, status: S, hours: float, **fields: object) -> MatterStatusChanged:
    return MatterStatusChanged(
        matter_id=matter,
        previous_status=previous,
        status=status,
        unit=UNIT,
        at=T0 + timedelta(hours=hours),
        office="general",
        **fields,  # type: ignore[arg-type]
    )


def lifecycle(matter: uuid.UUID) -> list[MatterStatusChanged]:
    return [
        change(matter, None, S.TRANSFERRED, 1, action="routed"),
        change(matter, S.TRANSFERRED, S.ACCEPTED, 2, action="accepted"),
        change(matter, S.ACCEPTED, S.ACCEPTED, 3, action="extension-requested", extension_days=10),
        change(matter, S.ACCEPTED, S.CONCLUDED, 4, action="concluded"),
    ]


def states(book: Book) -> list[tuple[str, str]]:
    return [(e.deadline.value, e.state.value) for e in book.entries]


def test_a_matters_events_in_one_batch_see_each_other_and_equal_them_one_at_a_time() -> None:
    matter = uuid.uuid4()
    batch = Book(RULES, [], {matter: "general"})
    batch.registered(RegisteredFacts(matter, T0, repeat=False), NO_SHIFT)
    for event in lifecycle(matter):
        batch.status_changed(event, NO_SHIFT)

    assert states(batch) == [
        ("routing", "set"),
        ("routing", "met"),
        ("acceptance", "set"),
        ("objection", "set"),
        ("acceptance", "met"),
        ("objection", "closed"),
        ("handling", "set"),
        ("handling", "extended"),
        ("handling", "met"),
        ("review", "set"),  # the petitioner's window to ask for a review
    ]
    handling = batch.rows[(matter, "handling")]
    assert (handling.state, handling.open, handling.round, handling.extended_days) == ("met", False, 2, 10)
    # Every deadline touched is written once, as the batch left it.
    assert sorted(d for _, d in batch.changed) == ["acceptance", "handling", "objection", "review", "routing"]

    # The same events, each in a book of its own loaded with what the one before wrote.
    rows: list = []
    one_by_one: list[tuple[str, str]] = []
    steps = [lambda b: b.registered(RegisteredFacts(matter, T0, repeat=False), NO_SHIFT)]
    steps += [lambda b, e=e: b.status_changed(e, NO_SHIFT) for e in lifecycle(matter)]
    for step in steps:
        book = Book(RULES, rows, {matter: "general"})
        step(book)
        one_by_one += states(book)
        rows = list(book.rows.values())
    assert one_by_one == states(batch)
    assert batch.history_rows() == [
        (matter, e.deadline.value, e.round, e.state.value, e.due, e.unit, e.at, e.detail) for e in batch.entries
    ]


def test_events_go_out_in_order_with_the_office_and_warnings_twice() -> None:
    matter = uuid.uuid4()
    book = Book(RULES, [], {matter: "general"})
    for event in lifecycle(matter)[:2]:
        book.status_changed(event, NO_SHIFT)
    book.status_changed(change(matter, S.ACCEPTED, S.TERMINATED, 5), NO_SHIFT)
    out = book.outgoing()
    assert [(r.topic, r.event.state.value, r.event.deadline.value) for r in out] == [  # type: ignore[union-attr]
        (DEADLINES_EVENTS.name, "set", "routing"),  # read before the registration: starts at the transfer
        (DEADLINES_EVENTS.name, "met", "routing"),
        (DEADLINES_EVENTS.name, "set", "acceptance"),
        (DEADLINES_EVENTS.name, "set", "objection"),
        (DEADLINES_EVENTS.name, "met", "acceptance"),
        (DEADLINES_EVENTS.name, "closed", "objection"),
        (DEADLINE_WARNINGS.name, "closed", "objection"),  # a window ended: routing and notify are told
        (DEADLINES_EVENTS.name, "set", "handling"),
        (DEADLINES_EVENTS.name, "closed", "handling"),  # terminated
    ]
    assert {r.key for r in out} == {str(matter)}
    assert {r.event.office.value for r in out} == {"general"}  # type: ignore[union-attr]


def test_a_refused_extension_goes_to_the_unit_and_into_the_handling_deadlines_history() -> None:
    matter = uuid.uuid4()
    book = Book(RULES, [], {matter: None})
    book.status_changed(
        change(matter, S.TRANSFERRED, S.ACCEPTED, 1, action="extension-requested", extension_days=5), NO_SHIFT
    )
    # No handling deadline at all: refused, and no deadline's history to write it in.
    assert [r.topic for r in book.refusals] == [unit_feedback_rejected_topic(UNIT)]
    assert book.history_rows() == [] and book.changed == {}

    for event in lifecycle(matter)[:3]:  # transferred, accepted, extended by 10 days
        book.status_changed(event, NO_SHIFT)
    book.status_changed(
        change(matter, S.ACCEPTED, S.ACCEPTED, 5, action="extension-requested", extension_days=5), NO_SHIFT
    )
    refused = book.history_rows()[-1]
    assert refused[1:4] == ("handling", 2, "extension-refused")
    assert "already extended (10 days)" in (refused[7] or "")
    assert len(book.refusals) == 2 and book.rows[(matter, "handling")].extended_days == 10


def test_met_during_a_pause_the_paused_time_does_not_count() -> None:
    matter = uuid.uuid4()
    book = Book(RULES, [], {matter: "review"})
    book.status_changed(change(matter, None, S.TRANSFERRED, 0, action="routed"), NO_SHIFT)
    book.status_changed(change(matter, S.TRANSFERRED, S.IN_RE_REVIEW, 1), NO_SHIFT)
    re_review = book.rows[(matter, "re-review")]
    due = re_review.due_at
    with pytest.raises(Refusal) as not_pausable:
        book.pause(matter, D.ACCEPTANCE, T0, "hearing")
    assert not_pausable.value.code == 409
    with pytest.raises(Refusal) as absent:
        book.pause(matter, D.HANDLING, T0, "hearing")
    assert absent.value.code == 404

    book.pause(matter, D.RE_REVIEW, T0 + timedelta(days=2), "hearing")
    assert re_review.next_check_at is None and re_review.state == "paused"
    book.status_changed(change(matter, S.IN_RE_REVIEW, S.RE_REVIEW_CONCLUDED, 24 * 12), NO_SHIFT)
    assert re_review.due_at == due + timedelta(days=10) and re_review.paused_at is None
    assert re_review.paused_total == timedelta(days=10)
    met = book.entries[-1]
    assert (met.deadline, met.state, met.due) == (D.RE_REVIEW, St.MET, due + timedelta(days=10))


def test_an_office_s_head_extends_as_a_unit_s_extension_is_granted_once_and_within_the_rule() -> None:
    matter = uuid.uuid4()
    book = Book(RULES, [], {matter: "letters-2"})
    for event in lifecycle(matter)[:2]:  # transferred, accepted: acceptance met, handling running
        book.status_changed(event, NO_SHIFT)
    handling = book.rows[(matter, "handling")]
    due = handling.due_at
    at = T0 + timedelta(days=3)

    def refused(deadline: D, days: int, when: datetime = at) -> Refusal:
        with pytest.raises(Refusal) as refusal:
            book.grant(matter, deadline, days, when, "现场核查", by="staff:qian.head")
        return refusal.value

    assert refused(D.OBJECTION, 5).code == 409, "closed (accepted), and a window besides"
    assert refused(D.ACCEPTANCE, 5).code == 409, "met"
    assert refused(D.REVIEW, 5).code == 404
    too_long = refused(D.HANDLING, 31)
    assert too_long.code == 422 and "1 to 30 days" in too_long.message
    assert refused(D.HANDLING, 5, due + timedelta(seconds=1)).code == 409, "passed"
    assert handling.due_at == due and handling.extensions == 0, "nothing refused changed it"

    book.grant(matter, D.HANDLING, 20, at, "现场核查", by="staff:qian.head")
    assert handling.due_at == RULES[D.HANDLING].extended(due, 20) and handling.extended_days == 20
    extended = book.entries[-1]
    assert (extended.state, extended.extension, extended.detail) == (
        St.EXTENDED,
        (20, "现场核查"),  # the event's reason, which the petitioner is told: no staff name in it
        "staff:qian.head: 现场核查",
    )
    again = refused(D.HANDLING, 5)
    assert again.code == 409 and "already extended (20 days)" in again.message
    # A unit asking after it is refused as after its own.
    book.status_changed(
        change(matter, S.ACCEPTED, S.ACCEPTED, 80, action="extension-requested", extension_days=5), NO_SHIFT
    )
    assert len(book.refusals) == 1 and handling.extended_days == 20
