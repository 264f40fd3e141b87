"""The AsyncAPI 3.0 document of the v1 topics, generated from the topic registry and the event models.

`make asyncapi` writes it to docs/asyncapi.json; a contract test fails when the committed copy is stale.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic.json_schema import models_json_schema

from .topics import CONTRACT_TOPICS, UNIT_INBOXES, Topic

_INBOX_TEMPLATE = "units.{unit}.inbox.v1"


def _channel_id(topic: Topic) -> str:
    return _INBOX_TEMPLATE if topic in UNIT_INBOXES.values() else topic.name


def build() -> dict[str, Any]:
    topics: dict[str, Topic] = {}
    for topic in CONTRACT_TOPICS:
        topics.setdefault(_channel_id(topic), topic)
    models = sorted({t.model for t in topics.values()}, key=lambda m: m.__name__)
    _, defs = models_json_schema([(m, "serialization") for m in models], ref_template="#/components/schemas/{model}")
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel_id, topic in topics.items():
        name = topic.model.__name__
        channel: dict[str, Any] = {
            "address": channel_id,
            "description": topic.description,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"kafka": {"partitions": topic.partitions, "replicas": 1}},
        }
        if channel_id == _INBOX_TEMPLATE:
            channel["parameters"] = {"unit": {"description": "unit code, e.g. city-5101 or dept-health"}}
        channels[channel_id] = channel
        ref = {"$ref": f"#/channels/{_escape(channel_id)}"}
        for action, parties in (("send", topic.producers), ("receive", topic.consumers)):
            operations[f"{action}:{channel_id}"] = {
                "action": action,
                "channel": ref,
                "summary": f"{', '.join(parties)} {action}{'s' if len(parties) == 1 else ''} {channel_id}",
                "bindings": {"kafka": {"key": {"type": "string", "description": topic.key}}},
            }
    messages = {
        m.__name__: {
            "name": m.__name__,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{m.__name__}"},
        }
        for m in models
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "xinfang public event contract",
            "version": "1",
            "description": "Topics of the provincial letters-and-visits cluster (CONTRACT.md). Values are JSON.",
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": defs["$defs"]},
    }


def _escape(pointer_part: str) -> str:
    return pointer_part.replace("~", "~0").replace("/", "~1")


def main() -> None:
    json.dump(build(), sys.stdout, indent=2, ensure_ascii=False, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
