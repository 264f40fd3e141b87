"""What supervision's handlers and routes share once the service has started."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from .clock import Clock
from .ledger import Ledger
from .rules import DeadlineRules
from .scheduler import Scheduler


@dataclass
class SupervisionState:
    pool: asyncpg.Pool
    rules: DeadlineRules
    ledger: Ledger
    clock: Clock
    scheduler: Scheduler
