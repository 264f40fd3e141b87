"""postag.py: jieba.posseg's HMM decoded by numpy gives exactly what jieba's own Viterbi gives, so the tagger's
(word, tag) pairs, and the terms of a matter, are jieba.posseg's, on thousands of varied texts."""

from __future__ import annotations

import random
import tomllib
from collections.abc import Iterator
from typing import Any
from unittest import mock

import jieba.posseg
import pytest
from jieba.posseg import char_state_tab_P, emit_P, start_P, trans_P
from jieba.posseg.viterbi import viterbi as jieba_viterbi

from tests import factories
from tests.unit.category_accuracy import HOLDOUT, labelled
from xinfang_stats.postag import POSTokenizer, Viterbi
from xinfang_stats.terms import DEFAULT_DATA, TermExtractor, default_extractor

DATA = tomllib.loads(DEFAULT_DATA.read_text(encoding="utf-8"))
MODEL = (char_state_tab_P, start_P, trans_P, emit_P)


@pytest.fixture(scope="module")
def decoder() -> Viterbi:
    return Viterbi()


@pytest.fixture(scope="module")
def with_jieba() -> TermExtractor:
    """An extractor built exactly as the service's, with jieba.posseg's own tagger (and so its Viterbi)."""
    with mock.patch("xinfang_stats.terms.POSTokenizer", jieba.posseg.POSTokenizer):
        extractor = TermExtractor()
    assert type(extractor._pos) is jieba.posseg.POSTokenizer
    return extractor


def _runs(rng: random.Random, n: int) -> list[str]:
    """Runs of Chinese characters as jieba's HMM gets them, and worse: common characters of the matters, any
    character of the model, and now and then one the model has no states for (every state, then the fallbacks
    of jieba's step; jieba takes 7 ms for each such character, so they are rare here), emitted or never seen."""
    common = sorted({ch for row in labelled() for ch in row["content"] if "\u4e00" <= ch <= "\u9fd5"})
    modelled = sorted(char_state_tab_P)
    emitted = {c for row in emit_P.values() for c in row}
    stateless = sorted(emitted - set(char_state_tab_P))
    unseen = [chr(c) for c in range(0x4E00, 0x9FD6) if chr(c) not in char_state_tab_P and chr(c) not in emitted]
    assert stateless and unseen

    def char() -> str:
        r = rng.random()
        return rng.choice(stateless if r < 0.01 else unseen if r < 0.02 else modelled if r < 0.3 else common)

    return ["".join(char() for _ in range(rng.choice([1, 2, 2, 2, 3, 3, 4, 5, 6, 8, 12]))) for _ in range(n)]


def test_decode_is_jiebas_viterbi_on_random_runs(decoder: Viterbi) -> None:
    runs = _runs(random.Random(20240617), 3000)
    mismatched = [r for r in runs if decoder.decode(r) != tuple(jieba_viterbi(r, *MODEL))]
    assert not mismatched, mismatched[:5]


@pytest.mark.parametrize(
    "run",
    [
        "\u9fd0\u9fd1\u9fd2",  # no states, no emissions: every state, and scores that tie
        "工\u9fd0\u9fd1",
        "\u9fd0的\u9fd1了",
        "的的的的的的的",
        # runs where a character has none of the states the previous step can go to: jieba's step then takes
        # every state it can go to (found by taking every state instead, which decodes these differently)
        "琵渤未娓曷",
        "僖妊岬垃碥肚",
        "破污郫裂咨搐",
    ],
)
def test_decode_agrees_where_jiebas_step_falls_back_or_scores_tie(decoder: Viterbi, run: str) -> None:
    """A character the model never emitted from a state scores −3.14e100 there, which absorbs whatever else is
    added: many states tie, and jieba keeps the greatest (score, state); so must `decode`."""
    assert decoder.decode(run) == tuple(jieba_viterbi(run, *MODEL))


def _texts(rng: random.Random) -> list[tuple[str, str]]:
    """Titles and contents: the labelled matters (and the holdout), the e2e bench's submissions, and sentences
    made of the data file's phrases, places, surnames with a given name the dictionary does not know, cues and
    titles, around characters of the matters."""
    rows = [*labelled(), *labelled(HOLDOUT)]
    texts = [(r["title"], r["content"]) for r in rows]
    texts += [(s["title"], s["content"]) for s in (factories.submission(rng) for _ in range(1000))]
    common = sorted({ch for r in rows for ch in r["content"] if "\u4e00" <= ch <= "\u9fd5"})
    phrases, places = DATA["phrases"]["zh"], DATA["places"]["zh"]
    names = DATA["names"]
    clauses = [c for r in rows for c in r["content"].replace("！", "。").replace("？", "。").split("。") if c]

    def name() -> str:
        return rng.choice(names["surnames"]) + "".join(rng.choice(common) for _ in range(rng.randint(1, 2)))

    def junk() -> str:
        return "".join(rng.choice(common) for _ in range(rng.randint(1, 6)))

    parts = [
        lambda: rng.choice(phrases),
        lambda: rng.choice(places),
        lambda: name(),
        lambda: rng.choice(names["cues_before"]) + rng.choice(["", "：", " "]) + name(),
        lambda: name() + rng.choice(names["titles_after"]),
        junk,
        lambda: rng.choice(clauses),
        lambda: rng.choice(["，", "、", "。", "：", " ", "\n", ""]),
    ]
    for _ in range(1200):
        title = rng.choice(phrases) + junk()
        content = "".join(rng.choice(parts)() for _ in range(rng.randint(3, 12)))
        texts.append((title, content))
    return texts


def _terms_and_tags(extractor: TermExtractor, title: str, content: str) -> tuple[set[str], list[tuple[str, str]]]:
    """terms_of, and the (word, tag) pairs its tagger gave it (of the text after the masks)."""
    tags: list[tuple[str, str]] = []
    cut = extractor._pos.cut

    def recording(text: str, HMM: bool = True) -> Iterator[Any]:
        pairs = list(cut(text, HMM))
        tags.extend((p.word, p.flag) for p in pairs)
        return iter(pairs)

    with mock.patch.object(extractor._pos, "cut", recording):
        terms = extractor.terms_of(title, content)
    return terms, tags


def test_the_tagger_and_the_terms_are_jiebas(with_jieba: TermExtractor) -> None:
    ours = default_extractor()
    assert isinstance(ours._pos, POSTokenizer)
    assert not isinstance(with_jieba._pos, POSTokenizer)
    texts = _texts(random.Random(7))
    assert len(texts) > 2500
    differ = [
        (title, content)
        for title, content in texts
        if _terms_and_tags(ours, title, content) != _terms_and_tags(with_jieba, title, content)
    ]
    assert not differ, differ[:3]
    terms, tags = _terms_and_tags(ours, *texts[0])
    assert terms and len(tags) > 20  # the recording saw the tagger's pairs
