"""Batches: concurrent calls coalesced into one (many HTTP requests, one database transaction), and the body
of a batch consumer of events (`EventBatches`).

Callers `await coalescer.submit(item)`. A fixed number of workers each take everything queued at that
moment (up to `max_batch`), run `flush` on it once, and hand every caller its own result (or the batch's
exception). There is no timer: under light load a batch is one item and adds no latency; under heavy load
requests queue while a flush runs and the next flush takes them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from .contracts.events import Event
from .messaging import TRANSIENT_ERRORS, DeadLetter

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
E = TypeVar("E", bound=Event)


class Coalescer(Generic[T, R]):
    def __init__(
        self, flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]], *, max_batch: int = 200, workers: int = 2
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._workers = workers
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

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
        if not self._tasks:
            raise RuntimeError("Coalescer.start() was not called")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            live = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not live:
                continue
            try:
                results = await self._flush([item for item, _ in live])
            except Exception as exc:
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)


class EventBatches(Generic[E]):
    """A batch consumer's body for events of one model: each record parsed (one that does not parse is
    dead-lettered alone), copies of one event in the batch kept once, the batch handled in one go; if that
    fails, each event alone, so only what still fails is dead-lettered and one bad matter never costs the
    batch. A failure of the infrastructure (PostgreSQL away, a deadlock) is raised instead: the broker's
    middleware retries the batch until it passes, and nothing is dead-lettered for it."""

    def __init__(
        self,
        model: type[E],
        handle: Callable[[list[E]], Awaitable[int]],
        dead_letter: DeadLetter,
        *,
        what: str,
    ) -> None:
        self.model = model
        self.handle = handle
        self.dead_letter = dead_letter
        self.what = what

    async def take(self, records: Sequence[ConsumerRecord[Any, Any]]) -> int:
        """Returns how many events were handled for the first time."""
        events: dict[uuid.UUID, tuple[ConsumerRecord[Any, Any], E]] = {}
        for record in records:
            try:
                event = self.model.model_validate_json(record.value or b"")
            except ValidationError as exc:
                await self.dead_letter.send((record,), exc, attempts=1)
                continue
            events.setdefault(event.event_id, (record, event))
        try:
            handled = await self.handle([e for _, e in events.values()])
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            log.warning("a batch failed; handling its events one by one", extra={"what": self.what}, exc_info=True)
            handled = 0
            for record, event in events.values():
                try:
                    handled += await self.handle([event])
                except TRANSIENT_ERRORS:
                    raise  # the batch is redelivered; what was handled is skipped then (inbox)
                except Exception as exc:
                    await self.dead_letter.send((record,), exc, attempts=1)
        log.info("handled a batch", extra={"what": self.what, "events": len(events), "first_time": handled})
        return handled
