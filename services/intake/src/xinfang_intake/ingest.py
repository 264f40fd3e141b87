"""The front door: submissions from the channel topics (batches) and from HTTP (coalesced), registered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
from aiokafka import ConsumerRecord

from xinfang_shared import inbox, outbox, tracing
from xinfang_shared.batching import isolate
from xinfang_shared.contracts.events import FieldError, Submission, SubmissionRejected, utc_now
from xinfang_shared.contracts.reference import Channel
from xinfang_shared.contracts.topics import CHANNEL_SUBMITTED, SUBMISSION_REJECTED, channel_rejected_topic
from xinfang_shared.crashpoints import crash_point
from xinfang_shared.dlq_limit import ConsumerHalted, DeadLetterLimit
from xinfang_shared.personal import masked_submission

from .registration import Outcome, Prepared, Registrar, Result
from .settings import IntakeSettings
from .validation import Invalid, parse, validate

log = logging.getLogger(__name__)

RAW_LIMIT = 64 * 1024
# Namespace of the ids given to source positions (topic, partition, offset) in the inbox.
_POSITIONS = uuid.UUID("6f0f8f4e-3c1a-4c8e-9a57-8d7f2b1e4a10")


def position_id(record: ConsumerRecord[Any, Any]) -> uuid.UUID:
    return uuid.uuid5(_POSITIONS, f"{record.topic}:{record.partition}:{record.offset}")


class Intake:
    def __init__(
        self, settings: IntakeSettings, registrar: Registrar, pool: asyncpg.Pool, limit: DeadLetterLimit
    ) -> None:
        self.settings = settings
        self.registrar = registrar
        self.pool = pool
        self.limit = limit  # of the channel topics' consumer
        self.skew = timedelta(seconds=settings.submitted_at_skew_s)
        # By the broker's name of each channel topic (in the service's namespace).
        self.channel_of = {settings.topic(t.name): channel for channel, t in CHANNEL_SUBMITTED.items()}

    def validated(self, raw: bytes, *, topic_channel: Channel | None = None) -> Submission:
        """Parse and validate one submission, from a channel topic or an HTTP body; raises Invalid."""
        body = parse(raw, max_bytes=self.settings.max_message_bytes)
        return validate(body, now=utc_now(), skew=self.skew, topic_channel=topic_channel)

    async def register_http(self, batch: Sequence[Prepared]) -> list[Outcome]:
        """The HTTP path's flush: one transaction for the requests that arrived together."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await self.registrar.register(conn, list(batch), now=utc_now())

    async def take_records(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        """The Kafka path. Every record ends up registered (or found registered before) or rejected with its
        reasons; none stops the batch. A large batch is split by partition into lanes, each its own
        transaction, run together: one lane's validation runs while another waits on PostgreSQL. A partition
        stays in one lane (its order holds, and one external_id, the key, is never in two lanes); the
        offsets are committed once every lane has committed."""
        if self.limit.halted:
            raise ConsumerHalted(self.limit.consumer, self.limit.describe())
        lanes = self.settings.consume_lanes if len(records) >= 64 else 1
        split: list[list[ConsumerRecord[Any, Any]]] = [[] for _ in range(lanes)]
        for record in records:
            split[hash((record.topic, record.partition)) % lanes].append(record)
        # Every lane finishes (commits or rolls back) before the batch is acknowledged or read again.
        results = await asyncio.gather(*(self._take_lane(lane) for lane in split if lane), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        crash_point("intake.registered")  # every lane committed; the offsets after we return (crashpoints.py)

    async def _take_lane(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        # Validation and sealing first, outside the transaction. A value validation let through that still
        # cannot be prepared (it fails to encode, say) fails this record alone.
        checked: list[_Checked] = []
        for record in records:
            try:
                submission = self.validated(record.value or b"", topic_channel=self.channel_of[record.topic])
                prepared = self.registrar.prepare(submission, trace=tracing.record_carrier(record))
                checked.append(_Checked(record, prepared))
            except Invalid as exc:
                checked.append(_Checked(record, exc.errors))
            except Exception as exc:
                checked.append(_Checked(record, exc))
        for c in checked:  # once per record (isolate may commit a part more than once)
            tracing.note_event(c.record, position_id(c.record))
        ready = [c for c in checked if not isinstance(c.item, BaseException)]
        # The lane in one transaction; if it fails (not an outage), split until the record(s) at fault are
        # found: the others are registered exactly once, and only those are refused.
        isolated = await isolate(ready, self._commit, what="channel batch")
        failed = {id(ready[i]): error for i, error in isolated.failed.items()}
        failed |= {id(c): c.item for c in checked if isinstance(c.item, BaseException)}
        tally = _Tally()
        for _, part_tally in isolated.done:
            tally.add(part_tally)
        if failed:
            first = next(iter(failed.values()))
            if not self.limit.admit([id(c) in failed for c in checked], first):
                raise ConsumerHalted(self.limit.consumer, self.limit.describe())
            unstorable = [(c.record, failed[id(c)]) for c in checked if id(c) in failed]
            tally.add(await self._refuse_unstorable(unstorable))
        else:
            self.limit.succeeded(len(records))
        # Per batch, so at debug (an unstorable record has its own warning, a rejected one its event).
        log.debug(
            "channel batch",
            extra={
                "records": len(records),
                "redelivered": tally.redelivered,
                "registered": tally.registered,
                "rejected": tally.rejected,
                "unstorable": len(failed),
            },
        )

    async def _commit(self, part: Sequence[_Checked]) -> _Tally:
        """Register a part of a lane in one transaction: the valid ones, and the refusals of the others."""
        positions = {position_id(c.record): c for c in part}
        async with self.pool.acquire() as conn, conn.transaction():
            # Positions already processed (a redelivery after a crash) are skipped as a whole.
            fresh = await inbox.first_time_many(conn, positions, source="channel-topics")
            new = [positions[pid] for pid in positions if pid in fresh]
            valid = [(c.record, c.item) for c in new if isinstance(c.item, Prepared)]
            rejected = [_rejection(c.record, c.item, self.channel_of) for c in new if isinstance(c.item, list)]
            outcomes = await self.registrar.register(conn, [p for _, p in valid], now=utc_now())
            for (record, _), outcome in zip(valid, outcomes, strict=True):
                if outcome.result in (Result.CONFLICT, Result.REFUSED):
                    rejected.append(_rejection(record, outcome.errors, self.channel_of))
            await outbox.enqueue_many(conn, _refusals(rejected))
        return _Tally(
            registered=sum(o.result == Result.REGISTERED for o in outcomes),
            rejected=len(rejected),
            redelivered=len(part) - len(fresh),
        )

    async def _refuse_unstorable(self, failures: list[tuple[ConsumerRecord[Any, Any], BaseException]]) -> _Tally:
        """The records that fail alone, though validation let them through: each refused once, with why."""
        positions = {position_id(record): (record, error) for record, error in failures}
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await inbox.first_time_many(conn, positions, source="channel-topics")
            rejected = [
                _rejection(r, [unstorable(e)], self.channel_of) for pid, (r, e) in positions.items() if pid in fresh
            ]
            await outbox.enqueue_many(conn, _refusals(rejected))
        for _, error in failures:
            log.warning("a submission could not be registered", extra={"error_type": type(error).__name__})
        return _Tally(rejected=len(rejected), redelivered=len(failures) - len(rejected))


@dataclass
class _Checked:
    record: ConsumerRecord[Any, Any]
    item: Prepared | list[FieldError] | BaseException  # ready, refused by validation, or failed to prepare


@dataclass
class _Tally:
    registered: int = 0
    rejected: int = 0
    redelivered: int = 0

    def add(self, other: _Tally) -> None:
        self.registered += other.registered
        self.rejected += other.rejected
        self.redelivered += other.redelivered


def unstorable(error: BaseException) -> FieldError:
    """The refusal of a submission that passed validation but cannot be stored or published. The error's own
    text is not given: a database's message can quote the value."""
    return FieldError(
        field="<message>",
        message=f"the submission could not be registered ({type(error).__name__}): it holds a value that cannot"
        " be stored; check its text for unusual characters and its numbers for size, and send it corrected",
    )


def _rejection(
    record: ConsumerRecord[Any, Any], errors: list[FieldError], channel_of: dict[str, Channel]
) -> SubmissionRejected:
    raw: bytes = record.value or b""
    external_id = record.key.decode("utf-8", "replace")[:128] if record.key else None
    with contextlib.suppress(ValueError):
        body = orjson.loads(raw)
        if isinstance(body, dict) and isinstance(body.get("external_id"), str):
            external_id = body["external_id"][:128]
    return SubmissionRejected(
        channel=channel_of[record.topic].value,
        external_id=external_id,
        errors=errors,
        raw=masked_submission(raw, RAW_LIMIT),
    )


def _refusals(rejected: list[SubmissionRejected]) -> list[outbox.Outgoing]:
    """Each refusal to its channel system's own topic, and to the operators' topic of every refusal."""
    out: list[outbox.Outgoing] = []
    for r in rejected:
        assert r.channel is not None  # a channel topic's refusal names its channel
        out.append(outbox.Outgoing(channel_rejected_topic(r.channel), r.external_id, r))
        out.append(outbox.Outgoing(SUBMISSION_REJECTED.name, r.external_id, r))
    return out
