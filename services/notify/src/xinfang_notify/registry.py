"""The notice table and the contact registry, as data (data/notices.toml, data/contacts.toml).

The notice table says, for each notice of DOMAIN.md (names as in CONTRACT.md), who receives it and whether it
is urgent (never held by quiet hours). The contact registry says how each unit and office is reached (its duty
mailbox, or its inbox topic for the city systems that integrate through topics) and what it is called in each
language. Both are checked when they load: every notice of the contract and every unit and office that can be
named must be there.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from xinfang_shared.contracts.reference import UNITS, Language, Office


class Notice(StrEnum):
    RECEIPT = "receipt"
    REPEAT = "repeat"
    TRANSFERRED = "transferred"
    ACCEPTED = "accepted"
    NOT_ACCEPTED = "not-accepted"
    EXTENDED = "extended"
    OPINION = "opinion"
    TERMINATED = "terminated"
    DUE_SOON = "due-soon"
    OVERDUE = "overdue"
    ESCALATED = "escalated"
    URGENT_VISIT = "urgent-visit"
    SURGE = "surge"
    REPORT = "report"


class RecipientKind(StrEnum):
    PETITIONER = "petitioner"
    UNIT = "unit"
    OFFICE = "office"
    LEADER = "leader"  # one of the bureau's leaders (the contact registry's [leaders])


class Via(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    TOPIC = "topic"  # the unit's inbox topic (units.<unit>.inbox.v1)


@dataclass(frozen=True)
class NoticeRule:
    notice: Notice
    to: RecipientKind
    office: str | None  # for notices to an office: which
    urgent: bool
    leaders: bool = False  # also to each of the bureau's leaders


@dataclass(frozen=True)
class Contact:
    names: dict[Language, str]
    email: str
    via: Via

    def name(self, language: Language) -> str:
        return self.names[language]


class RegistryError(ValueError):
    """A notice table or contact registry that does not load, and why."""


def load_notices(path: Path) -> dict[Notice, NoticeRule]:
    raw = _toml(path).get("notices", {})
    rules: dict[Notice, NoticeRule] = {}
    for name, entry in raw.items():
        try:
            notice = Notice(name)
        except ValueError:
            raise RegistryError(f"{path}: '{name}' is not a notice of the contract") from None
        to = str(entry.get("to", ""))
        kind, _, office = to.partition(":")
        if kind not in {k.value for k in RecipientKind} or (kind == "office") != bool(office):
            raise RegistryError(f"{path}: notices.{name}.to must be petitioner, unit or office:<code>, not '{to}'")
        if office and office not in {o.value for o in Office}:
            raise RegistryError(f"{path}: notices.{name}.to: '{office}' is not an office")
        urgent, leaders = bool(entry.get("urgent", False)), bool(entry.get("leaders", False))
        rules[notice] = NoticeRule(notice, RecipientKind(kind), office or None, urgent, leaders)
    missing = set(Notice) - set(rules)
    if missing:
        raise RegistryError(f"{path}: no entry for {sorted(m.value for m in missing)}")
    return rules


class Contacts:
    def __init__(
        self, units: dict[str, Contact], offices: dict[str, Contact], leaders: dict[str, Contact] | None = None
    ) -> None:
        self.units = units
        self.offices = offices
        self.leaders = leaders or {}

    @classmethod
    def load(cls, path: Path) -> Contacts:
        raw = _toml(path)
        units = {code: _contact(path, f"units.{code}", entry) for code, entry in raw.get("units", {}).items()}
        offices = {code: _contact(path, f"offices.{code}", entry) for code, entry in raw.get("offices", {}).items()}
        if missing := set(UNITS) - set(units):
            raise RegistryError(f"{path}: no contact for the unit(s) {sorted(missing)}")
        if missing := {o.value for o in Office} - set(offices):
            raise RegistryError(f"{path}: no contact for the office(s) {sorted(missing)}")
        leaders = {code: _contact(path, f"leaders.{code}", entry) for code, entry in raw.get("leaders", {}).items()}
        if any(c.via != Via.EMAIL for c in leaders.values()):
            raise RegistryError(f"{path}: the leaders are reached by e-mail")
        return cls(units, offices, leaders)

    def of(self, kind: RecipientKind, code: str) -> Contact:
        if kind == RecipientKind.LEADER:
            return self.leaders[code]
        return (self.units if kind == RecipientKind.UNIT else self.offices)[code]

    def unit_name(self, code: str | None, language: Language) -> str:
        if code is None:
            return "四川省信访局" if language == Language.ZH_CN else "the Bureau"
        contact = self.units.get(code)
        return contact.name(language) if contact else code


def _contact(path: Path, where: str, entry: Any) -> Contact:
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("zh", "en", "email")):
        raise RegistryError(f"{path}: {where} needs zh, en and email")
    via = str(entry.get("via", "email"))
    if via not in (Via.EMAIL, Via.TOPIC):
        raise RegistryError(f"{path}: {where}.via is email or topic, not '{via}'")
    names = {Language.ZH_CN: entry["zh"], Language.EN: entry["en"]}
    return Contact(names, entry["email"], Via(via))


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"{path}: {exc}") from None
