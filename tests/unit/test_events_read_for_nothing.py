"""A batch consumer does no database work for the events it does not act on (issue 18): stats folds only the
deadline events a figure uses (an obligation overdue or met) and keeps inbox records only for those; routing acts
only on a petitioner's request window that lapsed; no service reads matters.routed.v1 (the status change a matter
is routed by carries its office, category and rule); notify and routing read deadlines.warnings.v1, not the
set/met bookkeeping. A batch of nothing relevant acquires no connection, so it opens no transaction and writes
nothing; its offsets are committed as any batch's."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from aiokafka import ConsumerRecord

from tests import factories
from xinfang_intake.app import create_asgi as create_intake
from xinfang_intake.settings import IntakeSettings
from xinfang_notify.app import create_service as create_notify
from xinfang_notify.registry import Notice, load_notices
from xinfang_notify.rules import SPECIAL_VISIT_RULE
from xinfang_notify.rules import Rules as NotifyRules
from xinfang_notify.settings import NotifySettings
from xinfang_routing.app import DeadlineSeen, _close
from xinfang_routing.app import create_service as create_routing
from xinfang_routing.settings import RoutingSettings
from xinfang_shared.batching import EventBatches
from xinfang_shared.contracts.events import DeadlineEvent, MatterStatusChanged
from xinfang_shared.contracts.reference import DeadlineState, DeadlineType
from xinfang_shared.contracts.topics import (
    BY_NAME,
    DEADLINE_WARNINGS,
    DEADLINES_EVENTS,
    MATTERS_ROUTED,
    MATTERS_STATUS,
    SERVICES,
)
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.dlq_limit import DeadLetterLimit
from xinfang_stats import fold
from xinfang_stats.app import create_service as create_stats
from xinfang_stats.settings import StatsSettings
from xinfang_supervision.app import create_service as create_supervision
from xinfang_supervision.ledger import deadline_records
from xinfang_supervision.settings import SupervisionSettings

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


class NoPool:
    """A pool that must not be used: acquiring a connection fails the test."""

    def acquire(self) -> Any:
        raise AssertionError("a connection was acquired for a batch with nothing to do")


class Conn:
    """Records what a fold's transaction did: the inbox ids it claimed, the statements it ran."""

    def __init__(self) -> None:
        self.claimed: list[uuid.UUID] = []
        self.statements: list[tuple[str, list[Any]]] = []

    def transaction(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    async def fetch(self, sql: str, ids: list[uuid.UUID], source: str) -> list[dict[str, uuid.UUID]]:
        assert sql.startswith("INSERT INTO inbox")
        self.claimed.extend(ids)
        return [{"event_id": i} for i in ids]

    async def executemany(self, sql: str, rows: list[Any]) -> None:
        self.statements.append((sql, rows))

    async def execute(self, sql: str, *columns: list[Any]) -> None:
        """A statement over arrays (`unnest`): recorded as its rows."""
        self.statements.append((sql, list(zip(*columns, strict=True))))


class Pool:
    def __init__(self) -> None:
        self.conn = Conn()
        self.acquired = 0

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Conn]:
        self.acquired += 1
        yield self.conn


def _deadline(state: DeadlineState, deadline: DeadlineType = DeadlineType.ACCEPTANCE, **fields: Any) -> DeadlineEvent:
    return factories.deadline_event(state, deadline, at=AT, **fields)


# What the bench's typical matter (registered, transferred) publishes on deadlines.events.v1: routing set and met,
# acceptance set, the objection window set.
TYPICAL = [
    _deadline(DeadlineState.SET, DeadlineType.ROUTING),
    _deadline(DeadlineState.MET, DeadlineType.ROUTING),
    _deadline(DeadlineState.SET, DeadlineType.ACCEPTANCE),
    _deadline(DeadlineState.SET, DeadlineType.OBJECTION, window=True),
]


def test_stats_folds_only_obligations_overdue_or_met() -> None:
    for state, window in itertools.product(DeadlineState, (False, True)):
        counted = fold.counted(_deadline(state, window=window))
        assert counted == (not window and state in (DeadlineState.OVERDUE, DeadlineState.MET)), (state, window)
    assert [fold.counted(e) for e in TYPICAL] == [False, True, False, False]


async def test_stats_batch_of_ignored_deadline_events_acquires_no_connection() -> None:
    ignored = [_deadline(s) for s in DeadlineState if s not in (DeadlineState.OVERDUE, DeadlineState.MET)]
    ignored += [_deadline(DeadlineState.MET, DeadlineType.REVIEW, window=True, on_time=None)]
    ignored += [_deadline(DeadlineState.OVERDUE, DeadlineType.OBJECTION, window=True)]
    assert await fold.fold_events(NoPool(), DEADLINES_EVENTS.name, fold.deadline, ignored) == 0  # type: ignore[arg-type]


async def test_stats_keeps_inbox_records_only_for_the_deadline_events_it_folds() -> None:
    pool = Pool()
    overdue = _deadline(DeadlineState.OVERDUE)
    events = [*TYPICAL, overdue]
    met = TYPICAL[1]
    assert await fold.fold_events(pool, DEADLINES_EVENTS.name, fold.deadline, events) == 2  # type: ignore[arg-type]
    assert pool.acquired == 1
    # met adds to a count: its inbox record is what keeps a redelivery from counting it twice.
    assert sorted(pool.conn.claimed) == sorted([met.event_id, overdue.event_id])
    [(sql, rows)] = pool.conn.statements
    assert sql.startswith("INSERT INTO facts")
    assert sorted(rows) == sorted([(met.matter_id, False, False, 1), (overdue.matter_id, True, False, 0)])


async def test_stats_other_topics_fold_every_event() -> None:
    pool = Pool()
    status = [SimpleNamespace(event_id=uuid.uuid4(), matter_id=uuid.uuid4()) for _ in range(3)]
    applied: list[Any] = []

    async def apply(conn: Any, events: list[Any]) -> None:
        applied.extend(events)

    assert await fold.fold_events(pool, MATTERS_STATUS.name, apply, status) == 3  # type: ignore[arg-type]
    # The status fold is idempotent by the row's state (fold.KEEPS_INBOX): no inbox record is kept.
    assert len(applied) == 3 and pool.conn.claimed == []


def _record(offset: int, event: DeadlineEvent) -> ConsumerRecord[bytes, bytes]:
    value = event.model_dump_json().encode()
    key = str(event.matter_id).encode()
    return ConsumerRecord(DEADLINES_EVENTS.name, 0, offset, 0, 0, key, value, None, len(key), len(value), ())


async def test_stats_consumer_takes_a_batch_of_ignored_events_without_the_database() -> None:
    """Through the consumer's body (EventBatches), as the stats service wires it: the batch is handled (nothing
    dead-lettered, the limit counts successes) and no connection is taken."""
    limit = DeadLetterLimit("deadlines.events.v1:stats")

    async def handle(events: list[DeadlineEvent]) -> int:
        return await fold.fold_events(NoPool(), DEADLINES_EVENTS.name, fold.deadline, events)  # type: ignore[arg-type]

    batches = EventBatches(DeadlineEvent, handle, None, limit)  # type: ignore[arg-type]  # nothing to dead-letter
    records = [_record(i, e) for i, e in enumerate(e for e in TYPICAL if not fold.counted(e))]
    assert await batches.take(records) == 0
    assert not limit.halted


def test_routing_acts_only_on_a_request_window_that_lapsed() -> None:
    for state, deadline, window in itertools.product(DeadlineState, DeadlineType, (False, True)):
        seen = DeadlineSeen(matter_id=uuid.uuid4(), deadline=deadline, state=state, window=window)
        lapsed = state == DeadlineState.CLOSED and window and deadline in (DeadlineType.REVIEW, DeadlineType.RE_REVIEW)
        assert seen.request_window_lapsed == lapsed, (state, deadline, window)


async def test_routing_batch_of_other_deadline_events_acquires_no_connection() -> None:
    events = [DeadlineSeen.model_validate_json(e.model_dump_json()) for e in TYPICAL]
    events.append(DeadlineSeen(matter_id=uuid.uuid4(), deadline=DeadlineType.OBJECTION, state="closed", window=True))
    assert await _close(SimpleNamespace(pool=NoPool()), events) == 0  # type: ignore[arg-type]


def test_supervision_does_not_read_matters_routed() -> None:
    """The office comes with every status change (routing publishes one in the transaction that routes), so
    supervision reads matters.status.v1 and not matters.routed.v1 (nor do the registry and the ACLs say so)."""
    service = create_supervision(SupervisionSettings(_env_file=None, environment="test"))
    topics = service.consumed_topics
    assert MATTERS_STATUS.name in topics and MATTERS_ROUTED.name not in topics
    assert "supervision" not in BY_NAME[MATTERS_ROUTED.name].consumers


def test_no_service_reads_matters_routed_the_routing_change_carries_it() -> None:
    """The change a matter is routed by carries its office, unit, category and rule, so intake, notify and stats
    read matters.status.v1 alone; matters.routed.v1 is kept for the systems written against it (and replayed
    by the statistics' rebuild for matters an earlier release routed)."""
    for service in (
        create_intake(IntakeSettings(_env_file=None, environment="test"))[0],
        create_notify(NotifySettings(_env_file=None, environment="test")),
        create_stats(StatsSettings(_env_file=None, environment="test")),
    ):
        assert MATTERS_STATUS.name in service.consumed_topics
        assert MATTERS_ROUTED.name not in service.consumed_topics
    assert not set(SERVICES) & set(MATTERS_ROUTED.consumers) and MATTERS_ROUTED.replayers == ("stats",)


def test_notify_plans_the_urgent_visit_notice_from_the_routing_change() -> None:
    rules = NotifyRules(
        load_notices(NotifySettings(_env_file=None, environment="test").notices_file), DeadlineRules.default()
    )
    routed = MatterStatusChanged(
        matter_id=uuid.uuid4(),
        status="transferred",
        previous_status="registered",
        unit="city-5101",
        at=datetime.now(UTC),
        action="routed",
        office="guidance",
        rule=SPECIAL_VISIT_RULE,
        category="labor",
    )
    assert {p.notice for p in rules.status(routed)} == {Notice.URGENT_VISIT, Notice.TRANSFERRED}
    for other in ({"rule": "office-8"}, {"office": "letters-1"}, {"action": "reassigned"}):
        assert {p.notice for p in rules.status(routed.model_copy(update=other))} == {Notice.TRANSFERRED}, other


# ---- deadlines.warnings.v1: notify and routing read the warnings, not the set/met bookkeeping ----------------


def test_every_deadline_event_notify_or_routing_acts_on_is_a_warning() -> None:
    """The split loses nothing: whatever notify plans a notice from, or routing closes a chain on, is on
    deadlines.warnings.v1; and the bookkeeping (set, met, paused, resumed, an obligation closed) is not."""
    rules = NotifyRules(
        load_notices(NotifySettings(_env_file=None, environment="test").notices_file), DeadlineRules.default()
    )
    acted = 0
    for state, deadline, window in itertools.product(DeadlineState, DeadlineType, (False, True)):
        event = _deadline(state, deadline, window=window, extension_days=5 if state == DeadlineState.EXTENDED else None)
        seen = DeadlineSeen.model_validate_json(event.model_dump_json())
        if rules.deadline(event) or seen.request_window_lapsed:
            acted += 1
            assert event.is_warning, (state, deadline, window)
        bookkeeping = state in (DeadlineState.SET, DeadlineState.MET, DeadlineState.PAUSED, DeadlineState.RESUMED)
        if bookkeeping or (state == DeadlineState.CLOSED and not window):
            assert not event.is_warning, (state, deadline, window)
    assert acted > 0
    assert not any(e.is_warning for e in TYPICAL)


def test_notify_and_routing_read_the_warnings_and_not_every_deadline_event() -> None:
    for service in (
        create_notify(NotifySettings(_env_file=None, environment="test")),
        create_routing(RoutingSettings(_env_file=None, environment="test")),
    ):
        topics = service.consumed_topics
        assert DEADLINE_WARNINGS.name in topics and DEADLINES_EVENTS.name not in topics
    assert {"notify", "routing"} <= set(DEADLINE_WARNINGS.consumers)
    assert not {"notify", "routing"} & set(DEADLINES_EVENTS.consumers)


def test_supervision_publishes_a_warning_on_both_topics_and_bookkeeping_on_one() -> None:
    overdue, met = _deadline(DeadlineState.OVERDUE), _deadline(DeadlineState.MET)
    assert [(r.topic, r.event) for r in deadline_records(overdue)] == [
        (DEADLINES_EVENTS.name, overdue),
        (DEADLINE_WARNINGS.name, overdue),
    ]
    assert [r.topic for r in deadline_records(met)] == [DEADLINES_EVENTS.name]
