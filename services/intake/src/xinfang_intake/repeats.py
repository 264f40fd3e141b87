"""Deciding that a submission is "the same matter" as an earlier one of the same petitioner.

Same petitioner: the same resident ID number (compared through its keyed hash). Same matter: the texts
(title + content) are near-duplicates. A text is reduced to a fingerprint: the set of hashed character
bigrams of its normalised form (case folded; spaces, punctuation and digits dropped, so dates and amounts
re-typed do not matter; full-width forms folded to ASCII). Chinese has no spaces, and bigrams of characters
are what Chinese near-duplicate detection commonly uses; for English the bigrams of letters work as well
on rewrites of the same complaint. Similarity is the containment of the smaller fingerprint in the larger
(|A∩B| / min(|A|,|B|)), which stays high when one copy adds a greeting or a line to the other.

On the labelled pairs in tests/data/repeats.jsonl the threshold of settings.repeat_similarity (0.45) gives
the error rates reported by `python -m tests.unit.repeat_accuracy` (and asserted in tests/unit).
"""

from __future__ import annotations

import unicodedata
import zlib
from collections.abc import Iterable

# Fingerprints cover the first characters only: enough to tell matters apart, cheap to compare.
MAX_CHARS = 2_000


def normalise(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if ch.isalpha())


def fingerprint(title: str, content: str) -> list[int]:
    text = normalise(title + content)[:MAX_CHARS]
    grams = {text[i : i + 2] for i in range(len(text) - 1)} or {text}
    # crc32 fits a PostgreSQL int4 once shifted into the signed range.
    return sorted({zlib.crc32(g.encode()) - 2**31 for g in grams})


def similarity(a: Iterable[int], b: Iterable[int]) -> float:
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / min(len(sa), len(sb))
