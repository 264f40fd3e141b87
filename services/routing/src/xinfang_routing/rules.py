"""Routing rules as data (data/routing-rules.toml, or ROUTING_RULES_FILE): which office, which unit, and why.

`RuleBook` watches the file: a changed file is loaded for the next matter; a file that does not load keeps
the previous rules in force and says why in the log.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from xinfang_shared.contracts.reference import CITIES, UNITS, Category, Office

log = logging.getLogger(__name__)

DEFAULT_RULES = Path(__file__).with_name("data") / "routing-rules.toml"
MANUAL_QUEUE_RULE = "unit-5-manual-queue"
_OPERATORS = ("eq", "in", "gte", "exists")


class RulesError(ValueError):
    """The rules file is not a valid rule set."""


@dataclass(frozen=True)
class Condition:
    fact: str
    op: str
    value: Any

    def holds(self, facts: dict[str, Any], settings: dict[str, Any]) -> bool:
        value = settings[self.value[1:]] if isinstance(self.value, str) and self.value.startswith("$") else self.value
        present = self.fact in facts and facts[self.fact] is not None
        if self.op == "exists":
            return present == bool(value)
        if not present:
            return False
        actual = facts[self.fact]
        if self.op == "eq":
            return bool(actual == value)
        if self.op == "in":
            return actual in value
        return isinstance(actual, int | float) and actual >= value  # gte


@dataclass(frozen=True)
class Rule:
    id: str
    target: str  # an office code, a unit code, "$department" or "$city"
    all: tuple[Condition, ...]
    any: tuple[Condition, ...]

    def matches(self, facts: dict[str, Any], settings: dict[str, Any]) -> bool:
        return all(c.holds(facts, settings) for c in self.all) and (
            not self.any or any(c.holds(facts, settings) for c in self.any)
        )


@dataclass(frozen=True)
class Decision:
    office: str
    office_rule: str
    unit: str | None
    unit_rule: str


@dataclass(frozen=True)
class RuleSet:
    version: str
    office_rules: tuple[Rule, ...]
    unit_rules: tuple[Rule, ...]
    departments: dict[str, str]
    sensitive_periods: tuple[tuple[str, date, date], ...]
    settings: dict[str, Any]

    def in_sensitive_period(self, day: date) -> bool:
        return any(start <= day <= end for _, start, end in self.sensitive_periods)

    def decide(self, facts: dict[str, Any]) -> Decision:
        office_rule = next((r for r in self.office_rules if r.matches(facts, self.settings)), None)
        if office_rule is None:
            raise RulesError(f"rule set {self.version}: no office rule matches (a catch-all is missing)")
        for rule in self.unit_rules:
            if rule.matches(facts, self.settings):
                unit = self._resolve_unit(rule.target, facts)
                if unit is not None:
                    return Decision(office_rule.target, office_rule.id, unit, rule.id)
        return Decision(office_rule.target, office_rule.id, None, MANUAL_QUEUE_RULE)

    def _resolve_unit(self, target: str, facts: dict[str, Any]) -> str | None:
        if target == "$department":
            return self.departments.get(str(facts.get("category")))
        if target == "$city":
            code = str(facts.get("location.region_code") or "")
            city = f"city-{code[:4]}"
            return city if city in CITIES else None
        return target


def load_rules(path: Path) -> RuleSet:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RulesError(f"{path}: {exc}") from exc
    settings = {"massive_visit_threshold": int(raw.get("massive_visit_threshold", 50))}
    offices = tuple(_rule(r, "office", settings) for r in raw.get("office_rules", []))
    units = tuple(_rule(r, "unit", settings) for r in raw.get("unit_rules", []))
    for rule in offices:
        if rule.target not in {o.value for o in Office} - {Office.GENERAL.value}:
            raise RulesError(f"{rule.id}: '{rule.target}' is not an office that receives matters")
    for rule in units:
        if rule.target not in ("$department", "$city") and rule.target not in UNITS:
            raise RulesError(f"{rule.id}: '{rule.target}' is not a unit")
    ids = [r.id for r in offices + units]
    if len(ids) != len(set(ids)):
        raise RulesError("rule ids must be unique")
    departments = {str(k): str(v) for k, v in raw.get("departments", {}).items()}
    for category, unit in departments.items():
        if category not in {c.value for c in Category} or unit not in UNITS:
            raise RulesError(f"departments: '{category}' = '{unit}' is not a category and a unit")
    periods = tuple((str(p["name"]), p["from"], p["to"]) for p in raw.get("sensitive_periods", []))
    for name, start, end in periods:
        if not (isinstance(start, date) and isinstance(end, date) and start <= end):
            raise RulesError(f"sensitive period {name}: from and to must be dates, from <= to")
    return RuleSet(str(raw.get("version", "unversioned")), offices, units, departments, periods, settings)


def _rule(raw: dict[str, Any], kind: str, settings: dict[str, Any]) -> Rule:
    rule_id = raw.get("id")
    target = raw.get(kind)
    if not isinstance(rule_id, str) or not isinstance(target, str):
        raise RulesError(f"every {kind} rule needs an id and a {kind}: {raw}")
    return Rule(
        rule_id,
        target,
        _conditions(rule_id, raw.get("all", []), settings),
        _conditions(rule_id, raw.get("any", []), settings),
    )


def _conditions(rule_id: str, raw: list[dict[str, Any]], settings: dict[str, Any]) -> tuple[Condition, ...]:
    conditions = []
    for item in raw:
        ops = [op for op in _OPERATORS if op in item]
        if "fact" not in item or len(ops) != 1:
            raise RulesError(f"{rule_id}: a condition is {{fact = ..., one of {_OPERATORS}}}: {item}")
        value = item[ops[0]]
        if isinstance(value, str) and value.startswith("$") and value[1:] not in settings:
            raise RulesError(f"{rule_id}: unknown setting {value}")
        conditions.append(Condition(item["fact"], ops[0], value))
    return tuple(conditions)


class RuleBook:
    """The rule set in force, reloaded when its file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = path.stat().st_mtime_ns
        self.current = load_rules(path)

    def rules(self) -> RuleSet:
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            return self.current
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self.current = load_rules(self.path)
                log.info("routing rules reloaded", extra={"version": self.current.version})
            except RulesError as exc:
                log.error("routing rules file rejected; previous rules stay in force", extra={"error": str(exc)})
        return self.current
