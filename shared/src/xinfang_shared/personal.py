"""Personal data at rest: sealed with AES-256-GCM; matched through a keyed hash, never in the clear."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .settings import LOCAL_DEV_SECRET, ServiceSettings

_NONCE = 12


def _key_bytes(secret: str) -> bytes:
    if secret == LOCAL_DEV_SECRET:
        return hashlib.sha256(secret.encode()).digest()  # local/test only; production refuses this value
    try:
        raw = base64.b64decode(secret, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise ValueError("PERSONAL_DATA_KEY must be base64 of 32 random bytes")
    return raw


class PersonalDataVault:
    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> PersonalDataVault:
        return cls(
            seal_key=settings.personal_data_key.get_secret_value(),
            hash_key=settings.personal_data_hash_key.get_secret_value(),
        )

    def __init__(self, *, seal_key: str, hash_key: str) -> None:
        self._aead = AESGCM(_key_bytes(seal_key))
        self._hash_key = hash_key.encode()

    def seal(self, data: object) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, orjson.dumps(data), b"xinfang-personal-v1")

    def open(self, sealed: bytes) -> object:
        return orjson.loads(self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], b"xinfang-personal-v1"))

    def match_key(self, id_number: str) -> bytes:
        """The same resident ID number always gives the same key; the key does not give the number back."""
        return hmac.new(self._hash_key, id_number.strip().upper().encode(), hashlib.sha256).digest()
