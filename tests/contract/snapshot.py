"""Writes the frozen JSON Schema snapshot of every v1 message model (tests/contract/schemas/).

Run it (`make contract-snapshot`) after a compatible change. It refuses a breaking one: each model's current
schema is compared with its existing snapshot (tests/contract/compat.py); if any change breaks consumers of
the old schema, it prints them and exits non-zero without writing anything (publish a `.v2` topic instead).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tests.contract.compat import breaking_changes, retire
from xinfang_shared.contracts.topics import CONTRACT_TOPICS

SCHEMAS = Path(__file__).with_name("schemas")


def contract_models() -> dict[str, type[BaseModel]]:
    return {t.model.__name__: t.model for t in CONTRACT_TOPICS}


def current_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(mode="validation")


def snapshot_path(name: str, schemas: Path = SCHEMAS) -> Path:
    return schemas / f"{name}.json"


def _text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def refresh(models: Mapping[str, type[BaseModel]], schemas: Path = SCHEMAS) -> int:
    """Write every model's snapshot into `schemas`, unless a change is breaking: then print every breaking
    change, write nothing and return 1. Returns 0 when written."""
    breaking: list[str] = []
    unreadable: list[str] = []
    texts: dict[Path, str] = {}
    for name, model in sorted(models.items()):
        path = snapshot_path(name, schemas)
        schema = current_schema(model)
        if path.exists():
            try:
                frozen = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                unreadable.append(f"{path}: not JSON ({exc})")
                continue
            breaking += [f"{name}: {problem}" for problem in breaking_changes(retire(name, frozen), schema)]
        texts[path] = _text(schema)
    if breaking or unreadable:
        for problem in [*unreadable, *breaking]:
            print(f"REFUSED {problem}", file=sys.stderr)
        print(
            f"{len(breaking)} breaking change(s): nothing written. A v1 message changes compatibly only"
            " (publish a .v2 topic for the rest).",
            file=sys.stderr,
        )
        return 1
    schemas.mkdir(parents=True, exist_ok=True)
    for path, text in texts.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        else:
            print(f"unchanged {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.contract.snapshot [SCHEMAS_DIR]` (default tests/contract/schemas)."""
    args = sys.argv[1:] if argv is None else argv
    schemas = Path(args[0]) if args else SCHEMAS
    return refresh(contract_models(), schemas)


if __name__ == "__main__":
    sys.exit(main())
