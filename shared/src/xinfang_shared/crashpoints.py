"""Crash points: kill -9 of a service at exactly the moment that matters, for `make chaos` and the tests.

`crash_point(name)` SIGKILLs its own process (nothing flushed, nothing cleaned up: a real crash) when the
environment variable XINFANG_CRASH_AT names that point: `XINFANG_CRASH_AT=relay.acked` kills at the first time
the point is reached in this process, `XINFANG_CRASH_AT=relay.acked@3` at the third. Unset, a call is a single
check of a module global. The variable is read once, at import; it is honoured only when ENVIRONMENT (read as
the services' settings read it) is `local` or `test`: in production it never fires, and the service logs that
it ignored it. In local and test, a name that is not a point below (or a bad count) fails the import, so a typo
does not pass for a point that is never reached.

Just before the kill one line goes to stderr (a raw write, unbuffered): `crash point relay.acked#1: SIGKILL`.

The points:

- `relay.acked` (outbox.py, OutboxRelay._publish_group): librdkafka acknowledged every event of a group's batch
  (acks=all) and the rows are not yet deleted (the delete is the "marking sent", in the transaction that locked
  them). On a crash the transaction rolls back: the rows are published again, with the same event_ids.
- `batch.committed` (batching.py, EventBatches.take, the body of every batch consumer of events): the batch's
  transaction(s) committed and some event was handled for the first time; the offsets are not committed yet
  (FastStream commits them after the handler returns: AckPolicy.NACK_ON_ERROR, enable_auto_commit off). On a
  crash the batch is read again and must be found already done (the inbox).
- `intake.registered` (intake's ingest.py, Intake.take_records, the channel topics' consumer): every lane of
  the batch committed its registrations, the offsets are not committed yet.
- `notify.accepted` (notify's sender.py, Sender.deliver): the SMTP server or the SMS gateway accepted a
  notice and it is not yet marked sent. On a crash its claim lapses and it is sent again with the same
  Message-ID / OutId.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from typing import Literal

from pydantic_settings import BaseSettings

from .settings import ServiceSettings

log = logging.getLogger(__name__)

VARIABLE = "XINFANG_CRASH_AT"
POINTS = frozenset({"relay.acked", "batch.committed", "intake.registered", "notify.accepted"})
ALLOWED_ENVIRONMENTS = frozenset({"local", "test"})


@dataclass
class _Armed:
    name: str
    at: int  # the n-th time the point is reached
    reached: int = 0


class _Environment(BaseSettings):
    """ENVIRONMENT as ServiceSettings reads it (the variable, else `.local/credentials.env`, else production)."""

    model_config = ServiceSettings.model_config
    environment: Literal["local", "test", "production"] = "production"


def parse(spec: str) -> tuple[str, int]:
    """`name` or `name@n` (n ≥ 1) → (name, n); ValueError for anything else."""
    name, _, count = spec.strip().partition("@")
    if name not in POINTS:
        raise ValueError(f"{VARIABLE}={spec!r}: no crash point {name!r} (points: {', '.join(sorted(POINTS))})")
    if not count:
        return name, 1
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{VARIABLE}={spec!r}: the count after @ must be a whole number ≥ 1")
    return name, int(count)


def _environment() -> str:
    try:
        return _Environment().environment
    except Exception:  # an ENVIRONMENT that is none of the three: not a test deployment
        return "production"


def _arm(spec: str | None) -> tuple[_Armed | None, str | None]:
    """What the variable arms, and why it was refused (None when unset or armed)."""
    if not spec:
        return None, None
    environment = _environment()
    if environment not in ALLOWED_ENVIRONMENTS:
        return None, f"{VARIABLE}={spec!r} ignored: crash points are refused in ENVIRONMENT={environment}"
    name, at = parse(spec)
    return _Armed(name, at), None


_armed, _refused = _arm(os.environ.get(VARIABLE))


def crash_point(name: str, when: bool = True) -> None:
    """SIGKILL this process if XINFANG_CRASH_AT names this point and this is the time it counts to. `when`
    False: the point is not reached this time (it does not count)."""
    if _armed is None:
        return
    _reach(name, when)


def _reach(name: str, when: bool) -> None:
    armed = _armed
    if armed is None or name != armed.name or not when:
        return
    armed.reached += 1
    if armed.reached >= armed.at:
        os.write(2, f"crash point {name}#{armed.reached}: SIGKILL\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)


def armed() -> str | None:
    """The point armed in this process (`name@n`), or None."""
    return None if _armed is None else f"{_armed.name}@{_armed.at}"


def announce(environment: str) -> None:
    """Called once the service's logging is set up, with its settings' ENVIRONMENT: logs an armed point (and
    disarms it if those settings say production after all), or that the variable was ignored."""
    global _armed, _refused
    if _armed is not None and environment not in ALLOWED_ENVIRONMENTS:
        _armed = None
        _refused = f"{VARIABLE} ignored: crash points are refused in ENVIRONMENT={environment}"
    if _refused is not None:
        log.warning(_refused)
    elif _armed is not None:
        log.warning("crash point armed: this process SIGKILLs itself there", extra={"crash_at": armed()})
