"""Every v1 message keeps a frozen JSON Schema; an incompatible change fails here."""

from __future__ import annotations

import copy
import json

import pytest

from tests.contract.compat import breaking_changes, retire
from tests.contract.snapshot import contract_models, current_schema, snapshot_path

MODELS = contract_models()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_schema_is_backward_compatible_with_its_snapshot(name: str) -> None:
    frozen = retire(name, json.loads(snapshot_path(name).read_text(encoding="utf-8")))
    problems = breaking_changes(frozen, current_schema(MODELS[name]))
    assert not problems, f"{name} changed incompatibly (publish a .v2 topic instead): {problems}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_snapshot_is_current(name: str) -> None:
    frozen = json.loads(snapshot_path(name).read_text(encoding="utf-8"))
    assert frozen == current_schema(MODELS[name]), (
        f"{name} changed compatibly; refresh the snapshot with `make contract-snapshot` and commit it"
    )


def test_every_snapshot_belongs_to_a_contract_model() -> None:
    on_disk = {p.stem for p in snapshot_path("x").parent.glob("*.json")}
    assert on_disk == set(MODELS), "a v1 message model was removed or renamed"


# The checker itself must be able to fail, or the tests above prove nothing.
def _routed() -> dict:
    return copy.deepcopy(current_schema(MODELS["MatterRouted"]))


def test_checker_flags_a_removed_field() -> None:
    new = _routed()
    del new["properties"]["rule"]
    assert "rule: removed" in breaking_changes(_routed(), new)


def test_checker_flags_a_newly_required_field() -> None:
    new = _routed()
    new["properties"]["priority"] = {"type": "integer"}
    new["required"].append("priority")
    assert "priority: newly required" in breaking_changes(_routed(), new)


def test_checker_flags_a_changed_type_and_a_narrowed_enum() -> None:
    new = _routed()
    new["properties"]["category_inferred"] = {"type": "string"}
    new["$defs"]["Office"]["enum"].remove("guidance")
    problems = breaking_changes(_routed(), new)
    assert any(p.startswith("category_inferred: no longer accepts") for p in problems)
    assert any(p.startswith("office: no longer accepts") and "guidance" in p for p in problems)


def test_checker_accepts_an_added_optional_field() -> None:
    new = _routed()
    new["properties"]["note"] = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
    assert breaking_changes(_routed(), new) == []


def test_only_the_values_listed_as_retired_may_leave_an_enum() -> None:
    old = _status()
    new = copy.deepcopy(old)
    new["$defs"]["MatterStatus"]["enum"].remove("received")
    assert breaking_changes(retire("MatterStatusChanged", old), new) == [], "retired.toml lets it go"
    new["$defs"]["MatterStatus"]["enum"].remove("transferred")
    problems = breaking_changes(retire("MatterStatusChanged", old), new)
    assert any("transferred" in p for p in problems), "a value that was emitted may not"


def _status() -> dict:
    schema = copy.deepcopy(current_schema(MODELS["MatterStatusChanged"]))
    schema["$defs"]["MatterStatus"]["enum"] += ["received", "routed", "in-handling"]
    return schema
