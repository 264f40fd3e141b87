"""One consumer per service (consuming.py): a poll's records split by registration, each handled as one batch;
a halted registration's records held back while the others are committed; failures retried or dead-lettered
as the dead-letter middleware does for a subscriber. The Kafka consumer is a stand-in here; the services'
integration tests run the loop on the real broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry

from xinfang_shared.consuming import ConsumerLoop, Lane, LoopMetrics, Records, Registration
from xinfang_shared.contracts.events import utc_now
from xinfang_shared.dlq_limit import ConsumerHalted, Halt, Halts
from xinfang_shared.kafka_auth import KafkaConnection
from xinfang_shared.messaging import DeadLetter, RetryPolicy
from xinfang_shared.service import Service
from xinfang_shared.settings import ServiceSettings


class FakeKafkaConsumer:
    """What the loop asks of aiokafka's consumer, recorded."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.paused: set[TopicPartition] = set()
        self.sought: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused -= set(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought[tp] = offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


class FakeBroker:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, value: bytes, *, topic: str, key: Any, headers: Any) -> None:
        self.published.append((topic, value))


A1, A2, B1 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)


def _records(tp: TopicPartition, *offsets: int) -> list[ConsumerRecord[Any, Any]]:
    return [
        ConsumerRecord(tp.topic, tp.partition, o, 0, 0, b"k", f"{tp.topic}{o}".encode(), None, 1, 1, ())
        for o in offsets
    ]


class Handler:
    """Takes records (as their values), or fails as told."""

    def __init__(self, fail: list[BaseException] | None = None) -> None:
        self.taken: list[list[bytes]] = []
        self.fail = list(fail or [])

    async def __call__(self, records: Records) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.taken.append([r.value for r in records])


Harness = tuple[ConsumerLoop, Halts, FakeKafkaConsumer, FakeBroker]


def _loop(*, max_in_a_row: int = 20, max_attempts: int = 3) -> Harness:
    registry = CollectorRegistry()
    halts = Halts(service="t", metrics=registry, max_in_a_row=max_in_a_row)
    policy = RetryPolicy(max_attempts=max_attempts, backoff_initial_s=0.001, backoff_max_s=0.001)
    dead_letter = DeadLetter(policy, "g", registry, halts)
    broker = FakeBroker()
    dead_letter.broker = broker  # type: ignore[assignment]
    loop = ConsumerLoop(
        lane=Lane("main"),
        kafka=KafkaConnection.from_env({}),
        group_id="g",
        client_id="t",
        dead_letter=dead_letter,
        halts=halts,
        policy=policy,
        metrics=LoopMetrics.register(registry),
    )
    kafka = FakeKafkaConsumer({A1, A2, B1})
    loop.consumer = kafka  # type: ignore[assignment]
    loop._running = True
    return loop, halts, kafka, broker


def _register(loop: ConsumerLoop, halts: Halts, name: str, topic: str, handler: Handler) -> None:
    loop.register(Registration(name, frozenset({topic}), handler, halts.limit(name, [topic])))


async def test_a_poll_is_split_by_registration_in_partition_order_and_committed_once() -> None:
    loop, halts, kafka, _ = _loop()
    a, b = Handler(), Handler()
    _register(loop, halts, "reads a", "a", a)
    _register(loop, halts, "reads b", "b", b)
    await loop.handle_poll({A1: _records(A1, 5, 6), B1: _records(B1, 0), A2: _records(A2, 9)})
    assert a.taken == [[b"a5", b"a6", b"a9"]], "one batch for a registration, each partition in offset order"
    assert b.taken == [[b"b0"]]
    assert kafka.commits == [{A1: 7, A2: 10, B1: 1}], "one commit per poll, past the last record of each partition"
    assert not kafka.sought and not kafka.paused


async def test_a_halted_registration_is_held_back_and_the_others_go_on() -> None:
    loop, halts, kafka, _ = _loop()
    a, b = Handler(), Handler()
    _register(loop, halts, "reads a", "a", a)
    _register(loop, halts, "reads b", "b", b)
    now = utc_now()
    halts.limits["reads a"].impose(Halt("stored halt", now, now))
    await loop.handle_poll({A1: _records(A1, 5, 6), A2: _records(A2, 9), B1: _records(B1, 0, 1)})
    assert a.taken == [], "a halted registration's handler is not called"
    assert b.taken == [[b"b0", b"b1"]]
    assert kafka.commits == [{B1: 2}], "only the registration that ran is committed"
    assert kafka.sought == {A1: 5, A2: 9}, "the held-back records are read again from the first"
    assert kafka.paused == {A1, A2}, "only the halted registration's partitions are paused"


async def test_a_registration_that_halts_while_handling_is_not_committed() -> None:
    loop, halts, kafka, _ = _loop()
    b = Handler()

    async def a(records: Records) -> None:  # its limit trips on these records
        now = utc_now()
        halts.limits["reads a"].impose(Halt("tripped", now, now))
        raise ConsumerHalted("reads a", "tripped")

    _register(loop, halts, "reads a", "a", a)  # type: ignore[arg-type]
    _register(loop, halts, "reads b", "b", b)
    await loop.handle_poll({A1: _records(A1, 3), B1: _records(B1, 0)})
    assert kafka.commits == [{B1: 1}]
    assert kafka.sought == {A1: 3} and kafka.paused == {A1, A2}


async def test_an_outage_is_retried_poll_after_poll_until_it_passes_and_nothing_is_dead_lettered() -> None:
    loop, halts, kafka, broker = _loop(max_attempts=2)
    a, b = Handler([ConnectionRefusedError("db away")] * 5), Handler()  # longer than max_attempts
    _register(loop, halts, "reads a", "a", a)
    _register(loop, halts, "reads b", "b", b)
    await loop.handle_poll({A1: _records(A1, 0, 1), B1: _records(B1, 0)})
    # Two attempts, then held back (sought, not paused) so the loop's other registrations go on and it polls again.
    assert a.taken == [] and b.taken == [[b"b0"]]
    assert kafka.commits == [{B1: 1}] and kafka.sought == {A1: 0} and not kafka.paused
    await loop.handle_poll({A1: _records(A1, 0, 1)})  # read again: two more failures
    await loop.handle_poll({A1: _records(A1, 0, 1)})  # the fifth fails, then it passes
    assert a.taken == [[b"a0", b"a1"]]
    assert kafka.commits[-1] == {A1: 2} and broker.published == [] and not halts.limits["reads a"].halted


async def test_records_that_cannot_be_dead_lettered_are_read_again_and_nothing_is_paused() -> None:
    loop, halts, kafka, broker = _loop(max_attempts=1)
    a = Handler([RuntimeError("bug")])
    _register(loop, halts, "reads a", "a", a)

    async def broker_away(*_: Any, **__: Any) -> None:
        raise ConnectionRefusedError("broker away")

    broker.publish = broker_away  # type: ignore[method-assign]
    loop.policy.backoff_max_s = 0.001
    await loop.handle_poll({A1: _records(A1, 4)})
    assert kafka.commits == [] and kafka.sought == {A1: 4}
    assert not kafka.paused and not halts.limits["reads a"].halted, "not halted, so nothing would resume it"


async def test_only_the_partitions_still_held_are_committed() -> None:
    loop, halts, kafka, _ = _loop()
    _register(loop, halts, "reads a", "a", Handler())
    kafka.assigned = {A1}  # a rebalance took A2 while the poll was handled
    await loop.handle_poll({A1: _records(A1, 0), A2: _records(A2, 7)})
    assert kafka.commits == [{A1: 1}]


async def test_polls_that_keep_failing_are_named_in_health_and_the_loop_stops() -> None:
    import asyncio

    loop, halts, kafka, _ = _loop()
    _register(loop, halts, "reads a", "a", Handler())
    polls = 0

    async def getmany(**_: Any) -> dict[TopicPartition, list[ConsumerRecord[Any, Any]]]:
        nonlocal polls
        polls += 1
        if polls > 5:  # the sixth poll waits for ever: the count stays at five failures
            await asyncio.Event().wait()
        raise RuntimeError("coordinator gone")

    async def stop() -> None:
        pass

    kafka.getmany = getmany  # type: ignore[attr-defined]
    kafka.stop = stop  # type: ignore[attr-defined]
    loop._task = asyncio.create_task(loop._run())
    for _ in range(400):
        await asyncio.sleep(0.005)
        if polls > 5:
            break
    assert loop.problem() == "polls failing (5 in a row)"
    await loop.stop(timeout_s=0.1)  # the poll in hand never returns: cancelled
    assert loop.problem() == "down" and loop.consumer is None


async def test_a_bug_escaping_the_handler_is_retried_then_dead_lettered_under_the_limit() -> None:
    loop, halts, kafka, broker = _loop(max_attempts=3)
    a = Handler([RuntimeError("bug")] * 3)
    _register(loop, halts, "reads a", "a", a)
    await loop.handle_poll({A1: _records(A1, 0)})
    assert broker.published == [("a.dlq", b"a0")], "after 3 attempts the record is dead-lettered"
    assert kafka.commits == [{A1: 1}], "and the consumer goes on"


async def test_a_bug_failing_every_record_halts_instead_of_emptying_the_topic() -> None:
    loop, halts, kafka, broker = _loop(max_in_a_row=3, max_attempts=1)
    a = Handler([RuntimeError("bug")] * 10)
    _register(loop, halts, "reads a", "a", a)
    await loop.handle_poll({A1: _records(A1, 0, 1, 2, 3)})
    assert broker.published == [] and kafka.commits == []
    assert halts.limits["reads a"].halted
    assert kafka.sought == {A1: 0} and kafka.paused == {A1, A2}


def test_a_topic_is_read_by_one_registration_only() -> None:
    loop, halts, _, _ = _loop()
    _register(loop, halts, "reads a", "a", Handler())
    with pytest.raises(ValueError, match="read by reads a"):
        _register(loop, halts, "reads a again", "a", Handler())


def _service(**settings: Any) -> Service:
    return Service(
        ServiceSettings(_env_file=None, environment="test", **settings),  # type: ignore[call-arg]
        migrations=Path("."),
        title="test",
    )


async def _nothing(records: Records) -> None:
    pass


def test_a_services_consumers_share_one_loop_with_the_fetch_the_settings_say() -> None:
    service = _service(consume_fetch_min_bytes=32_768, consume_fetch_max_wait_ms=20, consume_max_records=300)
    service.consume("matters.status.v1", consumer="status")(_nothing)
    service.consume("matters.routed.v1", consumer="routed")(_nothing)
    (main,) = service.loops.values()
    assert main.lane == Lane("main", fetch_min_bytes=32_768, fetch_max_wait_ms=20, max_records=300)
    assert main.topics == ["matters.routed.v1", "matters.status.v1"]
    # by default Kafka's own fetch (measured best: see the settings)
    default = _service()
    default.consume("matters.status.v1", consumer="status")(_nothing)
    assert (default.loops["main"].lane.fetch_min_bytes, default.loops["main"].lane.fetch_max_wait_ms) == (1, 500)
    # a lane of its own (intake's channel topics gather longer)
    channels = Lane("channels", fetch_min_bytes=131_072, fetch_max_wait_ms=200)
    default.consume("channel.letter.submitted.v1", consumer="front door", lane=channels)(_nothing)
    assert default.loops["channels"].lane == channels
    assert default.loops["channels"].topics == ["channel.letter.submitted.v1"]


def test_every_service_reads_through_one_consumer() -> None:
    """Intake's front door has a lane of its own and routing's per-record unit feedback its subscriber; every
    other topic a service reads goes through its one loop."""
    from xinfang_intake.app import create_asgi
    from xinfang_intake.settings import IntakeSettings
    from xinfang_notify.app import create_service as notify
    from xinfang_notify.settings import NotifySettings
    from xinfang_routing.app import create_service as routing
    from xinfang_routing.settings import RoutingSettings
    from xinfang_stats.app import create_service as stats
    from xinfang_stats.settings import StatsSettings
    from xinfang_supervision.app import create_service as supervision
    from xinfang_supervision.settings import SupervisionSettings

    common: dict[str, Any] = {"_env_file": None, "environment": "test"}
    services = {
        "intake": create_asgi(IntakeSettings(**common))[0],
        "routing": routing(RoutingSettings(**common)),
        "supervision": supervision(SupervisionSettings(**common)),
        "notify": notify(NotifySettings(**common)),
        "stats": stats(StatsSettings(**common)),
    }
    for name, service in services.items():
        lanes = sorted(service.loops)
        assert lanes == (["channels", "main"] if name == "intake" else ["main"]), name
        assert len(service.loops["main"].registrations) >= 2, name
        subscribers = len(service.broker.subscribers)
        assert subscribers == (1 if name == "routing" else 0), name


async def test_background_loops_are_asked_to_stop_last_started_first_and_cancelled_if_they_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from xinfang_shared import service as service_module

    monkeypatch.setattr(service_module, "BACKGROUND_STOP_S", 0.2)
    service = _service()
    ended: list[str] = []

    class Polite:
        def __init__(self, name: str) -> None:
            self.name = name
            self.stopping = asyncio.Event()

        async def run(self) -> None:
            await self.stopping.wait()
            ended.append(self.name)

        def stop(self) -> None:
            self.stopping.set()

    async def deaf() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            ended.append("deaf, cancelled")
            raise

    first, second = Polite("first"), Polite("second")
    service.background("first", first.run(), stop=first.stop)
    service.background("deaf", deaf(), stop=lambda: None)
    service.background("second", second.run(), stop=second.stop)
    await asyncio.sleep(0)
    await service._stop_background()
    assert ended == ["second", "deaf, cancelled", "first"]
