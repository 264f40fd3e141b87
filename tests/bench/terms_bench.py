"""Hot terms' CPU per matter (`python -m tests.bench.terms_bench`; no cluster, not part of `make bench`):
`TermExtractor.terms_of` with jieba.posseg's own tagger (its pure-Python Viterbi) against the service's
(postag.py, the same HMM decoded by numpy): two extractors built alike, the same texts, in this process; CPU time
(time.process_time) per matter, the best of --rounds. Asserts that both give the same terms for every text,
and the same (word, tag) pairs.

Texts: the e2e bench's submissions (tests/factories.submission, seeded, UUIDs included), the labelled matters
of tests/data (categories, holdout, repeats: 100 to 400 characters), and long ones: 5 to 15 labelled contents
joined (1,000 to 4,000 characters). Neither tagger keeps anything from one text to the next (no cache), so
rounds over the same texts cost what new texts would.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from unittest import mock

import jieba.posseg

from tests import factories
from xinfang_stats.terms import TermExtractor

DATA = Path(__file__).resolve().parents[1] / "data"

Text = tuple[str, str]


def submissions(n: int, seed: int) -> list[Text]:
    rng = random.Random(seed)
    ids = random.Random(seed + 1)
    with mock.patch.object(uuid, "uuid4", lambda: uuid.UUID(int=ids.getrandbits(128), version=4)):
        return [(s["title"], s["content"]) for s in (factories.submission(rng) for _ in range(n))]


def labelled() -> list[Text]:
    out: list[Text] = []
    for name in ("categories.jsonl", "categories-holdout.jsonl", "repeats.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                out += [(m["title"], m["content"]) for m in ([row["a"], row["b"]] if "a" in row else [row])]
    return out


def long_texts(n: int, seed: int) -> list[Text]:
    rng = random.Random(seed)
    rows = labelled()
    out = []
    for _ in range(n):
        picked = rng.sample(rows, rng.randint(5, 15))
        out.append((picked[0][0], "\n".join(c for _, c in picked)))
    return out


def per_matter_ms(fn: Callable[[str, str], object], texts: Sequence[Text], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for title, content in texts:
            fn(title, content)
        best = min(best, time.process_time() - start)
    return best / len(texts) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=2000)
    parser.add_argument("--long", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20240501)
    args = parser.parse_args()

    ours = TermExtractor()
    with mock.patch("xinfang_stats.terms.POSTokenizer", jieba.posseg.POSTokenizer):
        theirs = TermExtractor()  # built alike (a tagger takes the dictionary's added tags from its tokenizer once)
    assert type(theirs._pos) is jieba.posseg.POSTokenizer

    sets = {
        "submissions": submissions(args.submissions, args.seed),
        "labelled": labelled(),
        "long": long_texts(args.long, args.seed),
    }
    print(f"{'texts':<12} {'n':>5} {'chars':>6} {'jieba ms':>9} {'ours ms':>8} {'ratio':>6}  same terms, same tags")
    for name, texts in sets.items():
        same_terms = sum(theirs.terms_of(t, c) == ours.terms_of(t, c) for t, c in texts)
        same_tags = sum(tags(theirs, t, c) == tags(ours, t, c) for t, c in texts)
        before = per_matter_ms(theirs.terms_of, texts, args.rounds)
        after = per_matter_ms(ours.terms_of, texts, args.rounds)
        chars = sum(len(t) + len(c) for t, c in texts) // len(texts)
        print(
            f"{name:<12} {len(texts):>5} {chars:>6} {before:>9.3f} {after:>8.3f} {before / after:>5.1f}x"
            f"  {same_terms}/{len(texts)}, {same_tags}/{len(texts)}"
        )
        assert same_terms == same_tags == len(texts)


def tags(extractor: TermExtractor, title: str, content: str) -> list[tuple[str, str]]:
    """The tagger's (word, tag) pairs of the text terms_of segments (before its masks: more for the HMM)."""
    return [(p.word, p.flag) for p in extractor._pos.cut(f"{title}\n{content}")]


if __name__ == "__main__":
    main()
