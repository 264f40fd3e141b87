"""Personal data: the at-rest vault, the transport seal of matters.registered.v2, the petitioner match key and the
masking of a refused submission's text."""

from __future__ import annotations

import base64
import json
import os
import random
import uuid

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_intake_validation import valid_id_numbers
from xinfang_shared.personal import (
    MatchKeys,
    PersonalDataVault,
    SealError,
    TransportSeal,
    mask_email,
    mask_phone,
    masked_person,
    masked_submission,
)
from xinfang_shared.settings import LOCAL_DEV_SECRET

ID_NUMBER = "11010519491231002X"
NAME = "测试人"
PERSON = {"name": NAME, "id_number": ID_NUMBER, "phone": "13800000000", "address": "某市某街道1号"}
MATTER = uuid.UUID("5d2b9a54-4f1e-4d35-9a57-8d7f2b1e4a10")


def _key(seed: int) -> str:
    return base64.b64encode(random.Random(seed).randbytes(32)).decode()


def _json_values() -> st.SearchStrategy[object]:
    return st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=10,
    )


# --- at rest ---------------------------------------------------------------------------------------------


@pytest.fixture
def vault() -> PersonalDataVault:
    return PersonalDataVault(seal_key=_key(1))


@pytest.mark.parametrize("seal_key", [LOCAL_DEV_SECRET, _key(1)])
def test_seal_open_round_trip(seal_key: str) -> None:
    vault = PersonalDataVault(seal_key=seal_key)
    for data in [PERSON, ID_NUMBER, [PERSON, PERSON], {"empty": ""}, None, 0]:
        assert vault.open(vault.seal(data)) == data


@settings(max_examples=100, deadline=None, derandomize=True)
@given(_json_values())
def test_round_trip_of_any_json_value(data: object) -> None:
    vault = PersonalDataVault(seal_key=_key(1))
    assert vault.open(vault.seal(data)) == data


def test_ciphertext_differs_each_time_and_shows_nothing_of_the_person(vault: PersonalDataVault) -> None:
    sealed = [vault.seal(PERSON) for _ in range(20)]
    assert len(set(sealed)) == len(sealed)
    for blob in sealed:
        for value in (ID_NUMBER, ID_NUMBER[:-1], NAME, "13800000000", "某市某街道"):
            assert value.encode() not in blob, value
            assert value.encode() not in base64.b64encode(blob), value


def test_a_vault_with_another_key_cannot_open(vault: PersonalDataVault) -> None:
    with pytest.raises(InvalidTag):
        PersonalDataVault(seal_key=_key(3)).open(vault.seal(PERSON))


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
        "***" + _key(1),
    ],
)
def test_a_key_that_is_not_base64_of_32_bytes_is_refused(seal_key: str) -> None:
    with pytest.raises(ValueError):
        PersonalDataVault(seal_key=seal_key)
    with pytest.raises(ValueError):
        TransportSeal(seal_key)


# --- on the bus ------------------------------------------------------------------------------------------


@pytest.fixture
def transport() -> TransportSeal:
    return TransportSeal(_key(4))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(_json_values(), st.uuids())
def test_a_sealed_block_opens_for_its_own_matter(data: object, matter: uuid.UUID) -> None:
    seal = TransportSeal(_key(4))
    block = seal.seal(json.dumps(data).encode(), matter_id=matter)
    assert json.loads(seal.open(block, matter_id=matter)) == data


def test_a_sealed_block_is_text_that_shows_nothing_of_the_person(transport: TransportSeal) -> None:
    blocks = [transport.seal(json.dumps(PERSON, ensure_ascii=False).encode(), matter_id=MATTER) for _ in range(10)]
    assert len(set(blocks)) == len(blocks)
    for block in blocks:
        version, key_id, body = block.split(".")
        assert (version, len(key_id)) == ("s1", 8)
        assert base64.urlsafe_b64decode(body)  # the block is plain URL-safe base64 after its two labels
        for value in (ID_NUMBER, NAME, "13800000000"):
            assert value not in block
            assert value.encode() not in base64.urlsafe_b64decode(body)


def test_a_block_moved_to_another_matter_does_not_open(transport: TransportSeal) -> None:
    block = transport.seal(b'{"tracking_code": "X"}', matter_id=MATTER)
    with pytest.raises(SealError):
        transport.open(block, matter_id=uuid.uuid4())


def test_a_reader_with_another_key_cannot_open(transport: TransportSeal) -> None:
    block = transport.seal(b"{}", matter_id=MATTER)
    with pytest.raises(SealError):
        TransportSeal(_key(5)).open(block, matter_id=MATTER)
    # Even when the block claims the reader's key id: the tag does not verify.
    other = TransportSeal(_key(5))
    other_id = other.seal(b"{}", matter_id=MATTER).split(".")[1]
    forged = ".".join(["s1", other_id, block.split(".")[2]])
    with pytest.raises(SealError):
        other.open(forged, matter_id=MATTER)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:-2],
        lambda b: b + "A",
        lambda b: b.replace("s1.", "s2.", 1),
        lambda b: "s1..",
        lambda b: "",
        lambda b: b.rsplit(".", 1)[0] + ".!!!notbase64",
        lambda b: b[:-5] + ("B" if b[-5] != "B" else "C") + b[-4:],
    ],
)
def test_a_tampered_block_does_not_open(transport: TransportSeal, mangle: object) -> None:
    block = transport.seal(b'{"a": 1}', matter_id=MATTER)
    assert callable(mangle)
    with pytest.raises(SealError):
        transport.open(mangle(block), matter_id=MATTER)


def test_after_a_rotation_blocks_sealed_with_the_old_key_still_open() -> None:
    old = TransportSeal(_key(6))
    block = old.seal(b'{"n": 1}', matter_id=MATTER)
    rotated = TransportSeal(_key(7), old=[_key(6)])
    assert rotated.open(block, matter_id=MATTER) == b'{"n": 1}'
    assert rotated.seal(b"{}", matter_id=MATTER).split(".")[1] != block.split(".")[1]  # new blocks: the new key
    with pytest.raises(SealError):
        TransportSeal(_key(7)).open(block, matter_id=MATTER)  # a reader without the old key cannot


# --- the petitioner match key ----------------------------------------------------------------------------


def test_the_match_key_needs_the_id_number_and_the_name() -> None:
    keys = MatchKeys(_key(2))
    key = keys.match_key(ID_NUMBER, NAME)
    assert len(key) == 32
    assert keys.match_key(ID_NUMBER, NAME) == key
    assert keys.match_key(ID_NUMBER.lower(), NAME) == key
    assert keys.match_key(f"  {ID_NUMBER}\n", f" {NAME} ") == key
    assert keys.match_key(ID_NUMBER, "测 试 人") == key  # spaces inside a name are not a different person
    # A stranger who knows the ID number but not the name is not the same petitioner.
    assert keys.match_key(ID_NUMBER, "张三") != key
    assert keys.match_key(ID_NUMBER, "") != key
    assert ID_NUMBER.encode() not in key and NAME.encode() not in key
    # Another instance with the same hash key (a restart, a replica) gives the same key.
    assert MatchKeys(_key(2)).match_key(ID_NUMBER, NAME) == key


def test_latin_names_match_whatever_their_case() -> None:
    keys = MatchKeys(_key(2))
    assert (
        keys.match_key(ID_NUMBER, "Li Wei") == keys.match_key(ID_NUMBER, "LI WEI") == keys.match_key(ID_NUMBER, "liwei")
    )
    assert keys.match_key(ID_NUMBER, "Li Wei") != keys.match_key(ID_NUMBER, "Li Wen")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(valid_id_numbers(), valid_id_numbers())
def test_match_key_differs_for_different_ids(a: str, b: str) -> None:
    keys = MatchKeys(_key(2))
    assert (keys.match_key(a, NAME) == keys.match_key(b, NAME)) == (a.upper() == b.upper())


def test_match_key_differs_for_different_hash_keys() -> None:
    found = {MatchKeys(k).match_key(ID_NUMBER, NAME) for k in [_key(2), _key(3), LOCAL_DEV_SECRET, "another-secret"]}
    assert len(found) == 4


# --- a refused submission's text -------------------------------------------------------------------------


def test_a_refused_submission_keeps_its_shape_but_no_personal_value() -> None:
    body = {
        "external_id": "L-9",
        "petitioner": PERSON | {"email": "ceshi@example.org"},
        "representatives": [{"name": "代表甲", "id_number": "11010519491231002X", "phone": "13900000000"}],
        "title": "工资",
        "headcount": "many",  # the reason it was refused
    }
    masked = masked_submission(json.dumps(body, ensure_ascii=False).encode(), 64 * 1024)
    for value in (NAME, ID_NUMBER, "13800000000", "某市某街道", "ceshi@example.org", "代表甲", "13900000000"):
        assert value not in masked, value
    kept = json.loads(masked)
    assert kept["external_id"] == "L-9" and kept["headcount"] == "many" and kept["title"] == "工资"
    assert set(kept["petitioner"]) == set(body["petitioner"])  # the channel sees which fields it sent


@pytest.mark.parametrize(
    "raw",
    [
        b'{"petitioner": {"name": "x", "id_number": "11010519491231002X", "phone": "138000000',  # cut short
        b"not json at all, call 13800000000 or mail ceshi@example.org, id 11010519491231002X",
        b'["11010519491231002X", "13800000000"]',
        b'{"petitioner": "11010519491231002X 13800000000"}',
    ],
)
def test_an_unreadable_refused_submission_is_masked_by_shape(raw: bytes) -> None:
    masked = masked_submission(raw, 64 * 1024)
    for value in ("11010519491231002X", "13800000000", "ceshi@example.org"):
        assert value not in masked, value


def test_the_masked_text_is_cut_to_the_limit() -> None:
    assert len(masked_submission(b'{"content": "' + b"x" * 1000 + b'"}', 100)) == 100


# --- masking what a person may know is there, not what it is ----------------------------------------------


def test_addresses_are_masked() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+86 138-1234-5678") == "861****5678"
    assert mask_email("zhang.san@example.org") == "z***@example.org"


def test_a_petitioner_is_masked_field_by_field() -> None:
    petitioner = PERSON | {
        "name": "张三丰",
        "email": "zhang.san@example.org",
        "address": "四川省成都市锦江区测试路12号3单元401室",
    }
    assert masked_person(petitioner) == {
        "name": "张**",
        "id_number": "110***********002X",
        "phone": "138****0000",
        "address": "四川省成都市****",
        "email": "z***@example.org",
    }


def test_absent_fields_stay_absent_and_unknown_ones_are_left_out() -> None:
    representative = {"name": "李四", "id_number": ID_NUMBER, "phone": "12-345", "note": "她的手机 13900000000"}
    assert masked_person(representative) == {"name": "李*", "id_number": "110***********002X", "phone": "***"}
    assert masked_person({"name": "王五", "email": None}) == {"name": "王*", "email": None}


UNMASKED = st.text(st.characters(blacklist_characters="*"), min_size=1, max_size=40)


@given(st.fixed_dictionaries({k: UNMASKED for k in ("name", "id_number", "phone", "address", "email")}))
def test_no_masked_field_gives_its_value_back(person: dict[str, str]) -> None:
    masked = masked_person(person)
    for key, value in person.items():
        if len(value) >= 8:  # the short ones keep (at most) a character or two
            assert masked[key] != value, key
