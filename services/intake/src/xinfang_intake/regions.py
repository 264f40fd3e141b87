"""GB/T 2260 administrative division codes of Sichuan in force today (data/sichuan_regions.tsv)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_TABLE = Path(__file__).with_name("data") / "sichuan_regions.tsv"


@cache
def sichuan_regions() -> dict[str, str]:
    """code → name, for the province, its 21 prefecture-level divisions and their county-level divisions."""
    rows = (line.split("\t") for line in _TABLE.read_text(encoding="utf-8").splitlines() if line[:1].isdigit())
    return {code: name for code, name in rows}


def is_sichuan_region(code: str) -> bool:
    return code in sichuan_regions()
