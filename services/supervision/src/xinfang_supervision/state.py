"""What supervision's handlers and routes share once the service has started."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from xinfang_shared.deadlines import DeadlineRules

from .clock import Clock
from .scheduler import Scheduler


@dataclass
class SupervisionState:
    pool: asyncpg.Pool
    rules: DeadlineRules
    clock: Clock
    scheduler: Scheduler
