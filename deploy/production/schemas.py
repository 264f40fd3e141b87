"""The JSON schemas kubeconform checks the production manifests against, offline, and the check itself.

Two sources, both on this machine without a cluster or network:
  - Kubernetes' built-in kinds: the strict schemas of PyPI `kubernetes-validate` (a dev dependency). Their `$id`s
    and `$ref`s are absolute (`https://kubernetes.io/api/...`, `/api/_definitions.json#/...`), which kubeconform
    would fetch over HTTP: they are rewritten to relative file references.
  - The operators' kinds (Strimzi, CloudNativePG, KEDA): the CustomResourceDefinitions in `../shared/k8s-crds/`
    (beside the clone), each version's `openAPIV3Schema` converted as openapi2jsonschema does it, strict: an
    object that lists its properties allows no others unless the CRD says so (`additionalProperties`,
    `x-kubernetes-preserve-unknown-fields`); `x-kubernetes-int-or-string` is a string or an integer; `nullable`
    allows null. File names are kubeconform's `{kind}_{version}.json`.

    uv run --frozen python deploy/production/schemas.py DIR         # write the schemas into DIR
    uv run --frozen python deploy/production/render.py --validate   # render, then kubeconform -strict

kubeconform itself is built from the Go module proxy by deploy/local/kubeconform.sh (run by install.sh) into
.local/bin/kubeconform.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
# The shared documents sit beside the clone (../shared); XINFANG_SHARED names them elsewhere.
SHARED = Path(os.environ.get("XINFANG_SHARED", ROOT.parent / "shared"))
CRDS = SHARED / "k8s-crds"
# The Kubernetes release whose built-in schemas the manifests are checked against (kubernetes-validate's
# v<version>-local-strict): the oldest the manifests are meant for (the preStop sleep action is GA in 1.34).
KUBERNETES_VERSION = os.environ.get("KUBERNETES_VERSION", "1.34.0")
KUBECONFORM = ROOT / ".local" / "bin" / "kubeconform"

BUILTIN_DIR = "kubernetes"
CRD_DIR = "crds"
# kubeconform's templates: built-in kinds as kubernetes-json-schema names them (deployment-apps-v1.json), CRDs as
# openapi2jsonschema does (kafka_v1.json).
LOCATIONS = (
    BUILTIN_DIR + "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
    CRD_DIR + "/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json",
)


def kubernetes_schemas(version: str = KUBERNETES_VERSION) -> Path:
    """The directory of kubernetes-validate's strict schemas for `version`."""
    import kubernetes_validate

    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    found = base / f"v{version}-local-strict"
    if not found.is_dir():
        have = sorted(p.name for p in base.iterdir() if p.name.endswith("-strict"))
        raise SystemExit(f"kubernetes-validate has no schemas for Kubernetes {version}; it has {', '.join(have)}")
    return found


_ABSOLUTE_REF = re.compile(r"^/api/_definitions\.json(#.*)$")


def _relative(node: Any, *, in_definitions: bool) -> Any:
    """A copy of a kubernetes-validate schema with no `$id` and its `$ref`s relative to its own directory."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$id":
                continue
            if key == "$ref" and isinstance(value, str) and (m := _ABSOLUTE_REF.match(value)):
                value = m.group(1) if in_definitions else "_definitions.json" + m.group(1)
            out[key] = _relative(value, in_definitions=in_definitions)
        return out
    if isinstance(node, list):
        return [_relative(v, in_definitions=in_definitions) for v in node]
    return node


def write_kubernetes(out: Path, version: str = KUBERNETES_VERSION) -> int:
    """kubernetes-validate's strict schemas for `version` into `out`, with relative references; returns how many."""
    source = kubernetes_schemas(version)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(source.glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        relative = _relative(schema, in_definitions=path.name == "_definitions.json")
        (out / path.name).write_text(json.dumps(relative), encoding="utf-8")
        count += 1
    leftover = [p.name for p in out.glob("*.json") if re.search(r'"\$id"|"\$ref": "/', p.read_text(encoding="utf-8"))]
    if leftover:
        raise RuntimeError(f"absolute references left in {leftover[:5]}")
    return count


def strict(node: Any) -> Any:
    """An openAPIV3Schema as a strict JSON schema (openapi2jsonschema's conversion, with kubectl's rule)."""
    if isinstance(node, list):
        return [strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items() if k not in ("x-kubernetes-int-or-string", "nullable")}
    if node.get("x-kubernetes-int-or-string"):
        for key in ("type", "format"):
            out.pop(key, None)
        out["anyOf"] = [{"type": "string"}, {"type": "integer"}]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_schemas(crds: Path = CRDS) -> dict[str, dict[str, Any]]:
    """`{kind}_{version}.json` (lower case) → its strict JSON schema, for every CRD version in `crds`."""
    if not crds.is_dir():
        raise SystemExit(f"no CRDs at {crds}: the shared documents are cloned beside the repository (../shared)")
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(crds.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            kind = spec["names"]["kind"]
            for version in spec["versions"]:
                schema = strict(version["schema"]["openAPIV3Schema"])
                # kubeconform checks apiVersion and kind itself; pin them so a document of another group fails too.
                properties = schema.setdefault("properties", {})
                properties["apiVersion"] = {"type": "string", "enum": [f"{spec['group']}/{version['name']}"]}
                properties["kind"] = {"type": "string", "enum": [kind]}
                found[f"{kind.lower()}_{version['name']}.json"] = schema
    return found


def write(out: Path, version: str = KUBERNETES_VERSION, crds: Path = CRDS) -> Path:
    """Both sets of schemas under `out` (kubernetes/ and crds/), as `locations(out)` names them."""
    write_kubernetes(out / BUILTIN_DIR, version)
    crd_dir = out / CRD_DIR
    crd_dir.mkdir(parents=True, exist_ok=True)
    for name, schema in crd_schemas(crds).items():
        (crd_dir / name).write_text(json.dumps(schema), encoding="utf-8")
    return out


def locations(schemas: Path) -> list[str]:
    """kubeconform's -schema-location arguments for a directory made by `write` (and nothing from the network)."""
    args = []
    for location in LOCATIONS:
        args += ["-schema-location", str(schemas / location)]
    return args


def kubeconform_binary() -> Path | None:
    """.local/bin/kubeconform (install.sh builds it), or one on PATH; None when there is neither."""
    if KUBECONFORM.is_file() and os.access(KUBECONFORM, os.X_OK):
        return KUBECONFORM
    found = shutil.which("kubeconform")
    return Path(found) if found else None


def kubeconform(manifests: Path, schemas: Path, binary: Path | None = None) -> subprocess.CompletedProcess[str]:
    """kubeconform -strict over `manifests` (a file or a directory) with the schemas of `schemas` only: a kind
    without a schema fails (no -ignore-missing-schemas), and nothing is fetched."""
    binary = binary or kubeconform_binary()
    if binary is None:
        raise FileNotFoundError("kubeconform is not installed: bash deploy/local/kubeconform.sh builds it")
    return subprocess.run(
        [str(binary), "-strict", "-summary", "-output", "text", *locations(schemas), str(manifests)],
        capture_output=True,
        text=True,
        check=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory to write the schemas into")
    parser.add_argument("--kubernetes-version", default=KUBERNETES_VERSION)
    args = parser.parse_args()
    write(args.out, args.kubernetes_version)
    print(f"schemas in {args.out}; kubeconform {' '.join(locations(args.out))}", file=sys.stderr)


if __name__ == "__main__":
    main()
