"""Category inference for matters submitted without one: a keyword lexicon per category
(data/category-lexicon.toml) over the title and content, Chinese segmented with jieba.

The score of a category is the sum of the weights of its terms found (1, or 0.5 for the `weak` ones that
also occur in other kinds of matters); a title term counts double. Confidence is the
winner's share of all scores; below `min_confidence`, or with too little evidence, the matter is filed as
`other` and flagged for a person to categorise. `python -m tests.unit.category_accuracy` reports accuracy on
tests/data/categories.jsonl.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path

import jieba

from xinfang_shared.contracts.reference import Category

DEFAULT_LEXICON = Path(__file__).with_name("data") / "category-lexicon.toml"

jieba.setLogLevel(logging.WARNING)


@dataclass(frozen=True)
class Inference:
    category: Category
    confidence: float
    needs_review: bool  # flagged for a person: the lexicon could not tell


class CategoryInference:
    def __init__(self, lexicon: Path = DEFAULT_LEXICON, *, min_confidence: float = 0.5, min_score: float = 1.0):
        raw = tomllib.loads(lexicon.read_text(encoding="utf-8"))
        self.terms: dict[str, list[tuple[Category, float]]] = {}
        self._tokenizer = jieba.Tokenizer()
        for code, entry in raw.items():
            category = Category(code)
            for weight, key in ((1.0, "zh"), (1.0, "en"), (0.5, "weak")):
                for term in entry.get(key, []):
                    self.terms.setdefault(term.lower(), []).append((category, weight))
                    if not term.isascii():
                        self._tokenizer.add_word(term, freq=2_000_000)
        self.min_confidence = min_confidence
        self.min_score = min_score

    def tokens(self, text: str) -> set[str]:
        """Words of the text; search mode also yields the words inside compounds (拖欠工资 → 拖欠, 工资)."""
        return {t for t in self._tokenizer.cut_for_search(text.lower()) if t.strip()}

    def infer(self, title: str, content: str) -> Inference:
        scores: dict[Category, float] = {}
        for place, text in ((2.0, title), (1.0, content)):
            for token in self.tokens(text):
                for category, weight in self.terms.get(token, ()):
                    scores[category] = scores.get(category, 0.0) + place * weight
        total = sum(scores.values())
        if not total:
            return Inference(Category.OTHER, 0.0, True)
        (best, score), *rest = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
        confidence = score / total
        if rest and rest[0][1] == score:  # a tie: the lexicon cannot tell
            return Inference(Category.OTHER, confidence, True)
        if confidence < self.min_confidence or score < self.min_score:
            return Inference(Category.OTHER, confidence, True)
        return Inference(best, round(confidence, 3), False)
