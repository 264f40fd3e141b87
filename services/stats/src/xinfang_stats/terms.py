"""Hot terms: the words and phrases of titles and contents that are far more frequent in a window than in
the background (DOMAIN.md, "Analysis the bureau owes"). Pure: no I/O beyond loading its data files
(data/hot-terms.toml here, and jieba's and stopwordsiso's packaged dictionaries; jieba keeps a cache of its
dictionary in the temporary directory). `TermExtractor` is built once, on first use (about 3 s).

Terms of a matter, `terms_of(title, content)`: Chinese is segmented with part-of-speech tagging
(jieba.posseg; its HMM decoded by numpy, postag.py: jieba's output, a quarter of the cost per matter) and only
nouns and noun-like words are kept (tags n, vn, nz, nt, and the domain phrases of data/hot-terms.toml, added to
the dictionary so that each stays one term: 农民工工资, not 农民工 + 工资).
Never a term: place names (tag ns, and Sichuan's divisions from the data file, with or without their suffix,
and an unknown word ending in 省/市/区/县/镇/乡/村/...), person names (tags nr*, an unknown word that starts
with a common surname or stands right before a title such as 书记, the word right after a cue such as 我叫),
numbers and time words, single characters, stop words (stopwordsiso 'zh' and the domain list). Before
segmentation the text is NFKC-normalised and rid of e-mail addresses, web addresses, account handles and of
every run of letters and digits that holds a digit (ID numbers, phones, plates, dates), so personal data
never comes out as a term. English, taken only from a matter mostly written in Latin letters: lower-cased
words of 3+ letters minus the English stop list; a word written capitalised counts only if the matter also
has it in lower case (names of people and places are capitalised: "Zhang", "Chengdu"; title-cased titles
are covered by their content).

Counting once per petitioner, without knowing who they are (the stats service stores no personal data, not
even hashed ID numbers): `count_terms` takes matters as `(terms, duplicate_of is None)`. A repeat of a matter
(intake marks it `duplicate_of` an open matter of the same petitioner) is not counted at all, and each
counted matter counts each of its terms once (its terms are a set, however often a word occurs in it). A
petitioner who re-sends the same matter therefore adds nothing, and one who writes a word ten times counts
as one. What this cannot merge: one person filing distinct matters (not repeats) counts once per matter.

Ranking, `hot_terms(window, window_matters, background, background_matters)`: the counts are numbers of
matters with the term; lift = (share of window matters with the term) / (share of background matters with
it), the background share smoothed by Laplace's rule, (b + 1) / (B + 2), so a term the background never saw
has a finite lift and an empty background ranks by count. Terms in fewer than `min_count` window matters are
noise and left out; ties of lift are broken by count, then by the term (deterministic). The service uses
windows of 24 h and 7 days against the previous 28 days, per category and per city: the caller chooses
which matters go into which counter.
"""

from __future__ import annotations

import logging
import re
import tomllib
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import jieba
import stopwordsiso

from .postag import POSTokenizer

DEFAULT_DATA = Path(__file__).with_name("data") / "hot-terms.toml"

jieba.setLogLevel(logging.WARNING)

NOUN_TAGS = frozenset({"n", "vn", "nz", "nt"})
DOMAIN_TAG = "nz"  # the tag the domain phrases get in the dictionary
PLACE_TAG = "ns"
# An unknown word (not in the dictionary: made up by jieba's HMM) with one of these endings is a place.
PLACE_SUFFIXES = ("省", "市", "区", "县", "州", "镇", "乡", "村", "组", "屯", "街道", "社区", "路", "街", "巷")
CHINESE_NUMERALS = frozenset("零〇一二三四五六七八九十百千万亿两几半")
# An unknown word that starts or ends with one of these is a fragment of a phrase, not a word (问镇, 局说, 证是).
FRAGMENT_FIRST = frozenset(CHINESE_NUMERALS | set("问被把给让在从向对和跟与能条将"))
FRAGMENT_LAST = frozenset("是说上下里查治管带了着过的得")

# What goes before segmentation (after NFKC, so full-width forms are plain ASCII by then).
# Both tried only where a run of their characters begins, and that run taken whole: tried at every position, a
# long run without an @ (or a digit) cost the square of its length, seconds for one 20,000-character content.
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]++@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_HANDLE = re.compile(
    r"(?:微信号?|QQ号?|账号|帐号|用户名|邮箱|电子邮件|e-?mail|wechat|weixin|skype|telegram|whatsapp|username)"
    r"(?:\s*(?:id|number|no\.?|account|name))?\s*(?:is|是|为|:|：)?\s*[A-Za-z0-9_.\-@]+",
    re.IGNORECASE,
)
_WITH_DIGIT = re.compile(r"(?<![A-Za-z0-9_\-])(?=[A-Za-z0-9_\-]*[0-9])[A-Za-z0-9_\-]++")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
_HAN = re.compile(r"[\u3400-\u9fff]")
_SKIPPED = frozenset(" \t\r\n:：,，、")  # between a cue and the name after it


@dataclass(frozen=True)
class HotTerm:
    term: str
    count: int  # window matters with the term
    lift: float  # window share / smoothed background share


@dataclass(frozen=True)
class _Lexicon:
    phrases: frozenset[str]
    stop_zh: frozenset[str]
    stop_en: frozenset[str]
    places: frozenset[str]
    surnames: tuple[str, ...]
    cues_before: frozenset[str]
    titles_after: frozenset[str]


class TermExtractor:
    """The segmenter with the domain dictionary; build once (loading the dictionary takes about a second)."""

    def __init__(self, data: Path = DEFAULT_DATA) -> None:
        raw: dict[str, Any] = tomllib.loads(data.read_text(encoding="utf-8"))
        names = raw.get("names", {})
        self.lexicon = _Lexicon(
            phrases=frozenset(raw["phrases"]["zh"]),
            stop_zh=frozenset(raw["stop"]["zh"]) | frozenset(stopwordsiso.stopwords("zh")),
            stop_en=frozenset(w.lower() for w in raw["stop"]["en"]),
            places=frozenset(raw["places"]["zh"]),
            surnames=tuple(sorted(names.get("surnames", []), key=len, reverse=True)),
            cues_before=frozenset(names.get("cues_before", [])),
            titles_after=frozenset(names.get("titles_after", [])),
        )
        self._tokenizer = jieba.Tokenizer()
        self._tokenizer.initialize()
        additions: list[tuple[str, str | None]] = [(w, PLACE_TAG) for w in sorted(self.lexicon.places)]
        additions += [(w, DOMAIN_TAG) for w in sorted(self.lexicon.phrases)]
        additions += [(w, None) for w in sorted(self.lexicon.cues_before)]  # kept whole: 我叫 is one token
        for word, tag in additions:
            freq = max(self._tokenizer.FREQ.get(word) or 0, self._tokenizer.suggest_freq(word))
            self._tokenizer.add_word(word, freq=freq, tag=tag)
        self._pos = POSTokenizer(self._tokenizer)  # jieba.posseg's, its HMM decoded by numpy (postag.py)
        list(self._pos.cut("初始化"))  # merges the added tags into the tagger once, here, not in a request

    def _known_word(self, word: str) -> bool:
        """In the dictionary; jieba's HMM makes up the other words of its output (names, places, slang)."""
        return bool(self._tokenizer.FREQ.get(word))

    def terms_of(self, title: str, content: str) -> set[str]:
        text = _scrub(unicodedata.normalize("NFKC", f"{title}\n{content}"))
        terms = set(self._chinese(text))
        if _mostly_latin(text):
            terms |= self._english(text)
        return terms

    def _chinese(self, text: str) -> Iterator[str]:
        lex = self.lexicon
        tokens = [(p.word, p.flag) for p in self._pos.cut(text)]
        after_cue = False
        for i, (word, flag) in enumerate(tokens):
            if word in _SKIPPED or not word.strip():
                continue
            cued, after_cue = after_cue, word in lex.cues_before
            if word in lex.phrases:
                if not cued:
                    yield word
                continue
            if cued or flag not in NOUN_TAGS or len(word) < 2 or not _HAN.search(word):
                continue
            if word in lex.stop_zh or word in lex.places or all(ch in CHINESE_NUMERALS for ch in word):
                continue
            if not self._known_word(word) and self._unknown_is_no_term(word, tokens, i):
                continue
            yield word

    def _unknown_is_no_term(self, word: str, tokens: list[tuple[str, str]], i: int) -> bool:
        """Whether an unknown word is not a term: a place, a name, or a fragment jieba's HMM made up."""
        lex = self.lexicon
        if word.endswith(PLACE_SUFFIXES) or word[0] in FRAGMENT_FIRST or word[-1] in FRAGMENT_LAST:
            return True
        if any(word.startswith(s) and len(word) - len(s) <= 2 for s in lex.surnames):
            return True
        following = next((w for w, _ in tokens[i + 1 :] if w not in _SKIPPED), "")
        return following in lex.titles_after

    def _english(self, text: str) -> set[str]:
        words = _LATIN_WORD.findall(text)
        lower = {w for w in words if w.islower()}
        return {
            w.lower()
            for w in words
            if len(w) >= 3 and w.lower() not in self.lexicon.stop_en and (w.islower() or w.lower() in lower)
        }


def _scrub(text: str) -> str:
    for pattern in (_EMAIL, _URL, _HANDLE, _WITH_DIGIT):
        text = pattern.sub(" ", text)
    return text


def _mostly_latin(text: str) -> bool:
    latin = sum(len(w) for w in _LATIN_WORD.findall(text))
    return latin > len(_HAN.findall(text))


@cache
def default_extractor() -> TermExtractor:
    return TermExtractor()


def terms_of(title: str, content: str) -> set[str]:
    """The terms of one matter (a set: a word repeated in it is one term), by the packaged dictionary."""
    return default_extractor().terms_of(title, content)


def count_terms(matters: Iterable[tuple[Iterable[str], bool]]) -> tuple[Counter[str], int]:
    """(terms, duplicate_of is None) per matter → (matters with each term, matters counted). A repeat
    (False) counts for nothing; each other matter counts each of its terms once."""
    counts: Counter[str] = Counter()
    n = 0
    for terms, original in matters:
        if original:
            n += 1
            counts.update(set(terms))
    return counts, n


def hot_terms(
    window: Counter[str],
    window_matters: int,
    background: Counter[str],
    background_matters: int,
    *,
    top: int = 20,
    min_count: int = 3,
) -> list[HotTerm]:
    """The `top` terms of the window by lift over the background (see the module docstring).

    `window` and `background` count matters with the term (`count_terms`), not occurrences: a count above
    its number of matters is an error of the caller and raises ValueError."""
    if window_matters < 0 or background_matters < 0:
        raise ValueError("numbers of matters cannot be negative")
    for name, counter, matters in (("window", window, window_matters), ("background", background, background_matters)):
        if counter and max(counter.values()) > matters:
            raise ValueError(f"a {name} count exceeds its {matters} matters: pass matters with the term")
    if top <= 0 or window_matters == 0:
        return []
    ranked: list[tuple[Fraction, int, str]] = []
    for term, count in window.items():
        if count < max(min_count, 1):
            continue
        # (count / W) / ((b + 1) / (B + 2)), exact, so that equal lifts compare equal
        lift = Fraction(count * (background_matters + 2), window_matters * (background.get(term, 0) + 1))
        ranked.append((lift, count, term))
    ranked.sort(key=lambda r: (-r[0], -r[1], r[2]))
    return [HotTerm(term, count, float(lift)) for lift, count, term in ranked[:top]]
