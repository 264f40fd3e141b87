"""Repeat detection (repeats.py): fingerprint/similarity properties, the rule (short texts, texts "contained" in
longer ones) and accuracy on the labelled pairs."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.unit.repeat_accuracy import CONFIGURED, DATA, RULE, best_threshold, evaluate, labelled, scored
from xinfang_intake.repeats import MAX_CHARS, RepeatRule, fingerprint, similarity

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)

# Chinese texts: separators between characters change nothing. (English is compared by words, so a
# separator inside a word does change it; see the English tests below.)
cjk = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
texts = st.text(alphabet=cjk, min_size=2, max_size=300)
english_words = st.lists(
    st.sampled_from(
        [
            "wages",
            "unpaid",
            "restaurant",
            "owner",
            "district",
            "repair",
            "lights",
            "elderly",
            "school",
            "teacher",
            "salary",
            "factory",
            "smoke",
            "river",
        ]
    ),
    min_size=2,
    max_size=40,
)
separators = st.text(
    alphabet=" \t\n\u3000,.;:!?，。；：！？、“”‘’（）《》—…-0123456789０１２３４５６７８９", max_size=3
)

WAGES = (
    "关于拖欠工资的反映",
    "我们在某工地干了八个月木工活，公司一共欠我们工资三十八万元，包工头和开发商互相推诿，请求帮助追讨。",
)
POLLUTION = (
    "化工厂夜间排放废气",
    "小区旁边的化工厂经常在晚上十点以后排放刺鼻的废气，老人小孩咳嗽头晕，请求环保部门夜间突击检查。",
)


def _full_width(text: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ("\u3000" if ch == " " else ch) for ch in text)


def _sim(a: tuple[str, str], b: tuple[str, str]) -> float:
    return similarity(fingerprint(*a), fingerprint(*b))


def _same(a: tuple[str, str], b: tuple[str, str]) -> bool:
    return RULE.same(fingerprint(*a), fingerprint(*b))


def _assert_diluted(text: list[int], longer: list[int]) -> None:
    """`longer` keeps every token of `text`: the similarity is the share of `longer` that `text` is."""
    assert set(text) <= set(longer)
    assert similarity(text, longer) == pytest.approx(len(text) / len(longer))


# --- fingerprint and similarity ---------------------------------------------------------------------


@PROPERTY
@given(texts, texts)
def test_identical_texts_are_fully_similar(title: str, content: str) -> None:
    expected = 1.0 if any(ch.isalpha() for ch in title + content) else 0.0  # nothing to compare: never "same"
    assert similarity(fingerprint(title, content), fingerprint(title, content)) == expected


@PROPERTY
@given(texts, st.data())
def test_punctuation_whitespace_and_digits_do_not_matter(text: str, data: st.DataObject) -> None:
    noisy = "".join(ch + data.draw(separators) for ch in text)
    assert fingerprint("", noisy) == fingerprint("", text)
    assert fingerprint(data.draw(separators), text) == fingerprint("", text)


@PROPERTY
@given(texts)
def test_full_width_and_case_do_not_matter(text: str) -> None:
    assert fingerprint("", _full_width(text)) == fingerprint("", text)
    assert fingerprint("", text.upper()) == fingerprint("", text.lower())


@PROPERTY
@given(english_words, st.data())
def test_english_spacing_punctuation_case_and_full_width_do_not_matter(words: list[str], data: st.DataObject) -> None:
    plain = " ".join(words)
    noisy = "".join(w + data.draw(st.sampled_from([" ", "  ", ", ", ". ", "; ", " 12 ", "\n"])) for w in words)
    assert fingerprint("", noisy.upper()) == fingerprint("", plain)
    assert fingerprint("", _full_width(plain)) == fingerprint("", plain)


@PROPERTY
@given(english_words, english_words)
def test_english_words_added_around_dilute_by_their_share(words: list[str], extra: list[str]) -> None:
    text = " ".join(words)
    _assert_diluted(fingerprint("", text), fingerprint("Dear sir", text + " " + " ".join(extra)))


def test_retyped_dates_and_amounts_do_not_matter() -> None:
    a = ("反映欠薪", "2023年3月至11月，公司欠我们工资386000元，眼看2024年春节快到了。")
    b = ("反映欠薪！", "2024年4月至12月，公司欠我们工资 ３８６,０００ 元；眼看 2025 年春节快到了……")
    assert _sim(a, b) == 1.0


@PROPERTY
@given(texts, texts, texts)
def test_a_greeting_or_closing_added_dilutes_by_its_share(text: str, greeting: str, closing: str) -> None:
    # The greeting's last character and the text's first make one more bigram: compare the text alone with
    # the text plus a closing, and the text plus a closing with the lot.
    _assert_diluted(fingerprint("", text), fingerprint("", text + closing))
    _assert_diluted(fingerprint("", text + closing), fingerprint(greeting, text + closing))


@PROPERTY
@given(texts, texts, texts, texts)
def test_similarity_is_symmetric_and_in_range(t1: str, c1: str, t2: str, c2: str) -> None:
    a, b = fingerprint(t1, c1), fingerprint(t2, c2)
    assert similarity(a, b) == similarity(b, a)
    assert 0.0 <= similarity(a, b) <= 1.0


@PROPERTY
@given(st.text(max_size=500), st.text(max_size=500))
def test_fingerprints_are_sorted_distinct_int4(title: str, content: str) -> None:
    fp = fingerprint(title, content)
    assert fp == sorted(set(fp))
    assert all(-(2**31) <= h < 2**31 for h in fp)
    assert len(fp) <= MAX_CHARS


def test_only_the_first_characters_count() -> None:
    head = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(MAX_CHARS))
    assert fingerprint("", head + "拆迁补偿") == fingerprint("", head + "医疗纠纷")


def test_empty_fingerprints_are_not_similar() -> None:
    assert similarity([], []) == 0.0
    assert similarity([], fingerprint(*WAGES)) == 0.0


def test_unrelated_texts_are_not_similar() -> None:
    assert _sim(WAGES, POLLUTION) < 0.2
    assert _sim(("一二三四五", "六七八九十"), ("甲乙丙丁戊", "己庚辛壬癸")) == 0.0


@PROPERTY
@given(
    st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x5FFF), min_size=2, max_size=200),
    st.text(alphabet=st.characters(min_codepoint=0x6000, max_codepoint=0x7FFF), min_size=2, max_size=200),
)
def test_texts_with_no_common_characters_have_similarity_zero(a: str, b: str) -> None:
    assert similarity(fingerprint("", a), fingerprint("", b)) == 0.0


def test_copy_with_another_greeting_is_a_repeat_and_another_matter_is_not() -> None:
    copy = ("致省长的信：" + WAGES[0], "尊敬的省长：您好！" + WAGES[1] + "此致敬礼！")
    assert _same(WAGES, copy)
    assert not _same(WAGES, POLLUTION)


# --- the rule: texts too short to compare, texts "contained" in longer ones -------------------------

GENERIC = [
    ("问题", "问题"),
    ("投诉", "投诉"),
    ("help", "help"),
    ("Help", "Please help me"),
    ("投诉", "请领导帮忙解决问题"),
    ("求助", "请帮帮我们，谢谢领导"),
    ("反映问题", "尊敬的领导：您好！我有一个问题想反映，恳请领导督促有关部门尽快处理，帮我们解决实际困难。此致敬礼！"),
    ("Complaint", "Dear Sir or Madam, I am writing to complain. Nobody has replied. Please help. Thank you."),
]
# The real matters of the labelled set (the abuse pairs' generic texts left out).
LETTERS = sorted(
    {
        (row[side]["title"], row[side]["content"])
        for row in labelled()
        if not row["note"].startswith("abuse:")
        for side in ("a", "b")
    },
    key=lambda text: len(fingerprint(*text)),
)
LONG_LETTERS = [text for text in LETTERS if len(fingerprint(*text)) >= 100]


def test_the_configured_rule_is_the_reported_one() -> None:
    assert RepeatRule(threshold=0.18, min_tokens=12) == RULE


def test_the_rule_is_frozen_and_refuses_nonsense() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RULE.threshold = 0.5  # type: ignore[misc]
    for threshold, min_tokens in ((0.0, 12), (1.5, 12), (0.18, 0)):
        with pytest.raises(ValueError, match="must be"):
            RepeatRule(threshold=threshold, min_tokens=min_tokens)


@PROPERTY
@given(texts, texts, texts, texts)
def test_the_rule_is_symmetric(t1: str, c1: str, t2: str, c2: str) -> None:
    a, b = fingerprint(t1, c1), fingerprint(t2, c2)
    assert RULE.same(a, b) == RULE.same(b, a)


@PROPERTY
@given(
    st.one_of(
        st.text(alphabet=cjk, max_size=RULE.min_tokens),  # at most min_tokens - 1 bigrams
        english_words.map(lambda words: " ".join(words[: RULE.min_tokens - 1])),
        st.text(max_size=RULE.min_tokens - 1),
    ),
    st.sampled_from(LETTERS),
)
def test_a_text_too_short_to_compare_is_never_a_repeat(short: str, letter: tuple[str, str]) -> None:
    fp = fingerprint("", short)
    assert len(fp) < RULE.min_tokens
    assert not RULE.same(fp, fp), "not even of itself"
    assert not RULE.same(fp, fingerprint(*letter))
    assert not RULE.same(fingerprint(*letter), fp)


def test_generic_texts_are_not_repeats_of_any_letter() -> None:
    assert len(LONG_LETTERS) >= 50
    for generic in GENERIC:
        for letter in LETTERS:
            assert not _same(generic, letter), (generic, letter[0])
    for generic in GENERIC:
        if len(fingerprint(*generic)) < RULE.min_tokens:
            assert not _same(generic, generic), generic


@PROPERTY
@given(st.sampled_from(LONG_LETTERS), st.data())
def test_a_short_text_contained_in_a_long_letter_is_not_a_repeat_of_it(
    letter: tuple[str, str], data: st.DataObject
) -> None:
    """Every token of the excerpt is in the letter (containment 1.0), yet it is too small a part of it."""
    long_fp = fingerprint(*letter)
    cjk_only = "".join(ch for ch in letter[1] if "\u3400" <= ch <= "\u9fff")
    size = data.draw(st.integers(RULE.min_tokens + 1, int(RULE.threshold * len(long_fp))))
    start = data.draw(st.integers(0, len(cjk_only) - size))
    excerpt = fingerprint("", cjk_only[start : start + size])
    assume(len(excerpt) >= RULE.min_tokens)  # a bigram repeated in the excerpt counts once
    assert set(excerpt) <= set(long_fp)
    assert not RULE.same(excerpt, long_fp)


# --- the labelled set -------------------------------------------------------------------------------


def test_labelled_set_is_well_formed() -> None:
    rows = labelled()
    assert len(rows) >= 120
    same = sum(row["same"] for row in rows)
    assert 0.3 <= same / len(rows) <= 0.7, same
    for row in rows:
        assert set(row) >= {"a", "b", "same", "note"}
        assert isinstance(row["same"], bool)
        assert row["note"].strip()
        for side in ("a", "b"):
            assert set(row[side]) == {"title", "content"}
            assert 1 <= len(row[side]["title"]) <= 200
            assert 1 <= len(row[side]["content"]) <= 20_000
    # every line is plain JSON (no trailing garbage), and mostly Chinese with some English
    lines = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(lines) == len(rows)
    english = sum(all(row[s]["content"].isascii() for s in ("a", "b")) for row in rows)
    assert 0 < english < len(rows) / 4


def test_labelled_texts_carry_no_id_or_phone_numbers() -> None:
    pattern = re.compile(r"\d{17}[\dXx]|1[3-9]\d{9}|0\d{2,3}-\d{7,8}")
    for row in labelled():
        for side in ("a", "b"):
            assert not pattern.search(row[side]["title"] + row[side]["content"]), row["note"]


def test_accuracy_at_the_configured_threshold() -> None:
    """The rates reported in repeats.py and README.md: false repeats 3/92, missed repeats 1/68."""
    result = evaluate()
    best = best_threshold()
    print(
        f"\nthreshold {CONFIGURED}, min tokens {RULE.min_tokens}: accuracy {result['accuracy']:.3f}, "
        f"false-positive rate {result['false_positive_rate']:.3f}, "
        f"false-negative rate {result['false_negative_rate']:.3f}; "
        f"best {best['threshold']:.2f} (accuracy {best['accuracy']:.3f})"
    )
    assert result["pairs"] >= 160
    assert result["false_positive_rate"] <= 3 / 92, result["false_positive_pairs"]
    assert result["false_negative_rate"] <= 1 / 68, result["false_negative_pairs"]
    assert best["threshold"] == CONFIGURED, best


def test_identical_resends_are_always_repeats() -> None:
    identical = [(a, b, same, row) for a, b, same, row in scored() if row["a"] == row["b"]]
    assert len(identical) >= 4
    for a, b, same, row in identical:
        assert same, row["note"]
        assert RULE.same(a, b), row["note"]


def test_the_labelled_abuse_pairs_are_not_repeats() -> None:
    abuse = [(a, b, same, row) for a, b, same, row in scored() if row["note"].startswith("abuse:")]
    assert len(abuse) >= 8
    assert any(min(len(a), len(b)) < RULE.min_tokens for a, b, _, _ in abuse), "some are too short to compare"
    assert any(similarity(a, b) >= RULE.threshold for a, b, _, _ in abuse), "some are similar, yet too short"
    for a, b, same, row in abuse:
        assert not same, row["note"]
        assert not RULE.same(a, b), row["note"]


def test_english_different_matters_are_told_apart() -> None:
    result = evaluate(CONFIGURED, english=True)
    assert result["different"] >= 4
    # Known limit: a template-like letter about the same kind of problem elsewhere shares most words.
    assert all("template" in pair for pair in result["false_positive_pairs"]), result["false_positive_pairs"]
    assert len(result["false_positive_pairs"]) <= 1


def test_two_unrelated_english_complaints_are_not_a_repeat() -> None:
    wages = (
        "Unpaid wages",
        "The restaurant where I worked as a waiter in Chengdu has not paid my wages since March. The owner refuses to "
        "answer my calls and the labour office has not replied. Please help me get the money.",
    )
    street = (
        "Broken street lights",
        "The street lights along the river road in our district have been broken since the summer. Several elderly "
        "residents have fallen there at night. Please ask the district to repair them before winter.",
    )
    assert _sim(wages, street) < CONFIGURED
