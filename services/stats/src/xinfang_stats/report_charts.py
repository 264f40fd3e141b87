"""The report's charts, drawn by matplotlib as SVG with their text kept as text (svg.fonttype none): WeasyPrint
sets it in the report's embedded Noto CJK font, so a chart's Chinese is searchable text like the rest of the PDF.
The object API (Figure, no pyplot): no global state, so a report made in a worker thread touches nobody else's."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("svg")  # no GUI backend, ever (a service has no display)

from matplotlib import rcParams
from matplotlib.figure import Figure

FONT = "Noto Sans CJK SC"
COLOURS = ("#1f5fa8", "#9bb7d9", "#d9d9d9")  # this period, previous, a year before
rcParams["svg.fonttype"] = "none"
rcParams["svg.hashsalt"] = "xinfang-report"  # the same figures give the same SVG ids
rcParams["font.family"] = [FONT, "DejaVu Sans"]
rcParams["axes.unicode_minus"] = False  # CJK fonts have no U+2212


def _svg(fig: Figure) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg")
    text = out.getvalue()
    # Only the <svg> element (no XML prolog or DOCTYPE) to inline it in the HTML; its size in points.
    return text[text.index("<svg") :]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=72)
    fig.set_layout_engine("constrained")
    return fig


def compared_bars(labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]], width: float = 6.8) -> str:
    """Grouped vertical bars: one group per label, one bar per series (this period, previous, a year before)."""
    fig = _figure(width, 2.6)
    ax = fig.add_subplot()
    n = max(1, len(series))
    step = 0.8 / n
    for i, (name, values) in enumerate(series):
        xs = [x + (i - (n - 1) / 2) * step for x in range(len(labels))]
        bars = ax.bar(xs, values, step, label=name, color=COLOURS[i % len(COLOURS)])
        if i == 0:
            ax.bar_label(bars, fontsize=7)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def horizontal_bars(labels: Sequence[str], values: Sequence[float], *, percent: bool = False) -> str:
    """One bar per label, the largest on top."""
    fig = _figure(6.8, max(1.4, 0.26 * len(labels) + 0.5))
    ax = fig.add_subplot()
    ys = list(range(len(labels)))[::-1]
    bars = ax.barh(ys, values, color=COLOURS[0])
    ax.bar_label(bars, labels=[f"{v * 100:.1f}%" if percent else f"{v:g}" for v in values], fontsize=7, padding=2)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    if percent:
        ax.set_xlim(0, 1.1)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def daily_line(points: Sequence[dict[str, Any]]) -> str:
    """Registrations per Beijing day."""
    fig = _figure(6.8, 1.8)
    ax = fig.add_subplot()
    days = [re.sub(r"^\d{4}-(\d\d)-(\d\d).*", r"\1-\2", p["t"]) for p in points]
    ax.plot(range(len(points)), [p["value"] for p in points], color=COLOURS[0], marker="o", markersize=2)
    step = max(1, len(days) // 10)
    ax.set_xticks(range(0, len(days), step), days[::step], fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylim(bottom=0)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)
