"""Tracking codes (查询码): what a petitioner gets back to look a matter up.

16 symbols of Crockford's base-32 alphabet (no I, L, O, U: nothing to misread), shown as XXXX-XXXX-XXXX-XXXX.
15 are random (75 bits from the OS's CSPRNG: unguessable) and the last is a Luhn mod 32 check character,
so a mistyped code is recognised without touching the database.
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
# What people type for the symbols left out.
_READS_AS = str.maketrans({"I": "1", "L": "1", "O": "0", "U": "V"})
RANDOM_SYMBOLS = 15


def _check_symbol(body: str) -> str:
    """Luhn mod N over the alphabet: catches every single-symbol error and most adjacent swaps."""
    n = len(ALPHABET)
    factor, total = 2, 0
    for char in reversed(body):
        addend = factor * _VALUE[char]
        total += addend // n + addend % n
        factor = 1 if factor == 2 else 2
    return ALPHABET[(n - total % n) % n]


def new_tracking_code() -> str:
    bits = int.from_bytes(secrets.token_bytes(10), "big")  # 80 random bits, 75 of them used
    body = "".join(ALPHABET[(bits >> (5 * i)) & 31] for i in range(RANDOM_SYMBOLS))
    code = body + _check_symbol(body)
    return "-".join(code[i : i + 4] for i in range(0, 16, 4))


def normalise(text: str) -> str | None:
    """The canonical form of a code as typed (any case, spaces or dashes), or None if it cannot be one."""
    raw = "".join(ch for ch in text.upper() if ch not in " -").translate(_READS_AS)
    if len(raw) != RANDOM_SYMBOLS + 1 or any(ch not in _VALUE for ch in raw):
        return None
    if _check_symbol(raw[:-1]) != raw[-1]:
        return None
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))
