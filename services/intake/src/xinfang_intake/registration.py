"""Registering matters: idempotency, repeats, review links, storage and the registered event, in one
transaction per batch (the caller's).

A submission is first `prepare`d (hashing, sealing, fingerprinting: CPU work outside the transaction), then
a batch of them is `register`ed:
  1. advisory locks on the batch's petitioners, so two instances cannot both miss each other's repeat;
  2. `(channel, external_id)` already known: same content → that matter again; other content → conflict;
  3. review and re-review requests must name a concluded matter, within the review window;
  4. repeats: an earlier matter of the same petitioner (the same ID number and the same name: MatchKeys) with a
     near-identical text (repeats.py: never a text too short to compare) makes this one `duplicate_of` it while it
     is open, or `not_accepted_again` once it was terminated;
  5. insert, then put `matters.registered.v2` in the outbox, its personal block sealed for routing and notify.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg
import orjson

from xinfang_shared import outbox
from xinfang_shared.contracts.events import FieldError, MatterStatus, Submission
from xinfang_shared.contracts.reference import DeadlineType, Kind
from xinfang_shared.contracts.topics import MATTERS_REGISTERED_V2
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.periods import period_last_day
from xinfang_shared.personal import MatchKeys, PersonalDataVault, TransportSeal
from xinfang_shared.tracking import new_tracking_code, normalise

from .repeats import RepeatRule, fingerprint
from .settings import IntakeSettings
from .validation import REVIEW_KINDS, error

# Statuses in which an earlier matter is still "open": a repeat of it is a duplicate.
OPEN = frozenset(
    {
        MatterStatus.REGISTERED,
        MatterStatus.AWAITING_ASSIGNMENT,
        MatterStatus.TRANSFERRED,
        MatterStatus.OBJECTED,
        MatterStatus.ACCEPTED,
        MatterStatus.REVIEW_REQUESTED,
        MatterStatus.IN_REVIEW,
        MatterStatus.RE_REVIEW_REQUESTED,
        MatterStatus.IN_RE_REVIEW,
    }
)
CONCLUDED = frozenset({MatterStatus.CONCLUDED, MatterStatus.REVIEW_CONCLUDED, MatterStatus.RE_REVIEW_CONCLUDED})


class Result(StrEnum):
    REGISTERED = "registered"  # new matter (HTTP 202)
    EXISTING = "existing"  # the same submission again (HTTP 200)
    CONFLICT = "conflict"  # same (channel, external_id), other content (HTTP 409)
    REFUSED = "refused"  # valid shape, refused by a rule needing the database (HTTP 422)


@dataclass
class Outcome:
    result: Result
    matter_id: uuid.UUID | None = None
    tracking_code: str | None = None
    status: str | None = None
    errors: list[FieldError] = field(default_factory=list)


@dataclass
class Prepared:
    submission: Submission
    as_json: dict[str, Any]  # the submission in JSON form (hashed, stored, published)
    content_hash: bytes
    petitioner_key: bytes
    fingerprint: list[int]
    sealed: bytes
    # The trace context of the request or record that brought it (tracing.py), for its registered event.
    trace: Mapping[str, str] | None = None
    # The person of reception who registered it (`staff:<user>`), when the console's key named one.
    received_by: str | None = None

    @property
    def idempotency_key(self) -> tuple[str, str]:
        return (self.submission.channel.value, self.submission.external_id)


@dataclass
class _Earlier:
    matter_id: uuid.UUID
    fingerprint: list[int]
    status: str


class Registrar:
    @classmethod
    def from_settings(cls, settings: IntakeSettings) -> Registrar:
        return cls(
            PersonalDataVault.from_settings(settings),
            MatchKeys(settings.personal_data_hash_key.get_secret_value()),
            TransportSeal.from_settings(settings),
            repeats=RepeatRule(threshold=settings.repeat_similarity, min_tokens=settings.repeat_min_tokens),
            deadlines=DeadlineRules.load(settings.deadline_rules_file),
        )

    def __init__(
        self,
        vault: PersonalDataVault,
        match_keys: MatchKeys,
        transport: TransportSeal,
        *,
        repeats: RepeatRule,
        deadlines: DeadlineRules,
    ) -> None:
        self.vault = vault
        self.match_keys = match_keys
        self.transport = transport
        self.repeats = repeats
        self.deadlines = deadlines

    def prepare(
        self, submission: Submission, *, trace: Mapping[str, str] | None = None, received_by: str | None = None
    ) -> Prepared:
        as_json = submission.model_dump(mode="json")
        canonical = orjson.dumps(as_json, option=orjson.OPT_SORT_KEYS)
        personal = {"petitioner": as_json["petitioner"], "representatives": as_json["representatives"]}
        petitioner = submission.petitioner
        return Prepared(
            submission=submission,
            as_json=as_json,
            content_hash=hashlib.sha256(canonical).digest(),
            petitioner_key=self.match_keys.match_key(petitioner.id_number, petitioner.name),
            fingerprint=fingerprint(submission.title, submission.content),
            sealed=self.vault.seal(personal),
            trace=trace,
            received_by=received_by,
        )

    async def register(self, conn: asyncpg.Connection, batch: list[Prepared], *, now: datetime) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(batch)
        locks = sorted({int.from_bytes(p.petitioner_key[:8], "big", signed=True) for p in batch})
        await conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", locks)

        known = await self._known(conn, [p.idempotency_key for p in batch])
        first_in_batch: dict[tuple[str, str], int] = {}
        fresh: list[int] = []
        for i, p in enumerate(batch):
            key = p.idempotency_key
            if key in known:
                outcomes[i] = _again(known[key], p)
            elif key in first_in_batch:
                outcomes[i] = None  # settled once the first copy is
            else:
                first_in_batch[key] = i
                fresh.append(i)

        related = await self._related(conn, [batch[i].submission for i in fresh])
        earlier = await self._earlier(conn, [batch[i].petitioner_key for i in fresh])
        rows: list[tuple[Any, ...]] = []
        events: list[outbox.Outgoing] = []
        for i in fresh:
            p = batch[i]
            s = p.submission
            related_id: uuid.UUID | None = None
            if s.kind in REVIEW_KINDS:
                problem, related_id = self._check_review(s, related, now)
                if problem:
                    outcomes[i] = Outcome(Result.REFUSED, errors=[problem])
                    continue
            duplicate_of, again = (None, False) if s.kind in REVIEW_KINDS else self._repeat(p, earlier)
            status = (
                MatterStatus.DUPLICATE
                if duplicate_of
                else MatterStatus.NOT_ACCEPTED_AGAIN
                if again
                else MatterStatus.REGISTERED
            )
            matter_id, code = uuid.uuid4(), new_tracking_code()
            if status == MatterStatus.REGISTERED and s.kind not in REVIEW_KINDS:
                earlier[p.petitioner_key].append(_Earlier(matter_id, p.fingerprint, status))
            rows.append(_row(p, matter_id, code, status, duplicate_of, again, related_id, now))
            event = self._registered_event(p, matter_id, code, now, duplicate_of, again, related_id)
            events.append(outbox.Outgoing(MATTERS_REGISTERED_V2.name, str(matter_id), event, context=p.trace))
            outcomes[i] = Outcome(Result.REGISTERED, matter_id, code, status.value)

        inserted = await self._insert(conn, rows)
        if len(inserted) < len(rows):
            # Another transaction registered some of the same (channel, external_id) meanwhile.
            registered_here = {i: o.matter_id for i in fresh if (o := outcomes[i]) is not None and o.matter_id}
            lost = {i for i, matter_id in registered_here.items() if matter_id not in inserted}
            now_known = await self._known(conn, [batch[i].idempotency_key for i in lost])
            for i in lost:
                outcomes[i] = _again(now_known[batch[i].idempotency_key], batch[i])
            events = [e for e in events if uuid.UUID(e.key or "") in inserted]
        await outbox.enqueue_many(conn, events)

        for i, p in enumerate(batch):
            if outcomes[i] is None:
                first = outcomes[first_in_batch[p.idempotency_key]]
                assert first is not None
                outcomes[i] = _copy_of(first, batch[first_in_batch[p.idempotency_key]], p)
        return [o for o in outcomes if o is not None]

    async def _known(self, conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        if not keys:
            return {}
        rows = await conn.fetch(
            "SELECT m.channel, m.external_id, m.matter_id, m.tracking_code, m.content_hash, m.status"
            " FROM matters m JOIN unnest($1::text[], $2::text[]) AS k(channel, external_id)"
            " USING (channel, external_id)",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {(r["channel"], r["external_id"]): r for r in rows}

    async def _related(self, conn: asyncpg.Connection, submissions: list[Submission]) -> dict[str, Any]:
        codes = [
            normalise(s.related_tracking_code)
            for s in submissions
            if s.kind in REVIEW_KINDS and s.related_tracking_code
        ]
        if not codes:
            return {}
        rows = await conn.fetch(
            "SELECT matter_id, tracking_code, kind, status, concluded_at FROM matters WHERE tracking_code = ANY($1)",
            codes,
        )
        return {r["tracking_code"]: r for r in rows}

    async def _earlier(self, conn: asyncpg.Connection, keys: list[bytes]) -> defaultdict[bytes, list[_Earlier]]:
        found: defaultdict[bytes, list[_Earlier]] = defaultdict(list)
        if not keys:
            return found
        rows = await conn.fetch(
            "SELECT matter_id, petitioner_key, fingerprint, status FROM matters"
            " WHERE petitioner_key = ANY($1::bytea[]) AND duplicate_of IS NULL AND NOT not_accepted_again"
            " AND kind <> ALL($2::text[]) ORDER BY registered_at",
            list(set(keys)),
            [k.value for k in REVIEW_KINDS],
        )
        for r in rows:
            found[bytes(r["petitioner_key"])].append(_Earlier(r["matter_id"], r["fingerprint"], r["status"]))
        return found

    def _check_review(
        self, s: Submission, related: dict[str, Any], now: datetime
    ) -> tuple[FieldError | None, uuid.UUID | None]:
        code = normalise(s.related_tracking_code or "")
        earlier = related.get(code or "")
        if earlier is None:
            return error("related_tracking_code", "no matter has this tracking code"), None
        status = earlier["status"]
        if status == MatterStatus.TERMINATED:
            return error("related_tracking_code", "that matter's chain is terminated: it is final (三级终结)"), None
        if status == MatterStatus.CLOSED:
            return error(
                "related_tracking_code", "the window to ask one level up about that matter ended: it is closed"
            ), None
        if s.kind == Kind.RE_REVIEW_REQUEST:
            if earlier["kind"] != Kind.REVIEW_REQUEST or status != MatterStatus.REVIEW_CONCLUDED:
                return error(
                    "related_tracking_code",
                    f"a re-review needs a concluded review; that matter is a {earlier['kind']} and {status}"
                    " (request a review first)",
                ), None
        elif earlier["kind"] in REVIEW_KINDS:
            return error(
                "related_tracking_code",
                f"that matter is a {earlier['kind']}: ask for its re-review (kind re-review-request)",
            ), None
        elif status != MatterStatus.CONCLUDED:
            return error(
                "related_tracking_code", f"the earlier matter is not concluded (it is {status}); nothing to review yet"
            ), None
        concluded_at = earlier["concluded_at"]
        # The statutory window (shared deadline rules), counted from the opinion as the law counts periods.
        level = DeadlineType.RE_REVIEW if s.kind == Kind.RE_REVIEW_REQUEST else DeadlineType.REVIEW
        window = self.deadlines.request_window(level)
        ends = window.due(concluded_at) if concluded_at is not None else None
        if ends is None or now >= ends:
            last_day = period_last_day(ends).isoformat() if ends else "unknown"
            return error(
                "related_tracking_code",
                f"the {window.length}-day window to request a {level.value} ended with {last_day} (Beijing time)",
            ), None
        return None, earlier["matter_id"]

    def _repeat(self, p: Prepared, earlier: dict[bytes, list[_Earlier]]) -> tuple[uuid.UUID | None, bool]:
        """(duplicate_of, not_accepted_again) for a new submission against the petitioner's earlier matters."""
        same = [e for e in earlier.get(p.petitioner_key, []) if self.repeats.same(p.fingerprint, e.fingerprint)]
        for e in same:  # oldest first: a copy points at the original
            if e.status in OPEN:
                return e.matter_id, False
        if any(e.status == MatterStatus.TERMINATED for e in same):
            return None, True
        return None, False

    async def _insert(self, conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> set[uuid.UUID]:
        """One statement for the lot; returns the ids actually inserted (a row whose (channel, external_id)
        another transaction registered meanwhile is not)."""
        if not rows:
            return set()
        columns = list(zip(*rows, strict=True))
        # unnest() flattens a two-dimensional array: each fingerprint travels as its text form instead.
        columns[9] = tuple("{" + ",".join(map(str, fp)) + "}" for fp in columns[9])
        inserted = await conn.fetch(
            "INSERT INTO matters (matter_id, tracking_code, channel, external_id, content_hash, kind,"
            " petitioner_key, personal_data, details, fingerprint, submitted_at, registered_at, duplicate_of,"
            " not_accepted_again, related_matter_id, status, status_at, received_by)"
            " SELECT m, c, ch, e, h, k, pk, pd, d, fp::int[], sa, ra, dup, again, rel, st, ra, rb"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[], $7::bytea[],"
            " $8::bytea[], $9::jsonb[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::uuid[],"
            " $14::bool[], $15::uuid[], $16::text[], $17::text[])"
            " AS u(m, c, ch, e, h, k, pk, pd, d, fp, sa, ra, dup, again, rel, st, rb)"
            " ON CONFLICT (channel, external_id) DO NOTHING RETURNING matter_id",
            *columns,
        )
        return {r["matter_id"] for r in inserted}

    def _registered_event(
        self,
        p: Prepared,
        matter_id: uuid.UUID,
        code: str,
        now: datetime,
        duplicate_of: uuid.UUID | None,
        again: bool,
        related_id: uuid.UUID | None,
    ) -> bytes:
        """matters.registered.v2 as JSON, from the validated submission's JSON form (the busiest event: built
        without a second validation; tests parse every one with the MatterRegisteredV2 model). The personal
        block, the tracking code and the code a review named are sealed for routing and notify alone."""
        clear = {k: v for k, v in p.as_json.items() if k not in _SEALED_FIELDS}
        personal = {
            "tracking_code": code,
            "petitioner": p.as_json["petitioner"],
            "representatives": p.as_json["representatives"],
            "related_tracking_code": p.as_json["related_tracking_code"],
        }
        return orjson.dumps(
            {
                "event_id": str(uuid.uuid4()),
                "occurred_at": now.isoformat(),
                "matter_id": str(matter_id),
                "registered_at": now.isoformat(),
                "duplicate_of": str(duplicate_of) if duplicate_of else None,
                "not_accepted_again": again,
                **clear,
                "representative_count": len(p.as_json["representatives"]),
                "related_matter_id": str(related_id) if related_id else None,
                # Staff identity, not the petitioner's: in clear.
                "received_by": p.received_by,
                "sealed": self.transport.seal(orjson.dumps(personal), matter_id=matter_id),
            }
        )


# What of a submission travels only in the sealed block of matters.registered.v2.
_SEALED_FIELDS = frozenset({"petitioner", "representatives", "related_tracking_code"})


def _row(
    p: Prepared,
    matter_id: uuid.UUID,
    code: str,
    status: MatterStatus,
    duplicate_of: uuid.UUID | None,
    again: bool,
    related_id: uuid.UUID | None,
    now: datetime,
) -> tuple[Any, ...]:
    s = p.submission
    details = {k: v for k, v in p.as_json.items() if k not in ("petitioner", "representatives")}
    return (
        matter_id,
        code,
        s.channel.value,
        s.external_id,
        p.content_hash,
        s.kind.value,
        p.petitioner_key,
        p.sealed,
        details,
        p.fingerprint,
        s.submitted_at,
        now,
        duplicate_of,
        again,
        related_id,
        status.value,
        p.received_by,
    )


def _again(row: Any, p: Prepared) -> Outcome:
    if bytes(row["content_hash"]) == p.content_hash:
        return Outcome(Result.EXISTING, row["matter_id"], row["tracking_code"], row["status"])
    return _conflict(p, row["matter_id"], row["tracking_code"])


def _conflict(p: Prepared, matter_id: uuid.UUID | None, code: str | None) -> Outcome:
    return Outcome(
        Result.CONFLICT,
        matter_id,
        code,
        errors=[
            error(
                "external_id",
                f"'{p.submission.external_id}' was already submitted on channel {p.submission.channel.value}"
                " with different content; send a new external_id for a new matter",
            )
        ],
    )


def _copy_of(first: Outcome, first_p: Prepared, p: Prepared) -> Outcome:
    """A second copy of the same (channel, external_id) inside one batch."""
    if first.result in (Result.REGISTERED, Result.EXISTING) and first_p.content_hash == p.content_hash:
        return Outcome(Result.EXISTING, first.matter_id, first.tracking_code, first.status)
    if first_p.content_hash == p.content_hash:
        return first
    return _conflict(p, first.matter_id, first.tracking_code)
