"""What intake's handlers share once the service has started."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from xinfang_shared.batching import Coalescer
from xinfang_shared.dlq_limit import DeadLetterLimit

from .channel_keys import ChannelKeys
from .ingest import Intake
from .registration import Outcome, Prepared, Registrar


@dataclass
class IntakeState:
    pool: asyncpg.Pool
    registrar: Registrar
    intake: Intake
    keys: ChannelKeys
    coalescer: Coalescer[Prepared, Outcome]
    http_limit: DeadLetterLimit  # the coalescer's: HTTP submissions that fail alone
    recording: bool = False  # spans are recorded: a request's trace context goes with its submission
    console_system: str = "console"  # settings.console_system: the one channel system whose key names a person
