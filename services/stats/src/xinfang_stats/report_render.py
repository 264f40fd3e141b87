"""The report as a PDF: HTML and CSS (a Jinja2 template, autoescaped) set by WeasyPrint, which embeds the subset of
Debian's Noto Sans CJK that the text uses (its CFF outlines, which ReportLab cannot embed), with the charts inline
as SVG (report_charts.py). Page 1 is the key figures and the written summary; then one section per subject."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from xinfang_shared.workdays import CHINA

from . import report_charts as charts
from .report_data import ReportData, acceptance_rate, change
from .report_summary import scope, summary
from .report_text import count, days, name, percent, signed_percent, words

TEMPLATES = Path(__file__).with_name("report_templates")
CHART_ROWS = 12  # a chart shows this many groups at most (the table has them all)
RATINGS = ("satisfied", "basically-satisfied", "unsatisfied")
HEADLINE = ("registered", "repeats", "routed", "accepted", "concluded", "overdue")


@dataclass
class Table:
    title: str
    head: list[str]
    rows: list[list[str]]
    chart: Markup | None = None
    note: str = ""


@dataclass
class Section:
    title: str
    tables: list[Table] = field(default_factory=list)


def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def html(data: ReportData) -> str:
    w = words(data.language)
    context = {
        "w": w,
        "lang": data.language,
        "period": f"{data.period.start} — {data.period.end}",
        "made": data.made_at.strftime("%Y-%m-%d %H:%M"),
        "headline": _headline(data),
        "summary": summary(data),
        "sections": [_volume(data), _quality(data), _focus(data), _satisfaction(data), _hot(data)],
    }
    return _environment().get_template("report.html").render(**context)


def pdf(data: ReportData) -> tuple[bytes, int]:
    """The PDF and its number of pages. CPU-bound (a few seconds): the worker runs it in a thread."""
    from weasyprint import HTML

    logging.getLogger("fontTools").setLevel(logging.WARNING)  # the font subsetter's chatter, per glyph table
    document = HTML(string=html(data), base_url=str(TEMPLATES)).render()
    return document.write_pdf(), len(document.pages)


# ---- the sections ----------------------------------------------------------------------------------------


def _headline(data: ReportData) -> list[list[str]]:
    """Key figures with 环比 and 同比: the overall row of the summary's figures."""
    w = data.language
    now, prev, year = data.overall, data.overall_previous, data.overall_last_year
    rows = []
    for key in HEADLINE:
        rows.append(
            [
                words(w)[key],
                count(now[key]),
                count(prev[key]),
                signed_percent(change(now[key], prev[key])),
                count(year[key]),
                signed_percent(change(now[key], year[key])),
            ]
        )
    for key, label, fmt in (
        ("acceptance_rate", "acceptance_rate", percent),
        ("on_time_rate", "on_time_rate", percent),
        ("median_days_to_conclude", "median", days),
        ("p90_days_to_conclude", "p90", days),
        ("satisfaction", "satisfaction_rate", percent),
    ):

        def value(row: dict[str, Any], key: str = key) -> Any:
            return acceptance_rate(row) if key == "acceptance_rate" else row[key]

        rows.append([words(w)[label], fmt(value(now)), fmt(value(prev)), "", fmt(value(year)), ""])
    return rows


def _compared_table(data: ReportData, group: str, title: str) -> Table:
    w = words(data.language)
    compared = data.groups[group]
    head = [w["key"], w["now"], w["previous"], w["mom"], w["last_year"], w["yoy"]]
    rows = []
    for r in compared.rows:
        prev, year = compared.before("previous", r["key"]), compared.before("last_year", r["key"])
        p, y = (prev or {}).get("registered", 0), (year or {}).get("registered", 0)
        rows.append(
            [
                name(data.language, group, r["key"]),
                str(r["registered"]),
                str(p),
                signed_percent(change(r["registered"], p)),
                str(y),
                signed_percent(change(r["registered"], y)),
            ]
        )
    shown = compared.rows[:CHART_ROWS]
    labels = [name(data.language, group, r["key"]) for r in shown]
    series = [
        (w["now"], [r["registered"] for r in shown]),
        (w["previous"], [(compared.before("previous", r["key"]) or {}).get("registered", 0) for r in shown]),
        (w["last_year"], [(compared.before("last_year", r["key"]) or {}).get("registered", 0) for r in shown]),
    ]
    if group in ("channel", "office"):
        chart = charts.compared_bars(labels, series)
    else:
        chart = charts.horizontal_bars(labels, [r["registered"] for r in shown])
    return Table(title, head, rows, Markup(chart))  # noqa: S704 (matplotlib's SVG, from figures only)


def _volume(data: ReportData) -> Section:
    w = words(data.language)
    section = Section(w["volume"])
    daily = Table(w["daily"], [], [], Markup(charts.daily_line(data.daily))) if data.daily else None  # noqa: S704
    if daily:
        section.tables.append(daily)
    for group, title in (
        ("channel", "by_channel"),
        ("office", "by_office"),
        ("category", "by_category"),
        ("region", "by_region"),
    ):
        section.tables.append(_compared_table(data, group, w[title]))
    v, before = data.visits, data.visits_previous
    keys = ("group_visits", "group_people", "massive_visits", "massive_people", "duplicates", "not_accepted_again")
    rows = [
        [w[k], str(v.get(k, 0)), str(before.get(k, 0)), signed_percent(change(v.get(k), before.get(k)))] for k in keys
    ]
    section.tables.append(Table(w["visits_title"], [w["key"], w["now"], w["previous"], w["mom"]], rows))
    return section


def _handling_table(data: ReportData, group: str, title: str) -> Table:
    w = words(data.language)
    head = [w["key"], w["registered"], w["acceptance_rate"], w["on_time_rate"], w["median"], w["p90"], w["overdue"]]
    rows = [
        [
            name(data.language, group, r["key"]),
            str(r["registered"]),
            percent(acceptance_rate(r)),
            percent(r["on_time_rate"]),
            days(r["median_days_to_conclude"]),
            days(r["p90_days_to_conclude"]),
            str(r["overdue"]),
        ]
        for r in data.groups[group].rows
    ]
    return Table(title, head, rows)


def _quality(data: ReportData) -> Section:
    w = words(data.language)
    section = Section(w["quality"])
    offices = [r for r in data.groups["office"].rows if r["on_time_rate"] is not None]
    for group, title in (("office", "by_office"), ("unit", "by_unit"), ("category", "by_category")):
        section.tables.append(_handling_table(data, group, w[title]))
    if offices:
        section.tables[0].chart = Markup(  # noqa: S704
            charts.horizontal_bars(
                [name(data.language, "office", r["key"]) for r in offices],
                [r["on_time_rate"] for r in offices],
                percent=True,
            )
        )
    return section


def _focus(data: ReportData) -> Section:
    w = words(data.language)
    lang = data.language
    section = Section(w["focus"])
    units = [
        [
            name(lang, "unit", u["unit"]),
            str(u["transferred"]),
            str(u["open"]),
            str(u["overdue"]),
            percent(u["on_time_rate"]),
        ]
        for u in data.units_most
    ]
    head = [w["unit_name"], w["transferred"], w["open"], w["overdue"], w["on_time_rate"]]
    section.tables.append(Table(w["units_most"], head, units))
    categories = data.groups["category"].rows[:10]
    total = data.overall["registered"] or 1
    rows = [
        [name(lang, "category", r["key"]), str(r["registered"]), percent(round(r["registered"] / total, 4))]
        for r in categories
    ]
    section.tables.append(Table(w["categories_most"], [w["key"], w["count"], w["share"]], rows))
    late = [
        [name(lang, "unit", u["unit"]), percent(u["on_time_rate"]), str(u["concluded"]), str(u["overdue"])]
        for u in data.units_late
    ]
    chart = None
    if data.units_late:
        chart = Markup(  # noqa: S704
            charts.horizontal_bars(
                [name(lang, "unit", u["unit"]) for u in data.units_late],
                [u["on_time_rate"] for u in data.units_late],
                percent=True,
            )
        )
    section.tables.append(
        Table(w["units_late"], [w["unit_name"], w["on_time_rate"], w["concluded"], w["overdue"]], late, chart)
    )
    supervision = [[name(lang, "unit", r["unit"]), str(r["orders"]), str(r["escalations"])] for r in data.supervision]
    totals = [
        w["now"],
        str(sum(r["orders"] for r in data.supervision)),
        str(sum(r["escalations"] for r in data.supervision)),
    ]
    section.tables.append(
        Table(w["supervision_title"], [w["unit_name"], w["orders"], w["escalations"]], [*supervision, totals])
    )
    return section


def _satisfaction(data: ReportData) -> Section:
    w = words(data.language)
    section = Section(w["satisfaction"])
    rated = sum(data.ratings.values())
    known = [k for k in RATINGS if k in data.ratings] + sorted(set(data.ratings) - set(RATINGS))
    rows = [
        [name(data.language, "rating", k), str(data.ratings[k]), percent(round(data.ratings[k] / rated, 4))]
        for k in known
    ]
    rows.append([w["satisfaction_rate"], str(rated), percent(data.overall["satisfaction"])])
    section.tables.append(Table(w["rating"], [w["rating"], w["count"], w["share"]], rows))
    by_category = [
        [name(data.language, "category", r["key"]), percent(r["satisfaction"])]
        for r in data.groups["category"].rows
        if r["satisfaction"] is not None
    ]
    if by_category:
        section.tables.append(Table(w["by_category"], [w["key"], w["satisfaction_rate"]], by_category))
    return section


def _hot(data: ReportData) -> Section:
    w = words(data.language)
    section = Section(w["hot"])
    new = set(data.new_terms)
    terms = [
        [t["term"] + (f"（{w['new']}）" if t["term"] in new else ""), str(t["count"]), f"{t['lift']:.2f}"]
        for t in data.terms
    ]
    section.tables.append(Table(w["terms"], [w["term"], w["count"], w["lift"]], terms))
    alerts = [
        [
            scope(data.language, a),
            a["window"],
            str(a["observed"]),
            f"{a['baseline']:.1f}",
            _local(a["opened_at"]),
            _local(a["closed_at"]) if a["closed_at"] else w["still_open"],
        ]
        for a in data.alerts
    ]
    head = [w["scope"], w["window"], w["observed"], w["baseline"], w["opened"], w["closed"]]
    section.tables.append(Table(w["alerts"], head, alerts))
    return section


def _local(at: Any) -> str:
    return str(at.astimezone(CHINA).strftime("%m-%d %H:%M"))
