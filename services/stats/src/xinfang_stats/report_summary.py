"""The report's written summary, made from its figures by fixed rules (no language model): the volume and its
changes, the largest change of any group, handling and the units falling behind, supervision, group visits,
satisfaction, new hot terms and surges. Each rule gives a sentence or nothing; the order is the order below."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .report_data import ReportData, acceptance_rate, change
from .report_text import name, percent, signed_percent

# A group's change counts for "the largest" only from this many matters in one of the two periods: a city going
# from 1 to 3 matters is +200% and says nothing.
MIN_MATTERS = 5
# A unit falls behind below this on-time rate, or when its rate fell this much since the previous period.
BEHIND_RATE = 0.8
BEHIND_DROP = 0.1
DIMENSIONS = ("category", "region", "channel", "office", "unit")
DIMENSION_WORDS = {
    "zh-CN": {"category": "问题类别", "region": "城市", "channel": "渠道", "office": "处室", "unit": "责任单位"},
    "en": {"category": "category", "region": "city", "channel": "channel", "office": "office", "unit": "unit"},
}


@dataclass(frozen=True)
class Change:
    dimension: str
    key: Any
    now: int
    before: int

    @property
    def delta(self) -> int:
        return self.now - self.before


def largest_change(data: ReportData) -> Change | None:
    """The group (of any dimension) whose registrations moved most from the previous period, in matters; ties
    go to the first dimension in DIMENSIONS, then the larger count."""
    best: Change | None = None
    for dimension in DIMENSIONS:
        compared = data.groups[dimension]
        keys = {r["key"] for r in compared.rows} | {r["key"] for r in compared.previous}
        for key in keys:
            if key is None:
                continue
            now = next((r["registered"] for r in compared.rows if r["key"] == key), 0)
            before = next((r["registered"] for r in compared.previous if r["key"] == key), 0)
            if max(now, before) < MIN_MATTERS:
                continue
            candidate = Change(dimension, key, now, before)
            if best is None or abs(candidate.delta) > abs(best.delta):
                best = candidate
    return best if best is not None and best.delta != 0 else None


def units_behind(data: ReportData) -> list[dict[str, Any]]:
    """Units whose on-time rate is below BEHIND_RATE, or fell by BEHIND_DROP or more since the previous period."""
    previous = {r["key"]: r for r in data.groups["unit"].previous}
    behind = []
    for unit in data.units_late:
        rate = unit["on_time_rate"]
        before = (previous.get(unit["unit"]) or {}).get("on_time_rate")
        if rate < BEHIND_RATE or (before is not None and before - rate >= BEHIND_DROP):
            behind.append(unit | {"before": before})
    return behind


def summary(data: ReportData) -> list[str]:
    rules: list[Callable[[ReportData], str | None]] = [
        _volume,
        _largest,
        _handling,
        _behind,
        _supervision,
        _visits,
        _satisfaction,
        _terms,
        _surges,
    ]
    return [s for s in (rule(data) for rule in rules) if s]


def _zh(data: ReportData) -> bool:
    return data.language != "en"


def _volume(data: ReportData) -> str:
    now, prev, year = data.overall, data.overall_previous, data.overall_last_year
    mom = signed_percent(change(now["registered"], prev["registered"]))
    yoy = signed_percent(change(now["registered"], year["registered"]))
    if _zh(data):
        return (
            f"本期共登记信访事项 {now['registered']} 件，其中重复件 {now['repeats']} 件；"
            f"环比 {mom}（上期 {prev['registered']} 件），同比 {yoy}（去年同期 {year['registered']} 件）。"
        )
    return (
        f"{now['registered']} matters were registered in the period, {now['repeats']} of them repeats: {mom} on the"
        f" previous period ({prev['registered']}) and {yoy} on the same days a year before ({year['registered']})."
    )


def _largest(data: ReportData) -> str | None:
    found = largest_change(data)
    if found is None:
        return None
    what = name(data.language, found.dimension, found.key)
    dimension = DIMENSION_WORDS["zh-CN" if _zh(data) else "en"][found.dimension]
    rate = signed_percent(change(found.now, found.before))
    if _zh(data):
        verb = "增加" if found.delta > 0 else "减少"
        return (
            f"变化最大的是{dimension}「{what}」：由上期 {found.before} 件{verb}至 {found.now} 件"
            f"（{found.delta:+d} 件，{rate}）。"
        )
    return (
        f"The largest change was the {dimension} {what}: {found.now} matters against {found.before} in the previous"
        f" period ({found.delta:+d}, {rate})."
    )


def _handling(data: ReportData) -> str:
    now, prev = data.overall, data.overall_previous
    accepted = percent(acceptance_rate(now))
    on_time, before = now["on_time_rate"], prev["on_time_rate"]
    points = "" if on_time is None or before is None else f"{(on_time - before) * 100:+.2f}"
    if _zh(data):
        tail = f"，较上期 {points} 个百分点" if points else ""
        return (
            f"转送交办 {now['routed']} 件，受理 {now['accepted']} 件（受理率 {accepted}）；办结 {now['concluded']} 件，"
            f"按期办结率 {percent(on_time)}{tail}；办结用时中位数 {now['median_days_to_conclude'] or '—'} 天，"
            f"P90 {now['p90_days_to_conclude'] or '—'} 天；超期 {now['overdue']} 件。"
        )
    tail = f", {points} points on the previous period" if points else ""
    return (
        f"{now['routed']} matters were routed and {now['accepted']} accepted (acceptance rate {accepted});"
        f" {now['concluded']} were concluded, on time {percent(on_time)}{tail}; median time to conclude"
        f" {now['median_days_to_conclude'] or '—'} days, P90 {now['p90_days_to_conclude'] or '—'}; {now['overdue']}"
        " went overdue."
    )


def _behind(data: ReportData) -> str | None:
    behind = units_behind(data)[:5]
    if not behind:
        return None
    lang = data.language
    listed = [
        f"{name(lang, 'unit', u['unit'])}（{percent(u['on_time_rate'])}，超期 {u['overdue']} 件）" for u in behind
    ]
    if _zh(data):
        return "办理滞后的单位：" + "、".join(listed) + "，请督促加快办理。"
    listed = [f"{name(lang, 'unit', u['unit'])} ({percent(u['on_time_rate'])}, {u['overdue']} overdue)" for u in behind]
    return "Units falling behind: " + "; ".join(listed) + "."


def _supervision(data: ReportData) -> str | None:
    orders = sum(r["orders"] for r in data.supervision)
    escalations = sum(r["escalations"] for r in data.supervision)
    if not orders and not escalations:
        return None
    if _zh(data):
        return f"本期发出督办 {orders} 件，升级至督查复查处 {escalations} 件。"
    return f"{orders} supervision orders were issued, and {escalations} matters escalated to the Supervision Office."


def _visits(data: ReportData) -> str | None:
    v, before = data.visits, data.visits_previous
    if not v.get("group_visits") and not v.get("not_accepted_again"):
        return None
    if _zh(data):
        return (
            f"集体访 {v['group_visits']} 批 {v['group_people']} 人次（上期 {before.get('group_visits', 0)} 批），"
            f"其中大规模集体访 {v['massive_visits']} 批；"
            f"重复信访 {v['duplicates']} 件，不再受理 {v['not_accepted_again']} 件。"
        )
    return (
        f"{v['group_visits']} group visits brought {v['group_people']} people ({before.get('group_visits', 0)} in the"
        f" previous period), {v['massive_visits']} of them massive; {v['duplicates']} duplicates and"
        f" {v['not_accepted_again']} matters not accepted again."
    )


def _satisfaction(data: ReportData) -> str | None:
    rated = sum(data.ratings.values())
    if not rated:
        return None
    rate = percent(data.overall["satisfaction"])
    if _zh(data):
        return f"群众评价 {rated} 件，满意率（含基本满意）{rate}。"
    return f"{rated} matters were rated; satisfied or basically satisfied: {rate}."


def _terms(data: ReportData) -> str | None:
    if not data.new_terms:
        return None
    terms = data.new_terms[:8]
    if _zh(data):
        return "新出现的热点词：" + "、".join(f"「{t}」" for t in terms) + "。"
    return "New hot terms: " + ", ".join(f"“{t}”" for t in terms) + "."


def _surges(data: ReportData) -> str | None:
    if not data.alerts:
        return None
    still = sum(1 for a in data.alerts if a["closed_at"] is None)
    scopes = sorted({_scope(data.language, a) for a in data.alerts})
    if _zh(data):
        return f"本期预警 {len(data.alerts)} 次（{'、'.join(scopes)}），其中 {still} 次尚未解除。"
    return f"{len(data.alerts)} surge alerts ({', '.join(scopes)}), {still} still open."


def _scope(language: str, alert: dict[str, Any]) -> str:
    parts = []
    if alert.get("region_code"):
        parts.append(name(language, "region", alert["region_code"]))
    if alert.get("category"):
        parts.append(name(language, "category", alert["category"]))
    return "·".join(parts)


def scope(language: str, alert: dict[str, Any]) -> str:
    return _scope(language, alert)
