"""Administering the broker: topics as the registry wants them (deploy/local/topics.py, the tests' private broker,
the benchmark's namespaces), and its principals and ACLs (deploy/local/kafka_security.py, the tests' SASL broker).

Topics are created with their partitions and configs. A keyed topic (its records keyed by matter_id, say) never
gets more partitions than it was created with: the same key would then land on another partition, and a
matter's events could be read out of order. A topic that has fewer partitions than the registry asks is reported;
growing it is a migration to plan (a new topic), not something a start-up script does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from .contracts.acls import Acl
from .contracts.topics import TopicSpec
from .kafka_auth import KafkaConnection

log = logging.getLogger(__name__)


@dataclass
class TopicsEnsured:
    created: list[str] = field(default_factory=list)
    grown: list[str] = field(default_factory=list)
    # Keyed topics with fewer partitions than the registry asks, left as they are: (name, have, wanted).
    short: list[tuple[str, int, int]] = field(default_factory=list)
    reconfigured: list[str] = field(default_factory=list)


def _connection(kafka: str | KafkaConnection) -> KafkaConnection:
    return KafkaConnection(kafka) if isinstance(kafka, str) else kafka


def _spec(wanted: int | TopicSpec) -> TopicSpec:
    # A bare number: a topic of the tests' or the bench's own, unkeyed unless said otherwise.
    return TopicSpec(wanted, keyed=False) if isinstance(wanted, int) else wanted


async def ensure_topics(
    kafka: str | KafkaConnection, wanted: Mapping[str, int | TopicSpec], *, replication_factor: int = 1
) -> TopicsEnsured:
    """Creates the topics of `wanted` that are missing (with their configs and `replication_factor`: 1 on the
    one-broker stacks here; a production cluster creates them from the KafkaTopic resources of deploy/production
    with 3), sets the configs of those that exist, and gives an unkeyed topic the partitions it lacks; a keyed one
    is reported in `short`. Idempotent."""
    specs = {name: _spec(w) for name, w in wanted.items()}
    admin = AIOKafkaAdminClient(**_connection(kafka).aiokafka(), client_id="xinfang-topics")
    await admin.start()
    done = TopicsEnsured()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in specs if name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=specs[name].partitions,
                        replication_factor=replication_factor,
                        topic_configs=dict(specs[name].configs),
                    )
                    for name in missing
                ]
            )
            done.created = missing
        present = [name for name in specs if name in existing]
        if present:
            for topic in await admin.describe_topics(present):
                name, have = topic["topic"], len(topic["partitions"])
                spec = specs[name]
                if have < spec.partitions:
                    if spec.keyed:
                        done.short.append((name, have, spec.partitions))
                    else:
                        done.grown.append(name)
            if done.grown:
                await admin.create_partitions({name: NewPartitions(specs[name].partitions) for name in done.grown})
            configured = [name for name in present if specs[name].configs]
            if configured:
                # Sets only the keys the registry names (an incremental change would need a newer admin API; the
                # registry's topics have no other topic-level settings to keep).
                responses = await admin.alter_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, name, dict(specs[name].configs)) for name in configured]
                )
                refused = [r for response in responses for r in response.resources if r[0] != 0]
                if refused:
                    raise RuntimeError(f"the broker refused topic settings: {refused[:3]}")
                done.reconfigured = configured
        for name, have, asked in done.short:
            log.warning(
                "a keyed topic has fewer partitions than the registry asks; not grown (a key would move to another"
                " partition and lose its order)",
                extra={"topic": name, "partitions": have, "registry": asked},
            )
        return done
    finally:
        await admin.close()


async def delete_topics(kafka: str | KafkaConnection, names: list[str]) -> list[str]:
    admin = AIOKafkaAdminClient(**_connection(kafka).aiokafka(), client_id="xinfang-topics")
    await admin.start()
    try:
        present = [name for name in names if name in set(await admin.list_topics())]
        if present:
            await admin.delete_topics(present)
        return present
    finally:
        await admin.close()


@dataclass
class SecurityApplied:
    users: int = 0
    added: int = 0
    removed: int = 0


async def apply_security(
    kafka: str | KafkaConnection,
    passwords: Mapping[str, str],
    acls: Iterable[Acl],
    *,
    mechanism: str = "SCRAM-SHA-512",
    prune_prefixes: tuple[str, ...] = ("service-", "unit-", "channel-"),
) -> SecurityApplied:
    """Makes the broker's SCRAM users and ACLs what is given (connected as a super user): every principal of
    `passwords` gets its password, every ACL of `acls` is created, and an ACL of one of our principals (names
    starting with `prune_prefixes`) on a resource these ACLs govern that is not among them is deleted, so a
    permission the registry no longer grants does not linger (the ACLs of other namespaces are left alone).
    Idempotent."""
    return await asyncio.to_thread(
        _apply_security, _connection(kafka), dict(passwords), list(acls), mechanism, prune_prefixes
    )


def _apply_security(
    kafka: KafkaConnection,
    passwords: dict[str, str],
    acls: list[Acl],
    mechanism: str,
    prune_prefixes: tuple[str, ...],
) -> SecurityApplied:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient({**kafka.librdkafka(), "client.id": "xinfang-security"})
    done = SecurityApplied()
    if passwords:
        kind = ScramMechanism[mechanism.replace("-", "_")]
        upserts: list[Any] = [
            UserScramCredentialUpsertion(user, ScramCredentialInfo(kind, 8192), password.encode())
            for user, password in sorted(passwords.items())
        ]
        for future in admin.alter_user_scram_credentials(upserts, request_timeout=60).values():
            future.result()
        done.users = len(upserts)

    wanted = {acl.binding() for acl in acls}
    governed = {b.name for b in wanted}
    anything: Any = None  # a filter's None matches any name, principal and host
    everything = AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    present = set(admin.describe_acls(everything, request_timeout=60).result())
    ours = {b for b in present if b.principal.removeprefix("User:").startswith(prune_prefixes) and b.name in governed}
    stale = ours - wanted
    missing = wanted - present
    if stale:
        for future in admin.delete_acls([_exactly(b) for b in stale], request_timeout=60).values():
            future.result()
        done.removed = len(stale)
    if missing:
        for future in admin.create_acls(sorted(missing, key=str), request_timeout=60).values():
            future.result()
        done.added = len(missing)
    return done


async def remove_acls(kafka: str | KafkaConnection, acls: Iterable[Acl]) -> int:
    """Deletes these ACLs (a namespace's, when a benchmark or a chaos run ends); returns how many were there."""
    return await asyncio.to_thread(_remove_acls, _connection(kafka), list(acls))


def _remove_acls(kafka: KafkaConnection, acls: list[Acl]) -> int:
    from confluent_kafka.admin import AdminClient

    if not acls:
        return 0
    admin = AdminClient({**kafka.librdkafka(), "client.id": "xinfang-security"})
    removed = 0
    for future in admin.delete_acls([_exactly(a.binding()) for a in acls], request_timeout=60).values():
        removed += len(future.result())
    return removed


def _exactly(binding: Any) -> Any:
    """The filter that matches this one binding."""
    from confluent_kafka.admin import AclBindingFilter  # type: ignore[attr-defined]

    b = binding
    return AclBindingFilter(
        b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
    )
