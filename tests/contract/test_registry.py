"""The topic registry's policy, and the AsyncAPI document generated from it."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from xinfang_shared.contracts import asyncapi
from xinfang_shared.contracts.reference import UNITS, Channel
from xinfang_shared.contracts.topics import (
    BY_NAME,
    CONTRACT_TOPICS,
    DEFAULT_PARTITIONS,
    PER_UNIT_PARTITIONS,
    SERVICES,
    UNIT_FEEDBACK,
    UNIT_FEEDBACK_REJECTED,
    topics_to_create,
)

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_NAMES = {
    "intake.letter.submitted.v1",
    "intake.visit.submitted.v1",
    "intake.online.submitted.v1",
    "intake.mailbox.submitted.v1",
    "intake.submission.rejected.v1",
    "matters.registered.v1",
    "matters.registered.v2",
    "matters.routed.v1",
    "units.feedback.v1",
    "units.feedback.rejected.v1",
    "matters.status.v1",
    "deadlines.events.v1",
    "stats.alerts.v1",
}


def test_every_contract_topic_is_registered_under_its_contract_name() -> None:
    assert set(BY_NAME) >= CONTRACT_NAMES
    assert {f"units.{u}.inbox.v1" for u in UNITS} <= set(BY_NAME)
    assert {f"units.{u}.feedback.v1" for u in UNITS} <= set(BY_NAME)
    assert {f"units.{u}.feedback.rejected.v1" for u in UNITS} <= set(BY_NAME)
    assert {f"intake.{c.value}.rejected.v1" for c in Channel} <= set(BY_NAME)
    assert len(UNITS) == 21 + 13 + 1  # cities, departments, the Supervision and Review Office
    assert "units.office-supervision.inbox.v1" in BY_NAME


def _subscriptions() -> dict[str, set[str]]:
    """Each service's real subscriptions: its app built (not started) as deployed, its broker asked."""
    from xinfang_intake.app import create_asgi
    from xinfang_intake.settings import IntakeSettings
    from xinfang_notify.app import create_service as notify
    from xinfang_notify.settings import NotifySettings
    from xinfang_routing.app import create_service as routing
    from xinfang_routing.settings import RoutingSettings
    from xinfang_stats.app import create_service as stats
    from xinfang_stats.settings import StatsSettings
    from xinfang_supervision.app import create_service as supervision
    from xinfang_supervision.settings import SupervisionSettings

    common: dict[str, Any] = {"_env_file": None, "environment": "test"}
    services = {
        "intake": create_asgi(IntakeSettings(**common))[0],
        "routing": routing(RoutingSettings(**common)),
        "supervision": supervision(SupervisionSettings(**common)),
        "notify": notify(NotifySettings(**common)),
        "stats": stats(StatsSettings(**common)),
    }
    return {name: service.consumed_topics for name, service in services.items()}


def test_the_registry_names_exactly_the_consumers_that_subscribe() -> None:
    """AsyncAPI and the production ACLs come from the registry: it must list no consumer that does not read a
    topic, and miss none that does."""
    subscribed = _subscriptions()
    assert set(subscribed) == set(SERVICES)
    for topic in CONTRACT_TOPICS:
        registered = {c for c in topic.consumers if c in SERVICES}
        reading = {service for service, topics in subscribed.items() if topic.name in topics}
        assert registered == reading, f"{topic.name}: registry says {sorted(registered)}, {sorted(reading)} subscribe"
    known = {t.name for t in CONTRACT_TOPICS}
    for service, topics in subscribed.items():
        assert topics <= known, f"{service} subscribes to topics outside the registry: {topics - known}"


def test_topic_names_are_versioned_and_partitioned_with_headroom() -> None:
    # A unit's own topics are read by one group together (35 units, a few partitions each: more than the shared
    # topic's 12 for routing's instances to share).
    per_unit = {t.name for t in (*UNIT_FEEDBACK.values(), *UNIT_FEEDBACK_REJECTED.values())}
    assert len(per_unit) * PER_UNIT_PARTITIONS // 2 >= DEFAULT_PARTITIONS
    for topic in CONTRACT_TOPICS:
        assert re.fullmatch(r"[a-z0-9.-]+\.v\d+", topic.name), topic.name
        least = PER_UNIT_PARTITIONS if topic.name in per_unit else DEFAULT_PARTITIONS
        assert topic.partitions >= least, f"{topic.name} caps scaling at {topic.partitions}"
        assert topic.consumers, topic.name
        assert topic.producers or topic.retired, f"{topic.name}: nobody writes it, yet it is not retired"


def test_retired_topics_are_listed_with_their_reason_and_written_by_nobody() -> None:
    listed = tomllib.loads((ROOT / "tests/contract/retired.toml").read_text(encoding="utf-8"))
    entries = {e["name"]: e for e in listed.get("retired_topic", [])}
    retired = {t.name: t for t in CONTRACT_TOPICS if t.retired}
    assert set(entries) == set(retired), "the registry and retired.toml name the same retired topics"
    for name, topic in retired.items():
        assert not topic.producers, f"{name} is retired, yet the registry names a producer"
        assert entries[name]["why"].strip() and topic.retired
        successor = BY_NAME[entries[name]["replaced_by"]]
        assert not successor.retired and successor.model is not topic.model
    from xinfang_shared.contracts.acls import acls

    assert not [a for a in acls() if a.operation == "WRITE" and a.name in retired], "nobody may write a retired topic"


def test_withheld_fields_are_always_null() -> None:
    """A withheld field keeps its name in the schema (a v1 consumer that reads it still parses) and may be null."""
    listed = tomllib.loads((ROOT / "tests/contract/retired.toml").read_text(encoding="utf-8"))
    models = {t.model.__name__: t.model for t in CONTRACT_TOPICS}
    for entry in listed.get("withheld", []):
        field = models[entry["model"]].model_fields[entry["field"]]
        assert field.default is None and not field.is_required(), entry


def test_every_topic_our_services_consume_has_a_dead_letter_topic() -> None:
    ours = {"intake", "routing", "supervision", "notify", "stats"}
    wanted = topics_to_create()
    for topic in CONTRACT_TOPICS:
        if ours & set(topic.consumers):
            assert topic.has_dlq and topic.dlq in wanted, topic.name


def test_channel_topics_are_keyed_by_external_id() -> None:
    for channel in Channel:
        assert BY_NAME[f"intake.{channel.value}.submitted.v1"].key == "external_id"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _follow(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_asyncapi_document_is_generated_from_the_code_and_committed() -> None:
    committed = json.loads((ROOT / "docs" / "asyncapi.json").read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(asyncapi.build())), "run `make asyncapi` and commit docs/asyncapi.json"


def test_asyncapi_references_all_resolve_and_cover_every_topic() -> None:
    doc = asyncapi.build()
    for ref in _refs(doc):
        _follow(doc, ref)  # raises KeyError when dangling
    assert set(doc["channels"]) >= CONTRACT_NAMES
    assert "units.{unit}.inbox.v1" in doc["channels"]
