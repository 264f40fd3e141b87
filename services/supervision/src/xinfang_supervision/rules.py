"""Deadline rules as data (data/deadline-rules.toml): how long each deadline runs, how it is counted, when
it warns and escalates, and what may extend or pause it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from xinfang_shared.contracts.reference import DeadlineType
from xinfang_shared.workdays import add_working_days

DEFAULT_RULES_FILE = Path(__file__).with_name("data") / "deadline-rules.toml"


class CountedIn(StrEnum):
    DAYS = "days"
    WORKING_DAYS = "working-days"


@dataclass(frozen=True)
class DeadlineRule:
    length: int
    counted_in: CountedIn
    obligation: bool
    lead_days: float
    lead_fraction: float
    second_period_days: float
    max_extensions: int
    max_extension_days: int
    pausable: bool

    def due(self, start: datetime) -> datetime:
        if self.counted_in == CountedIn.WORKING_DAYS:
            return add_working_days(start, self.length)
        return start + timedelta(days=self.length)

    def warn_at(self, start: datetime, due: datetime) -> datetime | None:
        """Due-soon: `lead_days` before, or `lead_fraction` of the period if that is shorter. None for a
        window, which is never warned about."""
        if not self.obligation:
            return None
        lead = min(timedelta(days=self.lead_days), (due - start) * self.lead_fraction)
        return due - lead

    def escalate_at(self, due: datetime) -> datetime | None:
        return due + timedelta(days=self.second_period_days) if self.obligation else None


class DeadlineRules:
    def __init__(self, rules: dict[DeadlineType, DeadlineRule]) -> None:
        missing = set(DeadlineType) - set(rules)
        if missing:
            raise ValueError(f"no rule for deadline(s) {sorted(m.value for m in missing)}")
        self._rules = rules

    def __getitem__(self, deadline: DeadlineType) -> DeadlineRule:
        return self._rules[deadline]

    @classmethod
    def load(cls, path: Path | None = None) -> DeadlineRules:
        source = path or DEFAULT_RULES_FILE
        with source.open("rb") as f:
            data = tomllib.load(f)
        defaults: dict[str, Any] = data.get("defaults", {})
        names = {f.name for f in fields(DeadlineRule)}
        rules: dict[DeadlineType, DeadlineRule] = {}
        for name, own in data.get("deadlines", {}).items():
            try:
                deadline = DeadlineType(name)
            except ValueError:
                raise ValueError(f"{source}: unknown deadline '{name}'") from None
            merged = {**defaults, **own}
            unknown, missing = set(merged) - names, names - set(merged) - {"counted_in"}
            if unknown or missing:
                raise ValueError(
                    f"{source}: deadlines.{name}: unknown setting(s) {sorted(unknown)}, missing {sorted(missing)}"
                )
            try:
                rule = DeadlineRule(**{**merged, "counted_in": CountedIn(merged.get("counted_in", "days"))})
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{source}: deadlines.{name}: {exc}") from None
            if rule.length <= 0 or not 0 < rule.lead_fraction <= 1 or rule.second_period_days < 0:
                raise ValueError(f"{source}: deadlines.{name}: length > 0, 0 < lead_fraction <= 1 required")
            rules[deadline] = rule
        return cls(rules)
