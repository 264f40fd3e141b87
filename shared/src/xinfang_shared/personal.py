"""Personal data: sealed at rest and on the bus (AES-256-GCM), matched through a keyed hash, never in the clear
where handling does not need it.

Three keys, each held only where it is needed (settings.PersonalDataSettings, IntakeSettings):
  - the at-rest key (`PersonalDataVault`): a service's own sealed columns;
  - the transport key (`TransportSeal`): the personal block of matters.registered.v2, sealed by intake and opened
    by routing and notify; supervision and stats hold no key, so what they read of it is ciphertext;
  - the match key's HMAC key (`MatchKeys`, intake only): "the same petitioner" without storing who.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .logging import MASK, redact
from .settings import LOCAL_DEV_SECRET

if TYPE_CHECKING:
    from .settings import PersonalDataSettings

_NONCE = 12
_TRANSPORT_VERSION = "s1"


def _key_bytes(secret: str, name: str = "PERSONAL_DATA_KEY") -> bytes:
    if secret == LOCAL_DEV_SECRET:
        return hashlib.sha256(secret.encode()).digest()  # local/test only; production refuses this value
    try:
        raw = base64.b64decode(secret, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{name} must be base64 of 32 random bytes")
    return raw


class SealError(ValueError):
    """A sealed value that does not open: another key, another matter, or tampered with."""


class PersonalDataVault:
    """A service's personal data at rest (its own sealed columns)."""

    @classmethod
    def from_settings(cls, settings: PersonalDataSettings) -> PersonalDataVault:
        return cls(seal_key=settings.personal_data_key.get_secret_value())

    def __init__(self, *, seal_key: str) -> None:
        self._aead = AESGCM(_key_bytes(seal_key))

    def seal(self, data: object) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, orjson.dumps(data), b"xinfang-personal-v1")

    def open(self, sealed: bytes) -> object:
        return orjson.loads(self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], b"xinfang-personal-v1"))


class TransportSeal:
    """The personal block of an event on the bus: `s1.<key id>.<base64url(nonce | ciphertext)>`, AES-256-GCM under
    the transport key with the matter's id as associated data, so a block copied onto another matter's event does
    not open. The key id (the first bytes of the key's digest) lets a reader hold the keys a rotation replaced."""

    @classmethod
    def from_settings(cls, settings: PersonalDataSettings) -> TransportSeal:
        return cls(
            settings.personal_data_transport_key.get_secret_value(),
            old=[k.get_secret_value() for k in settings.personal_data_transport_old_keys],
        )

    def __init__(self, key: str, *, old: Iterable[str] = ()) -> None:
        current = _key_bytes(key, "PERSONAL_DATA_TRANSPORT_KEY")
        self._key_id = _key_id(current)
        self._keys = {_key_id(k): AESGCM(k) for k in (_key_bytes(o, "an old transport key") for o in old)}
        self._keys[self._key_id] = AESGCM(current)

    def seal(self, data: bytes, *, matter_id: uuid.UUID) -> str:
        nonce = os.urandom(_NONCE)
        sealed = nonce + self._keys[self._key_id].encrypt(nonce, data, _aad(matter_id))
        return f"{_TRANSPORT_VERSION}.{self._key_id}.{base64.urlsafe_b64encode(sealed).decode('ascii')}"

    def open(self, text: str, *, matter_id: uuid.UUID) -> bytes:
        version, _, rest = text.partition(".")
        key_id, _, body = rest.partition(".")
        if version != _TRANSPORT_VERSION or key_id not in self._keys:
            raise SealError(f"a sealed block of version {version!r} under key {key_id!r}, which this reader lacks")
        try:
            sealed = base64.urlsafe_b64decode(body.encode("ascii"))
            return self._keys[key_id].decrypt(sealed[:_NONCE], sealed[_NONCE:], _aad(matter_id))
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SealError(f"the sealed block does not open ({type(exc).__name__})") from None


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"xinfang-transport-key-id" + key).hexdigest()[:8]


def _aad(matter_id: uuid.UUID) -> bytes:
    return b"xinfang-transport-v1:" + matter_id.bytes


class MatchKeys:
    """The petitioner match key (intake): the same resident ID number and the same name always give the same
    key, and the key gives neither back. Both, because an ID number alone is known to others (an employer, a
    landlord, a neighbour): a stranger who has it must not be taken for its owner."""

    def __init__(self, hash_key: str) -> None:
        self._hash_key = hash_key.encode()

    def match_key(self, id_number: str, name: str) -> bytes:
        person = f"{id_number.strip().upper()}\x1f{_normal_name(name)}"
        return hmac.new(self._hash_key, person.encode(), hashlib.sha256).digest()


def _normal_name(name: str) -> str:
    """Names compare without spaces (张 三 is 张三) and case (Li Wei is LI WEI); nothing else is forgiven."""
    return "".join(name.split()).casefold()


# What a refused submission's `raw` keeps of the personal block: the structure, never the values.
_PERSON_FIELDS = ("name", "id_number", "phone", "address", "email")


def masked_submission(raw: bytes, limit: int) -> str:
    """A refused submission's original text for its refusal (`raw`), with every personal value masked: the
    petitioner's and the representatives' fields when it reads as JSON, else anything that looks like an ID
    number, a phone or an e-mail address. The channel system that sent it knows the values; no one else needs
    them."""
    text = raw.decode("utf-8", "replace")
    try:
        body: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return redact(text)[:limit]
    if not isinstance(body, dict):
        return redact(text)[:limit]
    for key in ("petitioner", "representatives"):
        if key in body:
            body[key] = _mask_people(body[key])
    return redact(orjson.dumps(body).decode("utf-8"))[:limit]


def _mask_people(value: Any) -> Any:
    if isinstance(value, list):
        return [_mask_people(v) for v in value]
    if isinstance(value, dict):
        return {k: MASK if k in _PERSON_FIELDS and v is not None else v for k, v in value.items()}
    return MASK


# ---- masking: personal data shown to those who may know that it is there, not what it is ---------------------


def mask_name(name: str) -> str:
    """张三丰 → 张**: the first character, a star for each of the others."""
    return name[:1] + "*" * (len(name) - 1)


def mask_id_number(id_number: str) -> str:
    """110105194912310021 → 110***********0021 (the first 3 and the last 4 kept)."""
    if len(id_number) <= 7:
        return "*" * len(id_number)
    return id_number[:3] + "*" * (len(id_number) - 7) + id_number[-4:]


def mask_phone(phone: str) -> str:
    """13812345678 → 138****5678 (digits only; too short to keep any: ***)."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) < 7:
        return "***"
    return f"{digits[:3]}****{digits[-4:]}"


def mask_email(address: str) -> str:
    """zhang.san@example.org → z***@example.org."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_address(address: str) -> str:
    """Its start (at most a third, at most 6 characters: the province and city, which the matter's region shows
    anyway), then ****."""
    return address[: min(6, len(address) // 3)] + "****"


_MASKS = {
    "name": mask_name,
    "id_number": mask_id_number,
    "phone": mask_phone,
    "address": mask_address,
    "email": mask_email,
}


def masked_person(person: Mapping[str, Any]) -> dict[str, Any]:
    """A person (a contract Person or Petitioner, as a dict) with every personal field masked: an absent value
    stays null, and a field that is not one of them is left out (an unknown field could be personal)."""
    masked: dict[str, Any] = {}
    for key, mask in _MASKS.items():
        if key in person:
            value = person[key]
            masked[key] = None if value is None else mask(value) if isinstance(value, str) else "***"
    return masked
