"""The ACLs the topic registry generates (xinfang_shared.contracts.acls): the local stack applies them to its SCRAM
listener, the tests' broker too, and deploy/production/acls.py prints them for production. What each kind of
principal may do, and above all what it may not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from xinfang_shared.contracts.acls import Acl, acls, principals
from xinfang_shared.contracts.reference import UNITS, Channel
from xinfang_shared.contracts.topics import BY_NAME, CONTRACT_TOPICS, DLQ_SUFFIX, SERVICES

spec = importlib.util.spec_from_file_location("acls", Path(__file__).resolve().parents[2] / "deploy/production/acls.py")
assert spec and spec.loader
production = importlib.util.module_from_spec(spec)
sys.modules["acls"] = production  # dataclasses look their module up
spec.loader.exec_module(production)

RULES = acls()


def _of(principal: str, operation: str, resource: str = "TOPIC") -> set[str]:
    return {a.name for a in RULES if a.principal == principal and a.operation == operation and a.resource == resource}


@pytest.mark.parametrize("unit", UNITS)
def test_a_unit_reads_its_own_inbox_and_refusals_and_writes_its_own_feedback_only(unit: str) -> None:
    who = f"unit-{unit}"
    assert _of(who, "READ") == {f"units.{unit}.inbox.v1", f"units.{unit}.feedback.rejected.v1"}
    assert _of(who, "WRITE") == {f"units.{unit}.feedback.v1"}
    assert {(a.name, a.prefixed) for a in RULES if a.principal == who and a.resource == "GROUP"} == {(f"{unit}-", True)}
    assert {a.operation for a in RULES if a.principal == who} <= {"READ", "WRITE"}


def test_no_unit_has_any_right_on_the_shared_feedback_topics_or_another_units() -> None:
    shared = {"units.feedback.v1", "units.feedback.rejected.v1"}
    for unit in UNITS:
        names = {a.name for a in RULES if a.principal == f"unit-{unit}"}
        assert not names & shared, unit
        assert all(unit in name for name in names), f"unit-{unit} has a right on another's: {names}"


def test_a_channel_system_writes_its_channel_and_reads_its_own_refusals() -> None:
    for channel in Channel:
        who = f"channel-{channel.value}"
        assert _of(who, "WRITE") == {f"intake.{channel.value}.submitted.v1"}
        assert _of(who, "READ") == {f"intake.{channel.value}.rejected.v1"}
    assert not {a for a in RULES if a.name == "intake.submission.rejected.v1" and a.operation == "READ"}


def test_services_get_what_the_registry_says_and_nothing_more() -> None:
    for service in SERVICES:
        who = f"service-{service}"
        reads = {t.name for t in CONTRACT_TOPICS if service in (*t.consumers, *t.replayers)}
        writes = {t.name for t in CONTRACT_TOPICS if service in t.producers and not t.retired}
        dead = {t.dlq for t in CONTRACT_TOPICS if service in t.consumers and t.has_dlq}
        assert _of(who, "READ") == reads, service
        assert _of(who, "WRITE") == writes | dead, service
    assert "matters.registered.v2" in _of("service-routing", "READ")
    assert "matters.registered.v1" not in _of("service-intake", "WRITE"), "a retired topic is written by nobody"


def test_dead_letters_are_read_by_nobody_but_operators() -> None:
    assert not [a for a in RULES if a.name.endswith(DLQ_SUFFIX) and a.operation == "READ"]
    assert {a.principal for a in RULES if a.name.endswith(DLQ_SUFFIX)} <= {f"service-{s}" for s in SERVICES}


def test_every_principal_is_known_and_every_topic_is_known() -> None:
    assert set(principals()) == {a.principal for a in RULES}
    assert len(principals()) == len(SERVICES) + len(UNITS) + len(Channel)
    topics = {a.name.removesuffix(DLQ_SUFFIX) for a in RULES if a.resource == "TOPIC"}
    assert topics <= set(BY_NAME)


def test_a_namespace_prefixes_every_topic_and_group() -> None:
    namespaced = acls("bench-1a.")
    assert len(namespaced) == len(RULES)
    assert all(a.name.startswith("bench-1a.") for a in namespaced)
    assert {
        Acl(a.principal, a.operation, a.resource, a.name.removeprefix("bench-1a."), a.prefixed) for a in namespaced
    } == set(RULES)


def test_production_prints_the_same_acls_as_commands_and_strimzi_users() -> None:
    commands = [production.command(a) for a in RULES]
    assert all("${KAFKA_BOOTSTRAP}" in c and "--allow-principal" in c for c in commands)
    assert any("User:unit-city-5101" in c and "units.city-5101.feedback.v1" in c and "Write" in c for c in commands)
    users = {u["metadata"]["name"]: u for u in production.strimzi_users("xinfang")}  # type: ignore[index]
    assert set(users) == set(principals())
    granted = {
        (name, acl["resource"]["name"], acl["operations"][0])  # type: ignore[index]
        for name, user in users.items()
        for acl in user["spec"]["authorization"]["acls"]  # type: ignore[index]
    }
    assert granted == {(a.principal, a.name, a.operation.capitalize()) for a in RULES}
