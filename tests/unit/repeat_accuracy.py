"""Accuracy of repeat detection (repeats.py) on the labelled pairs of tests/data/repeats.jsonl.

Each line holds two texts (title + content) of one petitioner and whether they are the same matter. A pair is
predicted "same" when similarity(fingerprint(a), fingerprint(b)) >= threshold. False positives (a different
matter taken as a repeat, so it is not routed) cost more than false negatives (a repeat routed twice).

    uv run --frozen python -m tests.unit.repeat_accuracy
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from xinfang_intake.repeats import fingerprint, similarity
from xinfang_intake.settings import IntakeSettings

DATA = Path(__file__).resolve().parents[1] / "data" / "repeats.jsonl"
CONFIGURED = float(IntakeSettings.model_fields["repeat_similarity"].default)
SWEEP = [round(0.20 + i / 100, 2) for i in range(71)]  # 0.20 .. 0.90


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
def scored() -> tuple[tuple[float, bool, dict[str, Any]], ...]:
    """(similarity, same, row) for every labelled pair."""
    out = []
    for row in labelled():
        a = fingerprint(row["a"]["title"], row["a"]["content"])
        b = fingerprint(row["b"]["title"], row["b"]["content"])
        out.append((similarity(a, b), bool(row["same"]), row))
    return tuple(out)


def _is_english(row: dict[str, Any]) -> bool:
    text = row["a"]["title"] + row["a"]["content"] + row["b"]["title"] + row["b"]["content"]
    return sum(ch.isascii() for ch in text) > 0.8 * len(text)


def evaluate(threshold: float = CONFIGURED, *, english: bool | None = None) -> dict[str, Any]:
    """Confusion counts and rates at `threshold` (optionally only on English or only on non-English pairs)."""
    rows = [s for s in scored() if english is None or _is_english(s[2]) == english]
    tp = fp = tn = fn = 0
    false_positives: list[str] = []
    false_negatives: list[str] = []
    for sim, same, row in rows:
        predicted = sim >= threshold
        if predicted and same:
            tp += 1
        elif predicted:
            fp += 1
            false_positives.append(f"line {row['line']} ({sim:.3f}): {row['note']}")
        elif same:
            fn += 1
            false_negatives.append(f"line {row['line']} ({sim:.3f}): {row['note']}")
        else:
            tn += 1
    positives, negatives = tp + fn, tn + fp
    return {
        "pairs": len(rows),
        "same": positives,
        "different": negatives,
        "threshold": threshold,
        "false_positives": fp,
        "false_negatives": fn,
        "false_positive_rate": fp / negatives if negatives else 0.0,
        "false_negative_rate": fn / positives if positives else 0.0,
        "accuracy": (tp + tn) / len(rows) if rows else 0.0,
        "false_positive_pairs": false_positives,
        "false_negative_pairs": false_negatives,
    }


def best_threshold() -> dict[str, Any]:
    """The swept threshold with the best accuracy; ties go to the lower false-positive rate, then to the higher
    threshold (false positives cost more), with the range of thresholds that tie under `plateau`."""
    results = [evaluate(t) for t in SWEEP]
    key = lambda r: (r["accuracy"], -r["false_positive_rate"])  # noqa: E731
    best = max(results, key=lambda r: (*key(r), r["threshold"]))
    tied = [r["threshold"] for r in results if key(r) == key(best)]
    return {**best, "plateau": (min(tied), max(tied))}


def _line(r: dict[str, Any]) -> str:
    return (
        f"threshold {r['threshold']:.2f}: pairs {r['pairs']} ({r['same']} same, {r['different']} different), "
        f"false-positive rate {r['false_positive_rate']:.3f} ({r['false_positives']}), "
        f"false-negative rate {r['false_negative_rate']:.3f} ({r['false_negatives']}), accuracy {r['accuracy']:.3f}"
    )


def main() -> None:
    configured = evaluate(CONFIGURED)
    print(f"labelled pairs: {DATA}")
    print(f"pairs: {configured['pairs']} ({configured['same']} same, {configured['different']} different)")
    print(f"threshold (IntakeSettings.repeat_similarity): {CONFIGURED:.2f}")
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
    best = best_threshold()
    low, high = best["plateau"]
    print(f"best threshold in 0.20..0.90: {_line(best)} (the same from {low:.2f} to {high:.2f})")


if __name__ == "__main__":
    main()
