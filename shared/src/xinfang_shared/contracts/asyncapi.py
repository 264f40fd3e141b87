"""The AsyncAPI 3.0 document of the v1 topics, generated from the topic registry and the event models.

`make asyncapi` writes it to docs/asyncapi.json; a contract test fails when the committed copy is stale, and
another runs the official parser (`@asyncapi/parser`, tools/contract-check) over it.

Where things go in AsyncAPI 3.0 (and its Kafka bindings 0.5.0):
- one channel per topic, with the topic's partitions as a channel binding; each per-unit family of topics shares
  one parameterised channel (`units.{unit}.inbox.v1`, `units.{unit}.feedback.v1`,
  `units.{unit}.feedback.rejected.v1`; a unit's topic that differs from the others keeps its own channel);
- a retired topic keeps its channel, its reason in the description and in `x-retired`;
- two servers: the local stack's open listener and its SCRAM listener (where the broker's ACLs apply);
- the Kafka key is a *message* binding, so there is one component message per (event model, key): a model
  carried on topics with different keys gets one message per key;
- one `send` and one `receive` operation per channel, summarising the registry's producers and consumers;
- the payload schemas are pydantic's, rewritten where JSON Schema 2020-12 and the AsyncAPI Schema Object
  (a superset of draft-07) disagree.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .topics import (
    CONTRACT_TOPICS,
    UNIT_FEEDBACK,
    UNIT_FEEDBACK_REJECTED,
    UNIT_INBOXES,
    Topic,
    unit_feedback_rejected_topic,
    unit_feedback_topic,
    unit_inbox_topic,
)

KAFKA_BINDING_VERSION = "0.5.0"
_UNIT = "{unit}"
# Each family of per-unit topics: its template, and the topic of each unit.
FAMILIES: dict[str, Mapping[str, Topic]] = {
    unit_inbox_topic(_UNIT): UNIT_INBOXES,
    unit_feedback_topic(_UNIT): UNIT_FEEDBACK,
    unit_feedback_rejected_topic(_UNIT): UNIT_FEEDBACK_REJECTED,
}
_COMPONENT_KEY = re.compile(r"[A-Za-z0-9.\-_]+")


@dataclass(frozen=True)
class _Channel:
    """What one channel of the document says: a topic, or the inboxes of several units under one template."""

    address: str
    model: type[BaseModel]
    key: str
    partitions: int
    description: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    units: tuple[str, ...] = ()  # the values of {unit}, for a family's template
    retired: str | None = None


def _of_topic(topic: Topic) -> _Channel:
    return _Channel(
        topic.name,
        topic.model,
        topic.key,
        topic.partitions,
        topic.description,
        topic.producers,
        topic.consumers,
        retired=topic.retired,
    )


def _templated(unit: str, topic: Topic, template: str) -> _Channel:
    """The topic of `unit` in a family, with the unit's name replaced by the template parameter."""

    whole = re.compile(rf"(?<![\w-]){re.escape(unit)}(?![\w-])")

    def sub(text: str) -> str:
        return whole.sub(_UNIT, text)

    return _Channel(
        template if topic.name == template.replace(_UNIT, unit) else topic.name,
        topic.model,
        topic.key,
        topic.partitions,
        sub(topic.description),
        tuple(sub(p) for p in topic.producers),
        tuple(sub(c) for c in topic.consumers),
        retired=topic.retired,
    )


def _channels(topics: Iterable[Topic], families: Mapping[str, Mapping[str, Topic]]) -> list[_Channel]:
    """The registry's topics as channels: the topics of a family that agree in everything but the unit share its
    template."""
    registered = list(dict.fromkeys(topics))
    shared: dict[str, tuple[_Channel, str]] = {}  # topic name -> (the family's channel, the unit)
    for template, by_unit in families.items():
        unit_of = {topic.name: unit for unit, topic in by_unit.items()}
        members = [t for t in registered if t.name in unit_of]
        shapes = {t.name: _templated(unit_of[t.name], t, template) for t in members}
        common = Counter(s for s in shapes.values() if s.address == template).most_common(1)
        if not common:
            continue
        family = common[0][0]
        units = tuple(unit_of[t.name] for t in members if shapes[t.name] == family)
        for t in members:
            if shapes[t.name] == family:
                shared[t.name] = (replace(family, units=units), unit_of[t.name])
    channels: list[_Channel] = []
    for topic in registered:
        if topic.name not in shared:
            channels.append(_of_topic(topic))
        elif shared[topic.name][1] == shared[topic.name][0].units[0]:
            channels.append(shared[topic.name][0])
    addresses = Counter(c.address for c in channels)
    if duplicated := sorted(a for a, n in addresses.items() if n > 1):
        raise ValueError(f"topics registered twice with different definitions: {', '.join(duplicated)}")
    return channels


def _component_key(text: str) -> str:
    key = re.sub(r"[^A-Za-z0-9.\-_]+", "_", text).strip("_")
    return key or "_"


def _message_ids(channels: list[_Channel], schema_names: Mapping[type[BaseModel], str]) -> dict[tuple[Any, str], str]:
    """One component message per (model, key): named after the model, plus the key when the model has several."""
    pairs = list(dict.fromkeys((c.model, c.key) for c in channels))
    keys_per_model = Counter(model for model, _ in pairs)
    ids: dict[tuple[Any, str], str] = {}
    taken: set[str] = set()
    for model, key in pairs:
        base = schema_names[model]
        candidate = base if keys_per_model[model] == 1 else f"{base}.key.{_component_key(key)}"
        unique, n = candidate, 1
        while unique in taken:
            n += 1
            unique = f"{candidate}.{n}"
        taken.add(unique)
        ids[(model, key)] = unique
    return ids


# JSON Schema keywords whose value is a schema, a list of schemas or a map of names to schemas. Everything else
# (enum, const, default, examples, ...) is data and is left as it is.
_SUBSCHEMA: tuple[str, ...] = ("items", "additionalItems", "additionalProperties", "not", "if", "then", "else")
_SUBSCHEMA += ("contains", "propertyNames", "unevaluatedItems", "unevaluatedProperties")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def asyncapi_schema(schema: Any) -> Any:
    """A pydantic (JSON Schema 2020-12) schema as an AsyncAPI 3.0 Schema Object (a superset of draft-07).

    - `prefixItems` (tuples) becomes draft-07's array form of `items`, and `items` beside it `additionalItems`;
    - pydantic's OpenAPI-style `discriminator` object (AsyncAPI's is a property name with other rules) is kept
      as the extension `x-discriminator`: the `oneOf` of `const` tags already says which schema applies.
    """
    if isinstance(schema, list):
        return [asyncapi_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in _SUBSCHEMA or keyword in _SUBSCHEMA_LISTS:
            out[keyword] = asyncapi_schema(value)
        elif keyword in _SUBSCHEMA_MAPS and isinstance(value, dict):
            out[keyword] = {name: asyncapi_schema(s) for name, s in value.items()}
        else:
            out[keyword] = value
    if "prefixItems" in out:
        rest = out.pop("items", None)
        out["items"] = out.pop("prefixItems")
        if rest is not None:
            out["additionalItems"] = rest
    if isinstance(out.get("discriminator"), dict):
        out["x-discriminator"] = out.pop("discriminator")
    return out


def _summary(action: str, parties: tuple[str, ...], address: str) -> str:
    return f"{', '.join(parties)} {action}{'s' if len(parties) == 1 else ''} {address}"


def build(
    topics: Iterable[Topic] = CONTRACT_TOPICS, families: Mapping[str, Mapping[str, Topic]] = FAMILIES
) -> dict[str, Any]:
    """The document for `topics`; `families` (template → unit → its topic) says which of them share a template."""
    channels = _channels(topics, families)
    models = sorted({c.model for c in channels}, key=lambda m: (m.__name__, m.__module__))
    refs, defs = models_json_schema([(m, "serialization") for m in models], ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = {name: asyncapi_schema(s) for name, s in defs.get("$defs", {}).items()}
    schema_names: dict[type[BaseModel], str] = {}
    for model in models:
        top = refs[(model, "serialization")]
        ref = top.get("$ref", "")
        if ref.startswith("#/components/schemas/") and len(top) == 1:
            schema_names[model] = ref.removeprefix("#/components/schemas/")
        else:  # not hoisted by pydantic: keep it under the model's name
            name = _component_key(model.__name__)
            schemas[name] = asyncapi_schema(top)
            schema_names[model] = name
    message_ids = _message_ids(channels, schema_names)
    messages = {
        message_ids[(model, key)]: {
            "name": message_ids[(model, key)],
            "title": model.__name__,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{schema_names[model]}"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": key},
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
        for model, key in message_ids
    }
    doc_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel in channels:
        message_id = message_ids[(channel.model, channel.key)]
        entry: dict[str, Any] = {
            "address": channel.address,
            "description": channel.description,
            "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}},
            "bindings": {
                "kafka": {"partitions": channel.partitions, "replicas": 1, "bindingVersion": KAFKA_BINDING_VERSION}
            },
        }
        if channel.units:
            entry["parameters"] = {"unit": {"description": "the unit's code", "enum": list(channel.units)}}
        if channel.retired:
            entry["x-retired"] = channel.retired
        doc_channels[channel.address] = entry
        pointer = f"#/channels/{_escape(channel.address)}"
        for action, parties in (("send", channel.producers), ("receive", channel.consumers)):
            if parties:
                operations[f"{action}:{channel.address}"] = {
                    "action": action,
                    "channel": {"$ref": pointer},
                    "messages": [{"$ref": f"{pointer}/messages/{_escape(message_id)}"}],
                    "summary": _summary(action, parties, channel.address),
                }
    bad = sorted(k for k in [*schemas, *messages] if not _COMPONENT_KEY.fullmatch(k))
    if bad:
        raise ValueError(f"component names AsyncAPI does not allow: {', '.join(bad)}")
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "xinfang public event contract",
            "version": "1",
            "description": "Topics of the provincial letters-and-visits cluster (CONTRACT.md). Values are JSON.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The local stack's open listener, for local tools only (its anonymous principal is a"
                " super user)",
            },
            "local-scram": {
                "host": "127.0.0.1:9094",
                "protocol": "kafka",
                "description": "The local stack's SCRAM listener: every principal (service-<service>,"
                " unit-<unit>, channel-<channel>) may do what the ACLs generated from the topic registry allow, and"
                " nothing else; a unit writes only its own feedback topic and reads only its own inbox and refusals",
                "security": [{"$ref": "#/components/securitySchemes/scram"}],
            },
        },
        "channels": doc_channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
            "securitySchemes": {
                "scram": {
                    "type": "scramSha512",
                    "description": "SASL/SCRAM-SHA-512 as the principal; the local stack's passwords are in"
                    " .local/credentials.env (KAFKA_PASSWORD_<principal>, `-` written `_`)",
                }
            },
        },
    }


def _escape(pointer_part: str) -> str:
    return pointer_part.replace("~", "~0").replace("/", "~1")


def main() -> None:
    json.dump(build(), sys.stdout, indent=2, ensure_ascii=False, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
