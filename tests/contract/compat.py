"""Backward-compatibility check between two JSON Schemas of one v1 message.

A change is compatible for consumers written against the old schema when every old property is still there
with the same type, no new property is required, and no enum lost a value. Anything else needs a `.v2` topic.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

Schema = dict[str, Any]
RETIRED = Path(__file__).with_name("retired.toml")


def retire(model: str, frozen: Schema, retired: Path = RETIRED) -> Schema:
    """The frozen schema without the enum values retired.toml lets `model` drop (values never emitted)."""
    entries = tomllib.loads(retired.read_text(encoding="utf-8")).get("retired", [])
    schema = copy.deepcopy(frozen)
    for entry in entries:
        if entry["model"] != model:
            continue
        enum = schema.get("$defs", {}).get(entry["enum"], {})
        if "enum" not in enum:
            raise ValueError(f"retired.toml: {model} has no enum {entry['enum']}")
        enum["enum"] = [v for v in enum["enum"] if v not in set(entry["values"])]
    return schema


def _resolve(node: Schema, root: Schema) -> Schema:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(root["$defs"][ref.removeprefix("#/$defs/")], root)
    return node


def _types(node: Schema, root: Schema) -> set[str]:
    node = _resolve(node, root)
    if "anyOf" in node:
        return set().union(*(_types(n, root) for n in node["anyOf"]))
    if "enum" in node:
        return {f"enum:{v}" for v in node["enum"]}
    if "const" in node:
        return {f"enum:{node['const']}"}
    kind = node.get("type", "any")
    if kind == "string" and node.get("format"):
        return {f"string:{node['format']}"}
    return {kind}


def breaking_changes(
    old: Schema,
    new: Schema,
    *,
    path: str = "",
    old_root: Schema | None = None,
    new_root: Schema | None = None,
) -> list[str]:
    old_root = old_root or old
    new_root = new_root or new
    old = _resolve(old, old_root)
    new = _resolve(new, new_root)
    problems: list[str] = []

    old_types, new_types = _types(old, old_root), _types(new, new_root)
    lost = old_types - new_types
    if lost and "any" not in new_types:
        problems.append(f"{path or '<root>'}: no longer accepts {sorted(lost)}")

    old_props: Schema = old.get("properties", {})
    new_props: Schema = new.get("properties", {})
    for name, old_prop in old_props.items():
        where = f"{path}.{name}" if path else name
        if name not in new_props:
            problems.append(f"{where}: removed")
            continue
        problems += breaking_changes(old_prop, new_props[name], path=where, old_root=old_root, new_root=new_root)
    newly_required = set(new.get("required", [])) - set(old.get("required", []))
    for name in sorted(newly_required):
        problems.append(f"{path + '.' if path else ''}{name}: newly required")

    for key in ("items",):
        if key in old and key in new:
            problems += breaking_changes(old[key], new[key], path=f"{path}[]", old_root=old_root, new_root=new_root)
    for idx, (o, n) in enumerate(zip(old.get("anyOf", []), new.get("anyOf", []), strict=False)):
        if _resolve(o, old_root).get("properties") and _resolve(n, new_root).get("properties"):
            problems += breaking_changes(o, n, path=f"{path}<{idx}>", old_root=old_root, new_root=new_root)
    return problems
