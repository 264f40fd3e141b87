"""The Coalescer's bounded queue (batching.py): when it is full, `submit` refuses at once with Overloaded, the
item is not taken, and the items already taken still settle."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from xinfang_shared.batching import QUEUED_ROUNDS, Coalescer, Overloaded

# How long a refusal may take before the test calls it a wait (a refusal takes no time at all; a submit that
# waits for room would wait for ever here, as the flush never returns until released).
NOT_WAITING_S = 5


class BlockedFlush:
    """A flush that holds every batch until released, recording the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.called = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.called.set()
        await self.release.wait()
        return [i * 10 for i in items]


async def _fill(coalescer: Coalescer[int, int], flush: BlockedFlush, bound: int) -> list[asyncio.Task[int]]:
    """One item held in the flush, then `bound` queued behind it: the queue is full."""
    held = asyncio.create_task(coalescer.submit(0))
    await asyncio.wait_for(flush.called.wait(), NOT_WAITING_S)
    queued = [asyncio.create_task(coalescer.submit(i)) for i in range(1, bound + 1)]
    await asyncio.sleep(0)  # each task runs up to its wait for the result: its item is queued
    assert coalescer.queued == bound
    return [held, *queued]


async def _refused(coalescer: Coalescer[int, int], item: int) -> Overloaded:
    with pytest.raises(Overloaded) as refused:
        await asyncio.wait_for(coalescer.submit(item), NOT_WAITING_S)
    return refused.value


async def test_a_full_queue_refuses_at_once_and_takes_nothing_while_the_others_settle() -> None:
    flush = BlockedFlush()
    coalescer: Coalescer[int, int] = Coalescer(flush, max_batch=2, workers=1, max_queue=3)
    coalescer.start()
    try:
        taken = await _fill(coalescer, flush, 3)
        refused = await _refused(coalescer, 99)
        assert refused.max_queue == 3
        assert coalescer.queued == 3, "the refused item was not queued"

        flush.release.set()
        assert await asyncio.gather(*taken) == [0, 10, 20, 30]
        assert flush.batches == [[0], [1, 2], [3]], "the refused item was never flushed"
        assert await coalescer.submit(4) == 40, "once there is room, items are taken again"
    finally:
        await coalescer.stop()


async def test_the_default_bound_is_ten_rounds_of_every_workers_full_batch() -> None:
    flush = BlockedFlush()
    coalescer: Coalescer[int, int] = Coalescer(flush, max_batch=3, workers=1)
    coalescer.start()
    try:
        bound = QUEUED_ROUNDS * 3 * 1
        taken = await _fill(coalescer, flush, bound)
        assert (await _refused(coalescer, 99)).max_queue == bound
        flush.release.set()
        assert await asyncio.gather(*taken) == [i * 10 for i in range(bound + 1)]
    finally:
        await coalescer.stop()


def test_a_queue_with_no_room_is_refused() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        Coalescer(BlockedFlush(), max_queue=0)
