"""Repeat detection (repeats.py): fingerprint/similarity properties and accuracy on the labelled pairs."""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.repeat_accuracy import CONFIGURED, DATA, best_threshold, evaluate, labelled, scored
from xinfang_intake.repeats import MAX_CHARS, fingerprint, similarity

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
def test_english_words_added_around_keep_containment(words: list[str], extra: list[str]) -> None:
    text = " ".join(words)
    assert similarity(fingerprint("", text), fingerprint("Dear sir", text + " " + " ".join(extra))) == 1.0


def test_retyped_dates_and_amounts_do_not_matter() -> None:
    a = ("反映欠薪", "2023年3月至11月，公司欠我们工资386000元，眼看2024年春节快到了。")
    b = ("反映欠薪！", "2024年4月至12月，公司欠我们工资 ３８６,０００ 元；眼看 2025 年春节快到了……")
    assert _sim(a, b) == 1.0


@PROPERTY
@given(texts, texts, texts)
def test_a_greeting_or_closing_added_keeps_containment(text: str, greeting: str, closing: str) -> None:
    assert similarity(fingerprint("", text), fingerprint(greeting, text + closing)) == 1.0


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
    assert _sim(WAGES, copy) >= CONFIGURED
    assert _sim(WAGES, POLLUTION) < CONFIGURED


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
    result = evaluate(CONFIGURED)
    best = best_threshold()
    print(
        f"\nthreshold {CONFIGURED}: accuracy {result['accuracy']:.3f}, "
        f"false-positive rate {result['false_positive_rate']:.3f}, "
        f"false-negative rate {result['false_negative_rate']:.3f}; "
        f"best {best['threshold']:.2f} (accuracy {best['accuracy']:.3f})"
    )
    assert result["pairs"] >= 120
    assert result["accuracy"] >= 0.9, result
    assert result["false_positive_rate"] <= 0.1, result


def test_identical_resends_are_always_repeats() -> None:
    for sim, same, row in scored():
        if row["a"] == row["b"]:
            assert same and sim == 1.0, row["note"]


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
