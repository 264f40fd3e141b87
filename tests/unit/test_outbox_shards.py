"""The outbox relay's lock groups, without a broker or a database: how the 64 buckets split into groups, the
lock and query of `shards=1` (the relay before sharding), and the settings' bounds."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from pydantic import ValidationError

from xinfang_shared.db import SHARED_MIGRATIONS
from xinfang_shared.kafka_auth import KafkaConnection
from xinfang_shared.outbox import BUCKETS, OutboxRelay, bucket_group, bucket_of
from xinfang_shared.settings import ServiceSettings


def _relay(**kwargs: Any) -> OutboxRelay:
    # The pool is only used while publishing.
    return OutboxRelay(pool=None, dsn="postgresql://unused", schema="intake", kafka=KafkaConnection("unused"), **kwargs)


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 7, 64])
def test_every_bucket_is_in_exactly_one_group(shards: int) -> None:
    groups = [bucket_group(shards, g) for g in range(shards)]
    assert sorted(b for g in groups for b in g) == list(range(BUCKETS))
    for g, buckets in enumerate(groups):
        assert all(b % shards == g for b in buckets)


def test_a_keys_bucket_is_the_first_byte_of_its_sha256_and_no_key_is_bucket_0() -> None:
    key = b"0d9e6a8e-4a0c-4d2b-9f0e-7b3c1a2d5e6f"
    assert bucket_of(key) == hashlib.sha256(key).digest()[0] % 64
    assert bucket_of(None) == 0
    assert len({bucket_of(f"matter-{i}".encode()) for i in range(2000)}) == BUCKETS


def test_the_migration_computes_the_same_bucket() -> None:
    sql = (SHARED_MIGRATIONS / "0002_outbox_shards.sql").read_text(encoding="utf-8")
    assert "get_byte(sha256(key), 0) % 64" in sql
    assert BUCKETS == 64


def test_shards_1_takes_the_lock_and_the_query_of_the_relay_before_sharding() -> None:
    relay = _relay()
    assert relay.shards == 1
    assert relay._locks == ["outbox:intake"]
    assert relay._select == 'SELECT id, topic, key, value, headers FROM "intake".outbox ORDER BY id LIMIT $1 FOR UPDATE'
    assert relay.next_group == 0
    assert relay.topic_prefix == ""


def test_each_group_has_its_own_lock() -> None:
    relay = _relay(shards=4)
    assert relay._locks == [f"outbox:intake:{g}/4" for g in range(4)]
    assert relay._buckets[1] == list(range(1, 64, 4))
    assert "WHERE shard = ANY($2::smallint[])" in relay._select
    assert 0 <= relay.next_group < 4


@pytest.mark.parametrize("shards", [0, -1, 65])
def test_shards_out_of_range_are_refused(shards: int) -> None:
    with pytest.raises(ValueError, match="shards"):
        _relay(shards=shards)


def test_the_setting_defaults_to_4_and_is_bounded() -> None:
    def settings(**kwargs: Any) -> ServiceSettings:
        return ServiceSettings(environment="test", _env_file=None, **kwargs)

    assert settings().outbox_shards == 4
    assert settings(outbox_shards=64).outbox_shards == 64
    for bad in (0, 65):
        with pytest.raises(ValidationError):
            settings(outbox_shards=bad)
