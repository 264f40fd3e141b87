"""Deciding that a submission is "the same matter" as an earlier one of the same petitioner.

Same petitioner: the same resident ID number (compared through its keyed hash). Same matter: the texts
(title + content) are near-duplicates. A text becomes a fingerprint, a set of hashed tokens of its
normalised form (NFKC, case folded):
  - Chinese: character bigrams of each run of CJK characters (Chinese has no spaces; bigrams are what
    Chinese near-duplicate detection commonly uses);
  - other scripts: the words of three or more letters that are not English stop words (letter bigrams,
    tried first, made any two English letters look alike: English has few distinct letter pairs).
Digits and punctuation are dropped, so dates and amounts re-typed do not matter. Similarity is the
containment of the smaller fingerprint in the larger (|A∩B| / min(|A|,|B|)), which stays high when one copy
adds a greeting or a paragraph to the other.

The threshold (settings.repeat_similarity, 0.35) was chosen on the labelled pairs of tests/data/repeats.jsonl
(146 pairs written before the method was tuned); `python -m tests.unit.repeat_accuracy` prints the error
rates, which tests/unit/test_repeats.py holds.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Iterable

# Fingerprints cover the first characters only: enough to tell matters apart, cheap to compare.
MAX_CHARS = 4_000
_STOP_WORDS = frozenset(
    (
        "the and for from with are was were been has have had not this that these those its our you your she"
        " they them their his her but than then there here which who whom what when where why how all any can"
        " could would should will shall may might must very also about into over after before again please"
    ).split()
)


_CJK_RANGES = "\u3400-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
_CJK = re.compile(f"[{_CJK_RANGES}]")
# Words of other scripts: runs of three or more letters that are not CJK (a CJK character ends a word).
_WORD = re.compile(f"[^\\W\\d_{_CJK_RANGES}]{{3,}}")


def tokens(text: str) -> set[str]:
    normal = text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)
    folded = normal.casefold()[:MAX_CHARS]
    # Chinese: bigrams over the CJK characters alone, so punctuation, digits or spaces between them
    # (or a re-typed date) change nothing.
    cjk = "".join(_CJK.findall(folded))
    found = {cjk[i : i + 2] for i in range(len(cjk) - 1)} if len(cjk) > 1 else {cjk} - {""}
    # Other scripts: words.
    found |= {"w:" + w for w in _WORD.findall(folded) if w not in _STOP_WORDS}
    if not found:  # a very short text: compare its letters whole
        letters = "".join(ch for ch in folded if ch.isalpha())
        if letters:
            found.add("t:" + letters)
    return found


def fingerprint(title: str, content: str) -> list[int]:
    # crc32 fits a PostgreSQL int4 once shifted into the signed range.
    return sorted({zlib.crc32(t.encode()) - 2**31 for t in tokens(title + "\n" + content)})


def similarity(a: Iterable[int], b: Iterable[int]) -> float:
    """0 when either text has nothing to compare (no letters at all)."""
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / min(len(sa), len(sb))
