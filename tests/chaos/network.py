"""Faults of `make chaos`: network (merged into tests/chaos/__main__.py's ALL_FAULTS)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.chaos.__main__ import Chaos

FAULTS: dict[str, Callable[[Chaos, argparse.Namespace], Awaitable[str]]] = {}
