"""The front door: submissions from the channel topics (batches) and from HTTP (coalesced), registered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
from aiokafka import ConsumerRecord

from xinfang_shared import inbox, outbox
from xinfang_shared.contracts.events import FieldError, Submission, SubmissionRejected, utc_now
from xinfang_shared.contracts.reference import Channel
from xinfang_shared.contracts.topics import CHANNEL_SUBMITTED, SUBMISSION_REJECTED

from .registration import Outcome, Prepared, Registrar, Result
from .settings import IntakeSettings
from .validation import Invalid, parse, validate

log = logging.getLogger(__name__)

CHANNEL_OF_TOPIC = {topic.name: channel for channel, topic in CHANNEL_SUBMITTED.items()}
RAW_LIMIT = 64 * 1024
# Namespace of the ids given to source positions (topic, partition, offset) in the inbox.
_POSITIONS = uuid.UUID("6f0f8f4e-3c1a-4c8e-9a57-8d7f2b1e4a10")


def position_id(record: ConsumerRecord[Any, Any]) -> uuid.UUID:
    return uuid.uuid5(_POSITIONS, f"{record.topic}:{record.partition}:{record.offset}")


class Intake:
    def __init__(self, settings: IntakeSettings, registrar: Registrar, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.registrar = registrar
        self.pool = pool
        self.skew = timedelta(seconds=settings.submitted_at_skew_s)

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
        lanes = self.settings.consume_lanes if len(records) >= 64 else 1
        split: list[list[ConsumerRecord[Any, Any]]] = [[] for _ in range(lanes)]
        for record in records:
            split[hash((record.topic, record.partition)) % lanes].append(record)
        await asyncio.gather(*(self._take_lane(lane) for lane in split if lane))

    async def _take_lane(self, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        # Validation and sealing first, outside the transaction.
        checked: dict[uuid.UUID, tuple[ConsumerRecord[Any, Any], Prepared | list[FieldError]]] = {}
        for record in records:
            try:
                submission = self.validated(record.value or b"", topic_channel=CHANNEL_OF_TOPIC[record.topic])
                checked[position_id(record)] = (record, self.registrar.prepare(submission))
            except Invalid as exc:
                checked[position_id(record)] = (record, exc.errors)
        async with self.pool.acquire() as conn, conn.transaction():
            # Positions already processed (a redelivery after a crash) are skipped as a whole.
            fresh = await inbox.first_time_many(conn, checked, source="channel-topics")
            valid = [(r, p) for pid, (r, p) in checked.items() if pid in fresh and isinstance(p, Prepared)]
            rejected = [_rejection(r, p) for pid, (r, p) in checked.items() if pid in fresh and isinstance(p, list)]
            outcomes = await self.registrar.register(conn, [p for _, p in valid], now=utc_now())
            for (record, _), outcome in zip(valid, outcomes, strict=True):
                if outcome.result in (Result.CONFLICT, Result.REFUSED):
                    rejected.append(_rejection(record, outcome.errors))
            await outbox.enqueue_many(
                conn, [outbox.Outgoing(SUBMISSION_REJECTED.name, r.external_id, r) for r in rejected]
            )
        registered = sum(o.result == Result.REGISTERED for o in outcomes)
        log.info(
            "channel batch",
            extra={
                "records": len(records),
                "redelivered": len(records) - len(fresh),
                "registered": registered,
                "rejected": len(rejected),
            },
        )


def _rejection(record: ConsumerRecord[Any, Any], errors: list[FieldError]) -> SubmissionRejected:
    raw: bytes = record.value or b""
    external_id = record.key.decode("utf-8", "replace")[:128] if record.key else None
    with contextlib.suppress(ValueError):
        body = orjson.loads(raw)
        if isinstance(body, dict) and isinstance(body.get("external_id"), str):
            external_id = body["external_id"][:128]
    return SubmissionRejected(
        channel=CHANNEL_OF_TOPIC[record.topic].value,
        external_id=external_id,
        errors=errors,
        raw=raw[:RAW_LIMIT].decode("utf-8", "replace"),
    )
