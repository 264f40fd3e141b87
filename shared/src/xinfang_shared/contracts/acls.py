"""The broker's ACLs, generated from the topic registry: the one generator for the local stack's SCRAM listener
(deploy/local/kafka_security.py), the tests' secured broker and production (deploy/production/acls.py).

Principals (SASL/SCRAM users): `service-<service>` for each service of the cluster, `unit-<unit>` for each unit's
system, `channel-<channel>` for each channel system. Operators are super users and need no ACL. Everything not
granted here is denied (allow.everyone.if.no.acl.found=false):
  - a topic's producers may write it, its consumers read it (as the registry says; a retired topic is read by
    its consumers until it is drained, and written by nobody), and so may a service that replays it to rebuild;
  - a service may write the dead-letter topic of each topic it consumes, and read in its consumer groups
    (named `xinfang-<service>...`);
  - a unit reads its own inbox and its own rejected feedback, writes its own feedback topic, and uses consumer
    groups named `<unit>-...`; it is granted nothing on the shared topics nor on any other unit's;
  - a channel system writes its channel topic, reads its own rejected topic, with groups `channel-<channel>-...`.
In a namespace (TOPIC_PREFIX, a benchmark's or a test's), every topic and group name gets the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .topics import CONTRACT_TOPICS, OPERATORS, SERVICES, Topic

UNIT_PARTY = "unit:"
CHANNEL_PARTY = "channel:"


@dataclass(frozen=True, order=True)
class Acl:
    principal: str  # the SCRAM user, without "User:"
    operation: str  # READ, WRITE, DESCRIBE
    resource: str  # TOPIC or GROUP
    name: str
    prefixed: bool = False  # the name is a prefix (PREFIXED pattern) rather than the whole name (LITERAL)

    def binding(self) -> Any:
        """As confluent-kafka's AclBinding (allow, from any host)."""
        from confluent_kafka.admin import (  # type: ignore[attr-defined]
            AclBinding,
            AclOperation,
            AclPermissionType,
            ResourcePatternType,
            ResourceType,
        )

        return AclBinding(
            ResourceType[self.resource],
            self.name,
            ResourcePatternType.PREFIXED if self.prefixed else ResourcePatternType.LITERAL,
            f"User:{self.principal}",
            "*",
            AclOperation[self.operation],
            AclPermissionType.ALLOW,
        )


def principal(party: str) -> str | None:
    """The SCRAM user of a producer or consumer the registry names; None for operators (super users)."""
    if party == OPERATORS:
        return None
    if party in SERVICES:
        return f"service-{party}"
    if party.startswith(UNIT_PARTY):
        return f"unit-{party.removeprefix(UNIT_PARTY)}"
    if party.startswith(CHANNEL_PARTY):
        return f"channel-{party.removeprefix(CHANNEL_PARTY)}"
    raise ValueError(f"the registry names a party no principal stands for: {party!r}")


def group_prefix(who: str) -> str:
    """The start of the consumer group names a principal may use."""
    if who.startswith("service-"):
        return f"xinfang-{who.removeprefix('service-')}"
    return f"{who.removeprefix('unit-')}-"


def principals(topics: tuple[Topic, ...] = CONTRACT_TOPICS) -> list[str]:
    """Every principal the registry names (the users a broker must have)."""
    found = {principal(p) for t in topics for p in (*t.producers, *t.consumers)} | {f"service-{s}" for s in SERVICES}
    return sorted(p for p in found if p is not None)


def acls(prefix: str = "", topics: tuple[Topic, ...] = CONTRACT_TOPICS) -> list[Acl]:
    """The ACLs of every principal over the topics of namespace `prefix` (empty: the contract's names)."""
    rules: set[Acl] = set()
    for topic in topics:
        name = prefix + topic.name
        for producer in () if topic.retired else topic.producers:
            if (who := principal(producer)) is not None:
                rules.add(Acl(who, "WRITE", "TOPIC", name))
        for consumer in topic.consumers:
            if (who := principal(consumer)) is None:
                continue
            rules.add(Acl(who, "READ", "TOPIC", name))
            if consumer in SERVICES and topic.has_dlq:
                rules.add(Acl(who, "WRITE", "TOPIC", name + ".dlq"))
        for replayer in topic.replayers:
            rules.add(Acl(f"service-{replayer}", "READ", "TOPIC", name))
    for who in principals(topics):
        rules.add(Acl(who, "READ", "GROUP", prefix + group_prefix(who), prefixed=True))
    return sorted(rules)
