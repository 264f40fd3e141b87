"""`make contract-snapshot` (tests/contract/snapshot.py) writes compatible changes and refuses breaking ones:
then it prints them, exits non-zero and writes nothing."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.contract import snapshot
from tests.contract.snapshot import contract_models, current_schema, main, snapshot_path

ROOT = Path(__file__).resolve().parents[2]
MODELS = contract_models()


def _write(path: Path, schema: dict[str, Any]) -> None:
    path.write_text(json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def _frozen_as_now(schemas: Path) -> None:
    for name, model in MODELS.items():
        _write(snapshot_path(name, schemas), current_schema(model))


def _optional_property(schema: dict[str, Any]) -> str:
    optional: list[str] = sorted(set(schema["properties"]) - set(schema.get("required", [])))
    return optional[0]


def _contents(schemas: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(schemas.glob("*.json"))}


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    directory = tmp_path / "schemas"
    directory.mkdir()
    _frozen_as_now(directory)
    return directory


def test_a_breaking_change_is_refused_and_nothing_is_written(schemas: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The snapshot has a property the model no longer has (a consumer may read it): breaking.
    routed = copy.deepcopy(current_schema(MODELS["MatterRouted"]))
    routed["properties"]["priority"] = {"type": "integer"}
    _write(snapshot_path("MatterRouted", schemas), routed)
    # Elsewhere a compatible change is waiting (the model gained an optional field): not written either.
    status = copy.deepcopy(current_schema(MODELS["MatterStatusChanged"]))
    del status["properties"][_optional_property(status)]
    _write(snapshot_path("MatterStatusChanged", schemas), status)
    # And a model without a snapshot yet: not written either.
    snapshot_path("StatsAlert", schemas).unlink()
    before = _contents(schemas)

    assert main([str(schemas)]) != 0
    assert _contents(schemas) == before, "nothing written"
    err = capsys.readouterr().err
    assert "MatterRouted: priority: removed" in err
    assert "nothing written" in err


def test_the_command_exits_non_zero_on_a_breaking_change(schemas: Path) -> None:
    routed = copy.deepcopy(current_schema(MODELS["MatterRouted"]))
    routed["properties"]["priority"] = {"type": "integer"}
    _write(snapshot_path("MatterRouted", schemas), routed)
    before = _contents(schemas)
    done = subprocess.run(
        [sys.executable, "-m", "tests.contract.snapshot", str(schemas)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "MatterRouted: priority: removed" in done.stderr
    assert _contents(schemas) == before


def test_compatible_changes_are_written(schemas: Path) -> None:
    status = copy.deepcopy(current_schema(MODELS["MatterStatusChanged"]))
    del status["properties"][_optional_property(status)]
    _write(snapshot_path("MatterStatusChanged", schemas), status)
    snapshot_path("StatsAlert", schemas).unlink()

    assert main([str(schemas)]) == 0
    for name, model in MODELS.items():
        assert json.loads(snapshot_path(name, schemas).read_text(encoding="utf-8")) == current_schema(model), name


def test_an_unreadable_snapshot_is_refused(schemas: Path) -> None:
    snapshot_path("UnitFeedback", schemas).write_text("{not json", encoding="utf-8")
    before = _contents(schemas)
    assert main([str(schemas)]) != 0
    assert _contents(schemas) == before


def test_by_default_it_refreshes_the_repository_snapshots() -> None:
    assert snapshot.SCHEMAS == ROOT / "tests" / "contract" / "schemas"
    assert snapshot_path("MatterRouted") == snapshot.SCHEMAS / "MatterRouted.json"
