"""PersonalDataVault: AES-256-GCM sealing of personal data and the keyed match key of ID numbers."""

from __future__ import annotations

import base64
import os
import random

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_intake_validation import valid_id_numbers
from xinfang_shared.personal import PersonalDataVault
from xinfang_shared.settings import LOCAL_DEV_SECRET

ID_NUMBER = "11010519491231002X"
PERSON = {"name": "测试人", "id_number": ID_NUMBER, "phone": "13800000000", "address": "某市某街道1号"}


def _key(seed: int) -> str:
    return base64.b64encode(random.Random(seed).randbytes(32)).decode()


@pytest.fixture
def vault() -> PersonalDataVault:
    return PersonalDataVault(seal_key=_key(1), hash_key=_key(2))


@pytest.mark.parametrize("seal_key", [LOCAL_DEV_SECRET, _key(1)])
def test_seal_open_round_trip(seal_key: str) -> None:
    vault = PersonalDataVault(seal_key=seal_key, hash_key=_key(2))
    for data in [PERSON, ID_NUMBER, [PERSON, PERSON], {"empty": ""}, None, 0]:
        assert vault.open(vault.seal(data)) == data


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=10,
    )
)
def test_round_trip_of_any_json_value(data: object) -> None:
    vault = PersonalDataVault(seal_key=_key(1), hash_key=_key(2))
    assert vault.open(vault.seal(data)) == data


def test_ciphertext_differs_each_time_and_hides_the_id_number(vault: PersonalDataVault) -> None:
    sealed = [vault.seal(PERSON) for _ in range(20)]
    assert len(set(sealed)) == len(sealed)
    for blob in sealed:
        assert ID_NUMBER.encode() not in blob
        assert ID_NUMBER[:-1].encode() not in blob
        assert "测试人".encode() not in blob
        assert b"13800000000" not in blob
        assert ID_NUMBER.encode() not in base64.b64decode(base64.b64encode(blob))


def test_a_vault_with_another_key_cannot_open(vault: PersonalDataVault) -> None:
    other = PersonalDataVault(seal_key=_key(3), hash_key=_key(2))
    with pytest.raises(InvalidTag):
        other.open(vault.seal(PERSON))


def test_tampering_is_detected(vault: PersonalDataVault) -> None:
    sealed = vault.seal(PERSON)
    for i in [0, 5, 11, 12, 20, len(sealed) // 2, len(sealed) - 1]:  # nonce, ciphertext and tag bytes
        tampered = bytearray(sealed)
        tampered[i] ^= 0x01
        with pytest.raises(InvalidTag):
            vault.open(bytes(tampered))
    with pytest.raises(InvalidTag):
        vault.open(sealed[:-1])  # truncated tag
    with pytest.raises(InvalidTag):
        vault.open(sealed + b"\x00")
    with pytest.raises((InvalidTag, ValueError)):
        vault.open(sealed[:8])  # not even a nonce


def test_match_key_is_stable_and_case_insensitive(vault: PersonalDataVault) -> None:
    key = vault.match_key(ID_NUMBER)
    assert len(key) == 32
    assert vault.match_key(ID_NUMBER) == key
    assert vault.match_key(ID_NUMBER.lower()) == key
    assert vault.match_key(f"  {ID_NUMBER}\n") == key
    assert ID_NUMBER.encode() not in key
    # Another vault with the same hash key (e.g. after a restart, or another replica) gives the same key.
    assert PersonalDataVault(seal_key=_key(9), hash_key=_key(2)).match_key(ID_NUMBER) == key


@settings(max_examples=200, deadline=None, derandomize=True)
@given(valid_id_numbers(), valid_id_numbers())
def test_match_key_differs_for_different_ids(a: str, b: str) -> None:
    vault = PersonalDataVault(seal_key=_key(1), hash_key=_key(2))
    assert (vault.match_key(a) == vault.match_key(b)) == (a.upper() == b.upper())


def test_match_key_differs_for_different_hash_keys() -> None:
    keys = {
        PersonalDataVault(seal_key=_key(1), hash_key=hash_key).match_key(ID_NUMBER)
        for hash_key in [_key(2), _key(3), LOCAL_DEV_SECRET, "another-secret"]
    }
    assert len(keys) == 4


@pytest.mark.parametrize(
    "seal_key",
    [
        "",
        "not a key",
        "not base64 at all!!",
        base64.b64encode(b"x" * 16).decode(),  # AES-128 size
        base64.b64encode(b"x" * 31).decode(),
        base64.b64encode(b"x" * 33).decode(),
        base64.b64encode(b"x" * 64).decode(),
        base64.b64encode(b"x" * 32).decode()[:-2],  # cut: bad padding
        os.urandom(32).hex(),  # hex, not base64
        "密钥" * 22,
        LOCAL_DEV_SECRET + " ",
    ],
)
def test_a_key_that_is_not_base64_of_32_bytes_is_refused(seal_key: str) -> None:
    with pytest.raises(ValueError):
        PersonalDataVault(seal_key=seal_key, hash_key=_key(2))


@pytest.mark.parametrize("junk", ["***", "!#$%", "<>"])
def test_a_key_with_non_base64_characters_is_refused(junk: str) -> None:
    with pytest.raises(ValueError):
        PersonalDataVault(seal_key=junk + _key(1), hash_key=_key(2))
