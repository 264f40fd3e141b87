"""The published contract documents are valid for the tools people read them with.

- docs/asyncapi.json, and what the generator makes of any registry, for the official AsyncAPI parser
  (`@asyncapi/parser` 3.x, run by tools/contract-check, installed by deploy/local/install.sh);
- every service's OpenAPI document, built without starting the service, for `openapi-spec-validator`.

Each validator is also shown a broken document, so a validator that accepts everything fails here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar

import pytest
from fastapi import FastAPI
from openapi_spec_validator.shortcuts import get_validator_cls
from pydantic import BaseModel, Field
from referencing.exceptions import Unresolvable

from xinfang_shared.contracts import asyncapi
from xinfang_shared.contracts.topics import CONTRACT_TOPICS, Topic

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "tools" / "contract-check"
INSTALL = "run deploy/local/install.sh (it runs `npm ci` in tools/contract-check)"


# --- AsyncAPI ---------------------------------------------------------------------------------------------


def _check_asyncapi(path: Path) -> tuple[int, list[str], str]:
    """Runs the official parser on `path`: exit code, the error lines ("error <pointer>: <message> [<code>]")
    and the whole output."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"node is not on PATH: install Node.js 20+ with npm, then {INSTALL}")
    if not (CHECKER / "node_modules" / "@asyncapi" / "parser" / "package.json").is_file():
        pytest.fail(f"tools/contract-check/node_modules is missing: {INSTALL}")
    proc = subprocess.run(
        [node, str(CHECKER / "check-asyncapi.cjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error ")]
    return proc.returncode, errors, proc.stdout + proc.stderr


def _write(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def _follow(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _channel_of(doc: dict[str, Any], topic: Topic) -> dict[str, Any]:
    """The channel that describes `topic`: its own, or a parameterised one whose parameter lists the value."""
    channels: dict[str, Any] = doc["channels"]
    if topic.name in channels:
        return dict(channels[topic.name])
    for address, channel in channels.items():
        for parameter, spec in channel.get("parameters", {}).items():
            if any(address.replace(f"{{{parameter}}}", value) == topic.name for value in spec.get("enum", [])):
                return dict(channel)
    raise AssertionError(f"no channel describes {topic.name}")


def _assert_describes(doc: dict[str, Any], topics: tuple[Topic, ...]) -> None:
    """Every topic's key, partitions, producers and consumers are in the document, where AsyncAPI 3.0 puts them."""
    for topic in topics:
        channel = _channel_of(doc, topic)
        assert channel["bindings"]["kafka"]["partitions"] == topic.partitions, topic.name
        (message_ref,) = channel["messages"].values()
        message = _follow(doc, message_ref["$ref"])
        assert message["bindings"]["kafka"]["key"]["description"] == topic.key, topic.name
        assert message["bindings"]["kafka"]["bindingVersion"] == asyncapi.KAFKA_BINDING_VERSION
        assert message["title"] == topic.model.__name__, topic.name
        summaries = " | ".join(
            op["summary"] for op in doc["operations"].values() if _follow(doc, op["channel"]["$ref"]) == channel
        )
        for party in (*topic.producers, *topic.consumers):
            # a per-unit topic's own unit is written as the channel's parameter (unit:city-5101 as unit:{unit})
            unit = party.removeprefix("unit:")
            assert party in summaries or ("{unit}" in summaries and unit in topic.name), (topic.name, party)
    for op_id, operation in doc["operations"].items():
        assert "key" not in operation.get("bindings", {}).get("kafka", {}), op_id


def test_the_committed_asyncapi_document_passes_the_official_parser() -> None:
    code, errors, output = _check_asyncapi(ROOT / "docs" / "asyncapi.json")
    assert code == 0 and not errors, f"@asyncapi/parser rejects docs/asyncapi.json:\n{output}"
    assert "0 error(s)" in output


def test_the_document_keeps_each_topics_key_partitions_and_parties() -> None:
    _assert_describes(asyncapi.build(), CONTRACT_TOPICS)


def test_the_parser_reports_each_error_with_its_path(tmp_path: Path) -> None:
    doc = asyncapi.build()
    # The mistake this generator used to make: the Kafka key as an operation binding.
    doc["operations"]["send:matters.routed.v1"]["bindings"] = {"kafka": {"key": {"type": "string"}}}
    # And a message that does not exist.
    doc["channels"]["matters.status.v1"]["messages"] = {"Nope": {"$ref": "#/components/messages/Nope"}}
    code, errors, output = _check_asyncapi(_write(tmp_path, "broken.json", doc))
    assert code == 1, output
    assert any(
        e.startswith("error /operations/send:matters.routed.v1/bindings/kafka/key: ") and "not expected" in e
        for e in errors
    ), output
    assert any("/channels/matters.status.v1/messages/Nope" in e for e in errors), output
    assert f"{len(errors)} error(s)" in output


def test_an_unreadable_document_is_not_a_pass(tmp_path: Path) -> None:
    code, _, output = _check_asyncapi(tmp_path / "missing.json")
    assert code == 2, output
    (tmp_path / "not.json").write_text("{ this is not an AsyncAPI document", encoding="utf-8")
    code, errors, output = _check_asyncapi(tmp_path / "not.json")
    assert code != 0 and errors, output


# A registry such as other engineers may write: models with tuples, a discriminated union and a generic; one model
# on topics with different keys; a key that is not a field name; a topic nobody consumes yet; and unit inboxes of
# which one differs from the others.
T = TypeVar("T")


class _Cat(BaseModel):
    kind: Literal["cat"]
    lives: int


class _Dog(BaseModel):
    kind: Literal["dog"]
    pair: tuple[int, str]
    rest: tuple[str, ...]


class _Page(BaseModel, Generic[T]):
    items: list[T]


class _Sample(BaseModel):
    pet: Annotated[_Cat | _Dog, Field(discriminator="kind")]
    page: _Page[int]
    discriminator: str = Field(description="a property named like a keyword stays a property")


def _topic(name: str, model: type[BaseModel], **kw: Any) -> Topic:
    return Topic(
        name=name,
        model=model,
        description=kw.pop("description", f"{name} for tests"),
        producers=kw.pop("producers", ("routing",)),
        consumers=kw.pop("consumers", ("stats", "notify")),
        **kw,
    )


_INBOXES = {
    unit: _topic(
        f"units.{unit}.inbox.v1",
        _Sample,
        description=f"for {unit}",
        producers=("routing", "supervision"),
        consumers=(f"unit:{unit}",),
        partitions=24 if unit == "city-9903" else 12,
    )
    for unit in ("city-9901", "city-9902", "city-9903")
}
_REGISTRY = (
    _topic("samples.by-matter.v1", _Sample),
    _topic("samples.by-region.v1", _Sample, key="region_code or category", partitions=6),
    _topic("pages.v1", _Page[str], key="external_id", consumers=()),
    *_INBOXES.values(),
)


def test_the_generator_is_valid_for_any_registry(tmp_path: Path) -> None:
    doc = asyncapi.build(_REGISTRY, {"units.{unit}.inbox.v1": _INBOXES})
    code, errors, output = _check_asyncapi(_write(tmp_path, "any-registry.json", doc))
    assert code == 0 and not errors, output
    _assert_describes(doc, _REGISTRY)
    # one model, two keys: two messages; the inbox that differs keeps its own channel
    sample_keys = {m["bindings"]["kafka"]["key"]["description"] for m in doc["components"]["messages"].values()}
    assert {"matter_id", "region_code or category", "external_id"} <= sample_keys
    template = doc["channels"]["units.{unit}.inbox.v1"]
    assert template["parameters"]["unit"]["enum"] == ["city-9901", "city-9902"]
    assert doc["channels"]["units.city-9903.inbox.v1"]["bindings"]["kafka"]["partitions"] == 24
    assert "receive:pages.v1" not in doc["operations"]
    sample = doc["components"]["schemas"]["_Sample"]
    assert "discriminator" in sample["properties"] and "x-discriminator" in sample["properties"]["pet"]


# --- OpenAPI ----------------------------------------------------------------------------------------------


def _intake() -> FastAPI:
    from xinfang_intake.app import create_asgi
    from xinfang_intake.settings import IntakeSettings

    return create_asgi(IntakeSettings(environment="test", _env_file=None))[0].api  # type: ignore[call-arg]


def _routing() -> FastAPI:
    from xinfang_routing.app import create_service
    from xinfang_routing.settings import RoutingSettings

    return create_service(RoutingSettings(environment="test", _env_file=None)).api  # type: ignore[call-arg]


def _supervision(clock: Literal["real", "controlled"]) -> Callable[[], FastAPI]:
    def build() -> FastAPI:
        from xinfang_supervision.app import create_service
        from xinfang_supervision.settings import SupervisionSettings

        settings = SupervisionSettings(environment="test", _env_file=None, supervision_clock=clock)  # type: ignore[call-arg]
        return create_service(settings).api

    return build


def _notify() -> FastAPI:
    from xinfang_notify.app import create_app

    return create_app()


def _stats() -> FastAPI:
    from xinfang_stats.app import create_app

    return create_app()


SERVICES: dict[str, Callable[[], FastAPI]] = {
    "intake": _intake,
    "routing": _routing,
    "supervision": _supervision("real"),
    "supervision-controlled-clock": _supervision("controlled"),
    "notify": _notify,
    "stats": _stats,
}


def _openapi_errors(doc: dict[str, Any]) -> list[str]:
    """Every error openapi-spec-validator finds; a reference it cannot resolve stops it, and is one more."""
    errors: list[str] = []
    try:
        for error in get_validator_cls(doc)(doc).iter_errors():
            errors.append(f"/{'/'.join(map(str, error.path))}: {error.message}")
    except Unresolvable as exc:
        errors.append(f"unresolvable reference: {exc}")
    return errors


@pytest.mark.parametrize("service", SERVICES)
def test_each_services_openapi_document_is_valid(service: str) -> None:
    doc = SERVICES[service]().openapi()
    assert doc["openapi"].startswith("3."), doc["openapi"]
    assert doc["paths"], f"{service} documents no paths"
    errors = _openapi_errors(doc)
    assert not errors, f"{service}'s OpenAPI document is invalid:\n" + "\n".join(errors)
    if service == "supervision-controlled-clock":
        assert "/v1/admin/clock/advance" in doc["paths"]


def _small_app() -> dict[str, Any]:
    app = FastAPI(title="small")

    @app.get("/v1/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"thing_id": thing_id}

    return app.openapi()


def test_the_openapi_validator_reports_a_broken_document() -> None:
    assert _openapi_errors(_small_app()) == []
    undeclared = _small_app()
    undeclared["paths"]["/v1/things/{thing_id}"]["get"]["parameters"] = []
    errors = _openapi_errors(undeclared)
    assert any("thing_id" in e for e in errors), errors
    untitled = _small_app()
    untitled["info"].pop("title")
    errors = _openapi_errors(untitled)
    assert any("title" in e for e in errors), errors
    dangling = _small_app()
    dangling["paths"]["/v1/things/{thing_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "$ref": "#/components/schemas/Nowhere"
    }
    errors = _openapi_errors(dangling)
    assert any("unresolvable" in e and "Nowhere" in e for e in errors), errors
