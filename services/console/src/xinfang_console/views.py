"""How the pages show what the services answer: codes as words in the page's language, times in Beijing time,
how long a deadline has left, and which actions a person is offered on a matter (the services decide; the page
offers only what they would allow, so nobody is shown a button that can only be refused)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from xinfang_shared.contracts.events import MatterStatus
from xinfang_shared.contracts.labels import name_of
from xinfang_shared.contracts.reference import DeadlineType
from xinfang_shared.deadlines import DeadlineRules
from xinfang_shared.staff import Actor, Role

from .accounts import Account

BEIJING = ZoneInfo("Asia/Shanghai")
# A matter in these is its office's to place: a clerk assigns from the queue; once with a unit, its head moves it.
ASSIGNABLE = {MatterStatus.AWAITING_ASSIGNMENT.value}
MOVABLE = {MatterStatus.TRANSFERRED.value, MatterStatus.OBJECTED.value}


def actor_of(person: Account) -> Actor:
    return Actor(person.username, person.role, person.office)


def beijing(iso: str | None) -> str:
    """'2026-12-07 09:30' (Beijing time) from an ISO instant; '—' for none."""
    if not iso:
        return "—"
    return datetime.fromisoformat(iso).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M")


def time_left(lang: str, iso: str | None, now: datetime | None = None) -> str:
    """How long until `iso`, in days and hours, or how long past it."""
    if not iso:
        return "—"
    seconds = (datetime.fromisoformat(iso) - (now or datetime.now(UTC))).total_seconds()
    days, rest = divmod(int(abs(seconds)) // 3600, 24)
    if lang == "en":
        span = f"{days} d {rest} h" if days else f"{rest} h"
        return span + (" left" if seconds >= 0 else " overdue")
    span = f"{days}天{rest}小时" if days else f"{rest}小时"
    return ("剩余" if seconds >= 0 else "已超期") + span


def city_of(region_code: str | None) -> str | None:
    """The 4-digit city prefix ('5101') of a 6-digit region code."""
    return region_code[:4] if region_code and len(region_code) >= 4 else None


def name(lang: str, table: str, code: Any) -> str:
    return name_of(lang, table, None if code is None else str(code))


def matter_actions(person: Account, matter: dict[str, Any], deadlines: list[dict[str, Any]]) -> dict[str, Any]:
    """What the page offers this person on this matter: assign or reassign, and per deadline pause, resume and
    extend (as the deadline rules allow)."""
    who, office, status = actor_of(person), matter.get("office"), matter.get("status")
    rules = DeadlineRules.default()
    changes = who.may_change(office)
    per_deadline: dict[str, list[str]] = {}
    for d in deadlines:
        if not d.get("open"):
            continue
        rule = rules[DeadlineType(d["deadline"])]
        offered = []
        if changes and rule.pausable:
            offered.append("resume" if d.get("paused") else "pause")
        # Extensions left: the view gives the days granted, not how many times, so beyond the first only a rule
        # allowing several offers another (supervision refuses what the rules do not allow either way).
        extensions_left = rule.max_extensions > 1 or (rule.max_extensions == 1 and not d.get("extended_days"))
        if who.may_send_out(office) and extensions_left and not d.get("paused"):
            offered.append("extend")
        if offered:
            per_deadline[d["deadline"]] = offered
    return {
        "assign": status in ASSIGNABLE and changes,
        "reassign": status in MOVABLE and who.may_send_out(office),
        "deadlines": per_deadline,
        "max_extension_days": {t.value: rules[t].max_extension_days for t in DeadlineType},
        "read_only": person.role == Role.LEADER,
    }
