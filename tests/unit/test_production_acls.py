"""The production Kafka ACLs: a unit's system reads only its own inbox and writes only feedback."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from xinfang_shared.contracts.reference import UNITS

spec = importlib.util.spec_from_file_location("acls", Path(__file__).resolve().parents[2] / "deploy/production/acls.py")
assert spec and spec.loader
acls_module = importlib.util.module_from_spec(spec)
sys.modules["acls"] = acls_module  # dataclasses look their module up
spec.loader.exec_module(acls_module)


def test_each_unit_reads_only_its_own_inbox_and_writes_only_feedback() -> None:
    rules = acls_module.acls()
    for unit in UNITS:
        mine = [a for a in rules if a.principal == f"unit-{unit}"]
        read_topics = {a.name for a in mine if a.resource == "topic" and a.operation == "Read"}
        written = {a.name for a in mine if a.resource == "topic" and a.operation == "Write"}
        assert read_topics == {f"units.{unit}.inbox.v1", "units.feedback.rejected.v1"}
        assert written == {"units.feedback.v1"}
        other_inboxes = {f"units.{u}.inbox.v1" for u in UNITS if u != unit}
        assert not other_inboxes & {a.name for a in mine}


def test_services_get_what_the_registry_says() -> None:
    rules = acls_module.acls()
    routing = {(a.operation, a.name) for a in rules if a.principal == "service-routing"}
    assert ("Read", "matters.registered.v1") in routing and ("Write", "matters.routed.v1") in routing
    assert ("Write", "matters.registered.v1") not in routing
    assert all("${KAFKA_BOOTSTRAP}" in a.command() for a in rules)
