"""Faults of `make chaos`: kill -9 at exact points (xinfang_shared/crashpoints.py), merged into
tests/chaos/__main__.py's ALL_FAULTS.

Each stops one instance of the service gracefully, starts it again with XINFANG_CRASH_AT naming the point,
waits (under the run's load) until it SIGKILLs itself there, and starts it once more without the variable:
- `crash-<service>-after-commit`: a batch consumer's transaction committed, its offsets not yet
  (`batch.committed`; intake's channel-topics consumer: `intake.registered`);
- `crash-relay-after-ack` (routing's relay; `crash-intake-relay-after-ack`, intake's): Kafka acknowledged a
  batch of outbox rows, they are not yet deleted (`relay.acked`);
- `crash-notify-after-accept`: the SMTP server or the SMS gateway accepted a notice, it is not yet marked sent
  (`notify.accepted`).
The point is armed at its n-th passage (`name@n`), so the crash lands in the steady flow after the restart
rather than on the first batch of what queued up while the service was down.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from xinfang_shared.crashpoints import VARIABLE, parse

if TYPE_CHECKING:
    from tests.chaos.__main__ import Chaos

Fault = Callable[["Chaos", argparse.Namespace], Awaitable[str]]

# How long the armed instance may take to reach its point under the run's load before the fault fails.
REACH_TIMEOUT_S = 120.0


def crash_at(service: str, spec: str) -> Fault:
    name, _ = parse(spec)  # a typo fails at import, not after a 2-minute wait

    async def crash(chaos: Chaos, _: argparse.Namespace) -> str:
        victim = chaos.instances(service)[0]
        stopping = time.perf_counter()
        await asyncio.to_thread(victim.stop)
        stopped_s = time.perf_counter() - stopping
        logged = victim.log_path.stat().st_size if victim.log_path.exists() else 0
        started = time.perf_counter()
        victim.start(extra_env={VARIABLE: spec})
        assert victim.proc is not None
        armed_pid = victim.proc.pid
        while victim.proc.poll() is None:
            if time.perf_counter() - started > REACH_TIMEOUT_S:
                raise TimeoutError(
                    f"{victim.name} (pid {armed_pid}, {VARIABLE}={spec}) did not reach crash point {name!r}"
                    f" in {REACH_TIMEOUT_S:.0f} s under load; it keeps running armed:\n{victim.log_tail()}"
                )
            await asyncio.sleep(0.1)
        took = time.perf_counter() - started
        code = victim.proc.returncode
        with victim.log_path.open("rb") as log:
            log.seek(logged)
            since_start = log.read().decode(errors="replace")
        if code != -signal.SIGKILL or f"crash point {name}#" not in since_start:
            raise RuntimeError(
                f"{victim.name} (pid {armed_pid}, {VARIABLE}={spec}) exited with {code}, not by SIGKILL at"
                f" {name!r}:\n{victim.log_tail()}"
            )
        victim.start()
        return (
            f"stopped ({stopped_s:.1f} s), started with {VARIABLE}={spec}: pid {armed_pid} SIGKILLed itself there"
            f" {took:.1f} s after its start; started again"
        )

    return crash


FAULTS: dict[str, Fault] = {
    "crash-intake-after-commit": crash_at("intake", "intake.registered@3"),
    "crash-routing-after-commit": crash_at("routing", "batch.committed@3"),
    "crash-supervision-after-commit": crash_at("supervision", "batch.committed@3"),
    "crash-notify-after-commit": crash_at("notify", "batch.committed@3"),
    "crash-stats-after-commit": crash_at("stats", "batch.committed@3"),
    "crash-relay-after-ack": crash_at("routing", "relay.acked@2"),
    "crash-intake-relay-after-ack": crash_at("intake", "relay.acked@2"),
    "crash-notify-after-accept": crash_at("notify", "notify.accepted@3"),
}
