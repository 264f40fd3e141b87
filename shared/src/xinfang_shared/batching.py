"""Batches, and how one bad item in a batch is kept from sinking the others.

`isolate` runs a batch as one unit of work (one transaction); when it fails for a reason that is not the
infrastructure, it splits the batch in halves and runs each, down to single items, so everything that can
succeed does, exactly once, and each failure is pinned on the one item that causes it. A failure of the
infrastructure (PostgreSQL away, a deadlock) is raised instead: nothing is the items' fault, and the caller
retries the whole batch later. Every batch path uses it: intake's channel lanes and its HTTP coalescer,
and `EventBatches`, the body of every batch consumer of events.

`Coalescer`: concurrent calls coalesced into one (many HTTP requests, one database transaction). Callers
`await coalescer.submit(item)`. A fixed number of workers each take everything queued at that moment (up to
`max_batch`), run `flush` on it once, and hand every caller its own result (or its own failure). There is no
timer: under light load a batch is one item and adds no latency; under heavy load requests queue while a flush
runs and the next flush takes them all. The queue is bounded (`max_queue`): when it is full, `submit` raises
`Overloaded` at once and the item is not taken, so an overload is refused instead of piling up in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiokafka import ConsumerRecord

from . import tracing
from .contracts.events import Event
from .crashpoints import crash_point
from .dlq_limit import ConsumerHalted, DeadLetterLimit
from .messaging import TRANSIENT_ERRORS, DeadLetter

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
E = TypeVar("E", bound=Event)


# Failures that are no item's fault: raised to the caller, never pinned on an item.
NOT_THE_ITEMS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, ConsumerHalted)


@dataclass
class Isolated(Generic[T, R]):
    """What `isolate` made of a batch: the parts that went through with what each returned, and the items
    that failed alone, by their index in the batch."""

    done: list[tuple[Sequence[T], R]] = field(default_factory=list)
    failed: dict[int, BaseException] = field(default_factory=dict)

    def outcomes(self, size: int) -> list[bool]:
        """Per item, in the batch's order: True when it failed."""
        return [i in self.failed for i in range(size)]


async def isolate(items: Sequence[T], attempt: Callable[[Sequence[T]], Awaitable[R]], *, what: str) -> Isolated[T, R]:
    """Run `attempt` on the whole batch; if it fails (not an outage), on each half, recursively. The halves run
    one after the other, left first, so items keep their order. Raises TRANSIENT_ERRORS and ConsumerHalted."""
    result: Isolated[T, R] = Isolated()

    async def run(start: int, part: Sequence[T]) -> None:
        try:
            result.done.append((part, await attempt(part)))
        except NOT_THE_ITEMS:
            raise
        except Exception as exc:
            if len(part) == 1:
                result.failed[start] = exc
                return
            if len(part) == len(items):
                log.warning(
                    "a batch failed; splitting it to find the item(s) at fault",
                    extra={"what": what, "items": len(items), "error_type": type(exc).__name__},
                )
            middle = len(part) // 2
            await run(start, part[:middle])
            await run(start + middle, part[middle:])

    if items:
        await run(0, items)
    return result


class ItemFailed(Exception):
    """This item alone fails (it is not the infrastructure): its caller gets a 4xx, not a 5xx."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


class Overloaded(Exception):
    """The coalescer's queue is full: this item was not taken (nothing was done with it); try again later."""

    def __init__(self, max_queue: int) -> None:
        super().__init__(f"{max_queue} items are queued already")
        self.max_queue = max_queue


# The queue's bound when none is given: this many rounds of every worker's full batch.
QUEUED_ROUNDS = 10


class Coalescer(Generic[T, R]):
    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        limit: DeadLetterLimit | None = None,
        max_batch: int = 200,
        workers: int = 2,
        max_queue: int | None = None,
    ) -> None:
        """`max_queue`: items waiting for a flush (those being flushed are not counted), by default
        QUEUED_ROUNDS * max_batch * workers."""
        max_queue = QUEUED_ROUNDS * max_batch * workers if max_queue is None else max_queue
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}")
        self._flush = flush
        self._limit = limit
        self._max_batch = max_batch
        self._workers = workers
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue(maxsize=max_queue)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def queued(self) -> int:
        """Items waiting for a flush."""
        return self._queue.qsize()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"coalescer-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def submit(self, item: T) -> R:
        """The item's result; raises Overloaded at once when the queue is full (the item is not taken),
        ItemFailed when it alone cannot be processed, ConsumerHalted when too many have failed lately (a bug or a
        broken dependency), or the infrastructure's error."""
        if not self._tasks:
            raise RuntimeError("Coalescer.start() was not called")
        if self._limit is not None and self._limit.halted:
            raise ConsumerHalted(self._limit.consumer, self._limit.describe())
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise Overloaded(self._queue.maxsize) from None
        return await future

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if live:
                await self._settle(live)

    async def _settle(self, live: list[tuple[T, asyncio.Future[R]]]) -> None:
        async def flush(part: Sequence[tuple[T, asyncio.Future[R]]]) -> Sequence[R]:
            results = await self._flush([item for item, _ in part])
            if len(results) != len(part):
                raise RuntimeError(f"flush returned {len(results)} results for {len(part)} items")
            return results

        try:
            isolated = await isolate(live, flush, what="coalesced requests")
        except Exception as exc:  # the infrastructure: every caller gets it
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for part, results in isolated.done:
            for (_, fut), value in zip(part, results, strict=True):
                if not fut.done():
                    fut.set_result(value)
        if not isolated.failed:
            if self._limit is not None:
                self._limit.succeeded(len(live))
            return
        first = next(iter(isolated.failed.values()))
        admitted = self._limit is None or self._limit.admit(isolated.outcomes(len(live)), first)
        for i, error in isolated.failed.items():
            fut = live[i][1]
            if fut.done():
                continue
            if admitted:
                fut.set_exception(ItemFailed(error))
            else:
                assert self._limit is not None
                fut.set_exception(ConsumerHalted(self._limit.consumer, self._limit.describe()))


class EventBatches(Generic[E]):
    """A batch consumer's body for events of one model: each record parsed (one that does not parse is
    dead-lettered), copies of one event in the batch kept once, the batch handled in one go; if that fails,
    `isolate` finds the events at fault, and only they are dead-lettered: one bad matter never costs the
    batch. A failure of the infrastructure (PostgreSQL away, a deadlock) is raised instead: the broker's
    middleware retries the batch until it passes, and nothing is dead-lettered for it. Before anything is
    dead-lettered the consumer's limit is asked: when most records fail, it halts instead (dlq_limit.py)."""

    def __init__(
        self,
        model: type[E],
        handle: Callable[[list[E]], Awaitable[int]],
        dead_letter: DeadLetter,
        limit: DeadLetterLimit,
        *,
        parse: Callable[[ConsumerRecord[Any, Any]], E] | None = None,
    ) -> None:
        self.model = model
        self.handle = handle
        self.dead_letter = dead_letter
        self.limit = limit
        # How a record becomes an event (default: the model's JSON); a ValueError (pydantic's ValidationError, a
        # seal that does not open) makes the record unreadable: dead-lettered alone, under the limit.
        self.parse = parse or (lambda record: model.model_validate_json(record.value or b""))

    async def take(self, records: Sequence[ConsumerRecord[Any, Any]]) -> int:
        """Returns how many events were handled for the first time."""
        if self.limit.halted:
            raise ConsumerHalted(self.limit.consumer, self.limit.describe())
        events: dict[uuid.UUID, tuple[int, E]] = {}
        unreadable: dict[int, BaseException] = {}
        for position, record in enumerate(records):
            try:
                event = self.parse(record)
            except ValueError as exc:
                unreadable[position] = exc
                continue
            tracing.note_event(record, event.event_id)
            events.setdefault(event.event_id, (position, event))
        kept = list(events.values())

        async def attempt(part: Sequence[tuple[int, E]]) -> int:
            return await self.handle([e for _, e in part])

        isolated = await isolate(kept, attempt, what=self.limit.consumer)
        failed = unreadable | {kept[i][0]: error for i, error in isolated.failed.items()}
        if failed:
            first = failed[min(failed)]
            if not self.limit.admit([i in failed for i in range(len(records))], first):
                raise ConsumerHalted(self.limit.consumer, self.limit.describe())
            for position in sorted(failed):
                await self.dead_letter.send((records[position],), failed[position], attempts=1)
        else:
            self.limit.succeeded(len(records))
        handled = sum(count for _, count in isolated.done)
        # Per batch, so at debug: what failed was told as it failed (isolate's and the dead letter's warnings).
        log.debug(
            "handled a batch",
            extra={"what": self.limit.consumer, "events": len(events), "first_time": handled, "failed": len(failed)},
        )
        crash_point("batch.committed", when=handled > 0)  # committed; the offsets after we return (crashpoints.py)
        return handled
