"""What the bureau's codes are called, in Simplified Chinese and English (data/labels/<lang>.json): channels,
offices, categories, cities, units, kinds, statuses, deadlines and their states, ratings, notices. One table for
every page that shows a code to a person: the stats dashboard and the console."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

LANGUAGES = ("zh-CN", "en")


@cache
def labels(lang: str) -> dict[str, dict[str, str]]:
    """`labels(lang)[table][code]`; an unknown language gives the first."""
    lang = lang if lang in LANGUAGES else LANGUAGES[0]
    text = resources.files("xinfang_shared").joinpath(f"data/labels/{lang}.json").read_text(encoding="utf-8")
    tables: dict[str, dict[str, str]] = json.loads(text)
    return tables


def name_of(lang: str, table: str, code: str | None) -> str:
    """The code's name, or the code itself when the table has none (a code added since): never a blank."""
    if code is None:
        return "—"
    return labels(lang).get(table, {}).get(code, code)
