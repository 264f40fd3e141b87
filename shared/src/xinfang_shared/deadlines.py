"""The statutory deadline rules, as data (data/deadline-rules.toml, or the file DEADLINE_RULES_FILE names): how
long each deadline runs, how it is counted, when it warns and escalates, what may extend or pause it, and the
windows in which a petitioner may ask for a review. Every service that needs a period reads it from here, so
changing a period changes it everywhere: supervision (which tracks the deadlines), routing (the respond-by
times it tells units, the objection window) and intake (the window for review requests).

Periods are counted by `periods.py` (Civil Code arts. 200-204): a due time is 24:00 Beijing time of a day.
Warnings are moments before the due time (3 days, or 20% of a shorter period); escalation is a second
period counted on from the due day.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .contracts.reference import DeadlineType
from .periods import extend_period, period_end, working_period_end

RULES_ENV = "DEADLINE_RULES_FILE"
_PACKAGED = "data/deadline-rules.toml"
# Windows a petitioner may use to ask one level up, by the deadline type they are published as.
REQUEST_WINDOWS = (DeadlineType.REVIEW, DeadlineType.RE_REVIEW)


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
    second_period_days: int
    max_extensions: int
    max_extension_days: int
    pausable: bool

    def due(self, start: datetime) -> datetime:
        """When a period starting at `start` ends (24:00 Beijing time of its last day)."""
        if self.counted_in == CountedIn.WORKING_DAYS:
            return working_period_end(start, self.length)
        return period_end(start, self.length)

    def extended(self, due: datetime, days: int) -> datetime:
        """The due time after an extension of `days`, counted on from the current last day."""
        return extend_period(due, days)

    def warn_at(self, start: datetime, due: datetime) -> datetime | None:
        """Due-soon: `lead_days` before, or `lead_fraction` of the period if that is shorter. None for a
        window, which is never warned about."""
        if not self.obligation:
            return None
        lead = min(timedelta(days=self.lead_days), (due - start) * self.lead_fraction)
        return due - lead

    def escalate_at(self, due: datetime) -> datetime | None:
        """Still overdue after the second period (counted on from the due day): escalated. None for a window."""
        return extend_period(due, self.second_period_days) if self.obligation else None


class DeadlineRules:
    def __init__(self, rules: dict[DeadlineType, DeadlineRule], windows: dict[DeadlineType, DeadlineRule]) -> None:
        missing = set(DeadlineType) - set(rules)
        if missing:
            raise ValueError(f"no rule for deadline(s) {sorted(m.value for m in missing)}")
        if set(windows) != set(REQUEST_WINDOWS):
            raise ValueError(f"request_windows must be exactly {[w.value for w in REQUEST_WINDOWS]}")
        if any(w.obligation for w in windows.values()):
            raise ValueError("a request window is not an obligation (obligation = false)")
        self._rules = rules
        self._windows = windows

    def __getitem__(self, deadline: DeadlineType) -> DeadlineRule:
        return self._rules[deadline]

    def request_window(self, deadline: DeadlineType) -> DeadlineRule:
        """The window, after an opinion, in which the petitioner may ask for the review (`review`) or the
        re-review (`re-review`)."""
        return self._windows[deadline]

    @classmethod
    def default(cls) -> DeadlineRules:
        """The packaged rules, or the file DEADLINE_RULES_FILE names; read once per path."""
        return _load_default(os.environ.get(RULES_ENV) or None)

    @classmethod
    def load(cls, path: Path | None = None) -> DeadlineRules:
        if path is None:
            return cls.default()
        return cls.loads(path.read_text(encoding="utf-8"), origin=str(path))

    @classmethod
    def loads(cls, text: str, *, origin: str = "<rules>") -> DeadlineRules:
        """The rules in TOML `text`; ValueError saying what is wrong otherwise."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{origin}: not valid TOML: {exc}") from None
        defaults: dict[str, Any] = data.get("defaults", {})
        rules = _section(data.get("deadlines", {}), defaults, f"{origin}: deadlines")
        windows = _section(data.get("request_windows", {}), defaults, f"{origin}: request_windows")
        try:
            return cls(rules, windows)
        except ValueError as exc:
            raise ValueError(f"{origin}: {exc}") from None


def _section(raw: dict[str, Any], defaults: dict[str, Any], where: str) -> dict[DeadlineType, DeadlineRule]:
    names = {f.name for f in fields(DeadlineRule)}
    found: dict[DeadlineType, DeadlineRule] = {}
    for name, own in raw.items():
        try:
            deadline = DeadlineType(name)
        except ValueError:
            raise ValueError(f"{where}: unknown deadline '{name}'") from None
        merged = {**defaults, **own}
        unknown, missing = set(merged) - names, names - set(merged) - {"counted_in"}
        if unknown or missing:
            raise ValueError(f"{where}.{name}: unknown setting(s) {sorted(unknown)}, missing {sorted(missing)}")
        try:
            rule = DeadlineRule(**{**merged, "counted_in": CountedIn(merged.get("counted_in", "days"))})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}.{name}: {exc}") from None
        if (
            not isinstance(rule.length, int)
            or rule.length <= 0
            or not 0 < rule.lead_fraction <= 1
            or not isinstance(rule.second_period_days, int)
            or rule.second_period_days < 0
        ):
            raise ValueError(
                f"{where}.{name}: length a whole number > 0, 0 < lead_fraction <= 1, second_period_days a whole"
                " number >= 0 required"
            )
        found[deadline] = rule
    return found


@cache
def _load_default(path: str | None) -> DeadlineRules:
    if path is not None:
        return DeadlineRules.load(Path(path))
    resource = resources.files("xinfang_shared").joinpath(_PACKAGED)
    return DeadlineRules.loads(resource.read_text(encoding="utf-8"), origin=f"xinfang_shared/{_PACKAGED}")
