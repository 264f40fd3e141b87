"""Every code a page shows has a name in both languages (xinfang_shared/data/labels): a code added to the
contract without one would show raw to a petitioner."""

from __future__ import annotations

from enum import StrEnum

import pytest

from xinfang_notify.registry import Notice, RecipientKind, Via
from xinfang_shared.contracts.events import MatterStatus
from xinfang_shared.contracts.labels import LANGUAGES, labels, name_of
from xinfang_shared.contracts.reference import (
    CITIES,
    UNITS,
    Category,
    Channel,
    DeadlineState,
    DeadlineType,
    Kind,
    Office,
    OpinionResult,
    Rating,
    VisitPlace,
)
from xinfang_shared.staff import Role

TABLES: dict[str, type[StrEnum]] = {
    "channel": Channel,
    "office": Office,
    "category": Category,
    "kind": Kind,
    "status": MatterStatus,
    "deadline": DeadlineType,
    "deadline_state": DeadlineState,
    "rating": Rating,
    "opinion_result": OpinionResult,
    "role": Role,
    "visit_place": VisitPlace,
    "notice": Notice,
    "notice_channel": Via,
    "recipient_kind": RecipientKind,
}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_code_has_a_name(lang: str) -> None:
    tables = labels(lang)
    for table, codes in TABLES.items():
        missing = {c.value for c in codes} - set(tables[table])
        assert not missing, f"{lang} {table}: no name for {sorted(missing)}"
        assert all(tables[table].values()), f"{lang} {table}: a blank name"
    assert set(UNITS) <= set(tables["unit"]), f"{lang}: a unit without a name"
    assert {code.removeprefix("city-") for code in CITIES} <= set(tables["city"])


def test_a_code_without_a_name_shows_as_itself_and_none_as_a_dash() -> None:
    assert name_of("en", "status", "transferred") == "Sent to a unit"
    assert name_of("zh-CN", "status", "some-new-status") == "some-new-status"
    assert name_of("fr", "office", "reception") == name_of("zh-CN", "office", "reception")
    assert name_of("en", "unit", None) == "—"
