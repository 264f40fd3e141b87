"""Accuracy of category inference (routing's categories.py) on tests/data/categories.jsonl.

    uv run --frozen python -m tests.unit.category_accuracy

A matter the lexicon cannot tell is filed as `other` and flagged for a person: it counts as "flagged",
not as wrong, unless its true category is something the lexicon should have found.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

from xinfang_routing.categories import CategoryInference

DATA = Path(__file__).resolve().parents[1] / "data" / "categories.jsonl"
# Written separately and never used to tune the lexicon: the honest figure.
HOLDOUT = DATA.with_name("categories-holdout.jsonl")


@cache
def labelled(path: Path = DATA) -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


@cache
def _default() -> CategoryInference:
    return CategoryInference()


def evaluate(inference: CategoryInference | None = None, *, path: Path = DATA) -> dict[str, Any]:
    inference = inference or _default()
    rows = labelled(path)
    correct = flagged = wrong = 0
    confusions: Counter[tuple[str, str]] = Counter()
    by_lang: dict[str, list[int]] = {}
    for row in rows:
        guess = inference.infer(row["title"], row["content"])
        ok = guess.category.value == row["category"]
        by_lang.setdefault(row["lang"], [0, 0])[0] += ok
        by_lang[row["lang"]][1] += 1
        if ok:
            correct += 1
        elif guess.needs_review:
            flagged += 1
        else:
            wrong += 1
            confusions[(row["category"], guess.category.value)] += 1
    return {
        "matters": len(rows),
        "accuracy": correct / len(rows),
        "flagged_for_a_person": flagged / len(rows),
        "wrong_and_confident": wrong / len(rows),
        "accuracy_by_language": {lang: c / n for lang, (c, n) in by_lang.items()},
        "top_confusions": confusions.most_common(8),
    }


def main() -> None:
    for name, path in (("tuning set", DATA), ("held-out set", HOLDOUT)):
        if path.exists():
            _report(name, evaluate(path=path))


def _report(name: str, result: dict[str, Any]) -> None:
    print(f"{name}: {result['matters']} labelled matters")
    print(f"  accuracy {result['accuracy']:.3f}")
    print(f"  flagged for a person (filed as other) {result['flagged_for_a_person']:.3f}")
    print(f"  wrong with confidence {result['wrong_and_confident']:.3f}")
    print(f"  by language { ({k: round(v, 3) for k, v in result['accuracy_by_language'].items()}) }")
    print(f"  top confusions (true → guessed) {result['top_confusions']}")


if __name__ == "__main__":
    main()
