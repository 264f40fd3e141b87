"""Writes the frozen JSON Schema snapshot of every v1 message model (tests/contract/schemas/).

Run it (`make contract-snapshot`) only after a compatible change: the contract test refuses breaking ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from xinfang_shared.contracts.topics import CONTRACT_TOPICS

SCHEMAS = Path(__file__).with_name("schemas")


def contract_models() -> dict[str, type[BaseModel]]:
    return {t.model.__name__: t.model for t in CONTRACT_TOPICS}


def current_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(mode="validation")


def snapshot_path(name: str) -> Path:
    return SCHEMAS / f"{name}.json"


def main() -> None:
    SCHEMAS.mkdir(exist_ok=True)
    for name, model in contract_models().items():
        text = json.dumps(current_schema(model), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        snapshot_path(name).write_text(text, encoding="utf-8")
        print(f"wrote {snapshot_path(name)}")


if __name__ == "__main__":
    main()
