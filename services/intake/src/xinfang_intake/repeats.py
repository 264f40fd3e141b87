"""Deciding that a submission is "the same matter" as an earlier one of the same petitioner.

Same petitioner: decided by the caller (registration.py). Same matter: the texts (title + content) are
near-duplicates. A text becomes a fingerprint, a set of hashed tokens of its normalised form (NFKC, case
folded):
  - Chinese: character bigrams of each run of CJK characters (Chinese has no spaces; bigrams are what
    Chinese near-duplicate detection commonly uses);
  - other scripts: the words of three or more letters that are not English stop words (letter bigrams,
    tried first, made any two English letters look alike: English has few distinct letter pairs).
Digits and punctuation are dropped, so dates and amounts re-typed do not matter.

`RepeatRule` decides: two texts are the same matter when each has at least `min_tokens` tokens
(settings.repeat_min_tokens, 12) and their Jaccard similarity |A∩B| / |A∪B| is at least `threshold`
(settings.repeat_similarity, 0.18). Jaccard is symmetric: a short text cannot match a long one by being
"contained" in it, as it could under the containment |A∩B| / min(|A|,|B|) used before, which let a two-
character text such as 问题 match almost any earlier letter. A text with fewer than `min_tokens` tokens (问题,
投诉, help, 请领导帮忙解决问题: no matter named) is never a repeat, even of itself. The price: a one-line
follow-up of a long letter is not recognised (it is registered and routed again, the cheaper error).

The threshold and min tokens were chosen on the labelled pairs of tests/data/repeats.jsonl (146 pairs written
before the method was tuned, then 14 abuse and short-text pairs). At 0.18 and 12 tokens: false-repeat rate
3/92 (0.033: three template-like letters about another place or crew), missed-repeat rate 1/68 (0.015: the
one-line follow-up); containment at 0.35 had 8/92 and 1/68. 0.18 is the only threshold with the fewest errors
there: it lies between the most similar different matter long enough to compare (0.172, another short matter
at the same compound) and the least similar repeat recognised (0.188, a shortened copy). `uv run --frozen python -m
tests.unit.repeat_accuracy` prints them, and tests/unit/test_repeats.py holds them.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

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
    """Jaccard similarity of two fingerprints; 0 when either text has nothing to compare (no letters at all)."""
    return _jaccard(set(a), set(b))


def _jaccard(a: set[int], b: set[int]) -> float:
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


@dataclass(frozen=True, slots=True)
class RepeatRule:
    """When two fingerprints (`fingerprint(title, content)`) are the same matter; see the module docstring."""

    threshold: float
    min_tokens: int

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], not {self.threshold}")
        if self.min_tokens < 1:
            raise ValueError(f"min_tokens must be at least 1, not {self.min_tokens}")

    def same(self, a: list[int], b: list[int]) -> bool:
        sa, sb = set(a), set(b)
        if len(sa) < self.min_tokens or len(sb) < self.min_tokens:
            return False
        return _jaccard(sa, sb) >= self.threshold
