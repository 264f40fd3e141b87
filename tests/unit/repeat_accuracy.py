"""Accuracy of repeat detection (repeats.py) on the labelled pairs of tests/data/repeats.jsonl.

Each line holds two texts (title + content) of one petitioner and whether they are the same matter. A pair is
predicted "same" when RepeatRule(threshold, min_tokens).same(fingerprint(a), fingerprint(b)). False positives
(a different matter taken as a repeat, so it is not routed, and its sender told of the earlier matter) cost
more than false negatives (a repeat routed twice).

    uv run --frozen python -m tests.unit.repeat_accuracy
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from xinfang_intake.repeats import RepeatRule, fingerprint, similarity
from xinfang_intake.settings import IntakeSettings

DATA = Path(__file__).resolve().parents[1] / "data" / "repeats.jsonl"
CONFIGURED = float(IntakeSettings.model_fields["repeat_similarity"].default)
CONFIGURED_MIN_TOKENS = int(IntakeSettings.model_fields["repeat_min_tokens"].default)
RULE = RepeatRule(threshold=CONFIGURED, min_tokens=CONFIGURED_MIN_TOKENS)
SWEEP = [round(0.05 + i / 100, 2) for i in range(86)]  # 0.05 .. 0.90
MIN_TOKENS_SWEEP = [1, 5, 10, 12, 15, 20, 30]


@cache
def labelled() -> tuple[dict[str, Any], ...]:
    rows = []
    for number, line in enumerate(DATA.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            row["line"] = number
            rows.append(row)
    return tuple(rows)


@cache
def scored() -> tuple[tuple[list[int], list[int], bool, dict[str, Any]], ...]:
    """(fingerprint a, fingerprint b, same, row) for every labelled pair."""
    out = []
    for row in labelled():
        a = fingerprint(row["a"]["title"], row["a"]["content"])
        b = fingerprint(row["b"]["title"], row["b"]["content"])
        out.append((a, b, bool(row["same"]), row))
    return tuple(out)


def _is_english(row: dict[str, Any]) -> bool:
    text = row["a"]["title"] + row["a"]["content"] + row["b"]["title"] + row["b"]["content"]
    return sum(ch.isascii() for ch in text) > 0.8 * len(text)


def evaluate(
    threshold: float = CONFIGURED, *, min_tokens: int = CONFIGURED_MIN_TOKENS, english: bool | None = None
) -> dict[str, Any]:
    """Confusion counts and rates of RepeatRule(threshold, min_tokens) (optionally only on English or only on
    non-English pairs)."""
    rule = RepeatRule(threshold=threshold, min_tokens=min_tokens)
    rows = [s for s in scored() if english is None or _is_english(s[3]) == english]
    tp = fp = tn = fn = 0
    false_positives: list[str] = []
    false_negatives: list[str] = []
    for a, b, same, row in rows:
        predicted = rule.same(a, b)
        described = f"line {row['line']} ({similarity(a, b):.3f}, {min(len(a), len(b))} tokens): {row['note']}"
        if predicted and same:
            tp += 1
        elif predicted:
            fp += 1
            false_positives.append(described)
        elif same:
            fn += 1
            false_negatives.append(described)
        else:
            tn += 1
    positives, negatives = tp + fn, tn + fp
    return {
        "pairs": len(rows),
        "same": positives,
        "different": negatives,
        "threshold": threshold,
        "min_tokens": min_tokens,
        "false_positives": fp,
        "false_negatives": fn,
        "false_positive_rate": fp / negatives if negatives else 0.0,
        "false_negative_rate": fn / positives if positives else 0.0,
        "accuracy": (tp + tn) / len(rows) if rows else 0.0,
        "false_positive_pairs": false_positives,
        "false_negative_pairs": false_negatives,
    }


def best_threshold() -> dict[str, Any]:
    """The swept threshold (at the configured min tokens) with the best accuracy; ties go to the lower
    false-positive rate, then to the higher threshold (false positives cost more), with the range of thresholds
    that tie under `plateau`."""
    results = [evaluate(t) for t in SWEEP]
    key = lambda r: (r["accuracy"], -r["false_positive_rate"])  # noqa: E731
    best = max(results, key=lambda r: (*key(r), r["threshold"]))
    tied = [r["threshold"] for r in results if key(r) == key(best)]
    return {**best, "plateau": (min(tied), max(tied))}


def _line(r: dict[str, Any]) -> str:
    return (
        f"threshold {r['threshold']:.2f}, min tokens {r['min_tokens']}: "
        f"pairs {r['pairs']} ({r['same']} same, {r['different']} different), "
        f"false-positive rate {r['false_positive_rate']:.3f} ({r['false_positives']}), "
        f"false-negative rate {r['false_negative_rate']:.3f} ({r['false_negatives']}), accuracy {r['accuracy']:.3f}"
    )


def main() -> None:
    configured = evaluate(CONFIGURED)
    print(f"labelled pairs: {DATA}")
    print(f"pairs: {configured['pairs']} ({configured['same']} same, {configured['different']} different)")
    print(f"threshold (IntakeSettings.repeat_similarity, Jaccard): {CONFIGURED:.2f}")
    print(f"min tokens (IntakeSettings.repeat_min_tokens): {CONFIGURED_MIN_TOKENS}")
    print(f"false-positive rate: {configured['false_positive_rate']:.3f} ({configured['false_positives']})")
    print(f"false-negative rate: {configured['false_negative_rate']:.3f} ({configured['false_negatives']})")
    print(f"accuracy: {configured['accuracy']:.3f}")
    for label, english in (("Chinese", False), ("English", True)):
        print(f"  {label} pairs only: {_line(evaluate(CONFIGURED, english=english))}")
    print("false positives (different matters taken as repeats):")
    for item in configured["false_positive_pairs"]:
        print(f"  {item}")
    print("false negatives (repeats not recognised):")
    for item in configured["false_negative_pairs"]:
        print(f"  {item}")
    print("sweep:")
    for t in SWEEP[::5]:
        print(f"  {_line(evaluate(t))}")
    print("min tokens, at the configured threshold:")
    for m in MIN_TOKENS_SWEEP:
        print(f"  {_line(evaluate(CONFIGURED, min_tokens=m))}")
    best = best_threshold()
    low, high = best["plateau"]
    print(f"best threshold in {SWEEP[0]:.2f}..{SWEEP[-1]:.2f}: {_line(best)} (the same from {low:.2f} to {high:.2f})")


if __name__ == "__main__":
    main()
