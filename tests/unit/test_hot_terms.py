"""Hot terms (stats): the terms of a matter, counting once per matter, and ranking by lift."""

from __future__ import annotations

import random
import tomllib
from collections import Counter, defaultdict

import pytest

from tests import factories
from tests.unit.category_accuracy import labelled
from xinfang_stats.terms import DEFAULT_DATA, HotTerm, TermExtractor, count_terms, hot_terms, terms_of

DATA = tomllib.loads(DEFAULT_DATA.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------- terms of a matter


def test_domain_phrases_stay_whole() -> None:
    terms = terms_of("反映项目部拖欠农民工工资", "蜀川建工项目部拖欠我们农民工工资三个月，多次讨要无果。")
    assert "农民工工资" in terms
    assert not {"农民工", "工资"} & terms


@pytest.mark.parametrize("phrase", sorted(DATA["phrases"]["zh"]))
def test_every_phrase_of_the_data_file_is_one_term(phrase: str) -> None:
    assert phrase in terms_of("", f"关于{phrase}的情况，请领导关注{phrase}。")


def test_the_data_file_has_a_domain_dictionary_and_a_stop_list() -> None:
    assert len(DATA["phrases"]["zh"]) >= 40
    assert {"信访", "反映", "问题", "情况", "请求", "要求", "政府", "部门", "我们", "本人"} <= set(DATA["stop"]["zh"])


@pytest.mark.parametrize(
    ("title", "content", "places"),
    [
        ("成都市锦江区某小区物业费太高", "四川省成都市锦江区某小区的物业费比周边高一倍。", ["成都", "锦江", "四川"]),
        ("双流区拆迁补偿", "双流区和简阳市的拆迁补偿标准不一样，郫都区红光村更低。", ["双流", "简阳", "郫都", "红光"]),
        (
            "游仙区耕地被占",
            "绵阳市游仙区金桥村四组的基本农田被占用，凉山彝族自治州西昌市也有。",
            ["游仙", "金桥", "凉山", "西昌", "绵阳"],
        ),
    ],
)
def test_place_names_are_left_out(title: str, content: str, places: list[str]) -> None:
    terms = terms_of(title, content)
    assert terms  # the matter has terms: the nouns that are not places
    assert not [t for t in terms if any(p in t for p in places)], terms


NAMES = ["张三", "李明", "王建国", "刘晓燕", "陈志强", "程实", "江涛", "文静", "欧阳明"]


@pytest.mark.parametrize(
    "content",
    [
        "我叫张三，李明和王建国是我的邻居，刘晓燕、陈志强也反映过物业费的问题。",
        "程实经理和江涛书记都不管小区物业费的事。",
        "姓名：文静。联系人：欧阳明。小区物业费太高。",
        "村民李明说，张三的工资被拖欠了。",
    ],
)
def test_person_names_are_never_terms(content: str) -> None:
    terms = terms_of("反映物业费", content)
    assert terms
    assert not [t for t in terms for name in NAMES if t in name or name in t], terms


def test_numbers_dates_time_words_and_stop_words_are_left_out() -> None:
    terms = terms_of(
        "信访反映问题请求政府部门解决",
        "我们本人于2023年5月3日、去年三月和今年反映情况，要求政府部门处理。一百二十亩土地，工资拖了三个月，第5次。",
    )
    assert terms == {"土地", "工资"}


def test_single_characters_are_left_out() -> None:
    assert all(len(t) >= 2 for t in terms_of("水", "水电气路房地，村里没有水。"))


def _personal_matter(rng: random.Random) -> tuple[str, str, list[str]]:
    id_number, phone = factories.id_number(rng), factories.mobile(rng)
    email = f"liming.zhang{rng.randrange(100)}@example.org"
    content = (
        f"本人李明，身份证号{id_number}，电话{phone}（或 {phone[:3]}-{phone[3:7]}-{phone[7:]}），"
        f"邮箱 {email}，微信号 limingzhang。小区物业费太高，开发商拖欠工资。"
    )
    return "物业费", content, [id_number, phone, email, "limingzhang"]


def test_id_numbers_phones_and_email_addresses_are_never_terms() -> None:
    rng = random.Random(20240501)
    for _ in range(30):
        title, content, personal = _personal_matter(rng)
        terms = terms_of(title, content)
        assert {"物业费", "小区", "开发商"} <= terms
        assert not [t for t in terms if any(c.isdigit() or c == "@" for c in t)], terms
        assert not [t for t in terms for value in personal if t.lower() in value.lower()], terms


def test_personal_data_in_an_english_matter_is_never_a_term() -> None:
    rng = random.Random(7)
    id_number, phone = factories.id_number(rng), factories.mobile(rng)
    terms = terms_of(
        "Unpaid wages",
        f"My name is Zhang Wei, ID {id_number}, phone +86 {phone}, e-mail wei.zhang.home@example.org, "
        "WeChat zhangweihome. I worked in a restaurant in Chengdu; the restaurant has not paid my wages.",
    )
    assert {"wages", "restaurant"} <= terms
    leaked = {"zhang", "wei", "home", "example", "org", "zhangweihome", "chengdu", id_number, phone}
    assert not terms & leaked, terms
    assert not [t for t in terms if any(c.isdigit() for c in t)]


def test_english_matters_get_lower_cased_terms_without_stop_words() -> None:
    terms = terms_of(
        "Property Management Fee Increase",
        "The property management company of our compound in Xichang raised the monthly fee by forty percent "
        "without any owners' meeting. When residents refused to pay, they cut the access cards.",
    )
    assert {"property", "management", "fee", "compound", "residents", "meeting"} <= terms
    assert all(t == t.lower() and len(t) >= 3 for t in terms)
    assert not terms & {"the", "our", "without", "any", "when", "they", "forty", "increase", "xichang"}


def test_english_words_in_a_chinese_matter_are_not_terms() -> None:
    terms = terms_of("小区物业费太高", "物业公司说按照contract收费，我的微信是zhangsan，小区业主都不同意。")
    assert "物业费" in terms
    assert not [t for t in terms if t.isascii()]


def test_a_word_repeated_in_a_matter_is_one_term() -> None:
    terms = terms_of("物业费", "物业费" * 10 + "。物业费太高，物业费！")
    assert "物业费" in terms
    counts, matters = count_terms([(terms, True)])
    assert (counts["物业费"], matters) == (1, 1)


def test_terms_are_deterministic() -> None:
    title, content = "关于郫都区集体土地征收补偿标准过低的反映", labelled()[0]["content"]
    first = terms_of(title, content)
    assert all(terms_of(title, content) == first for _ in range(3))
    assert TermExtractor().terms_of(title, content) == first  # a fresh segmenter agrees


# ----------------------------------------------------------------------------- counting once per matter


def test_repeats_of_a_matter_are_not_counted() -> None:
    original = terms_of("拖欠农民工工资", "公司拖欠农民工工资。")
    other = terms_of("物业费太高", "小区物业费太高。")
    counts, matters = count_terms([(original, True), (original, False), (original, False), (other, True)])
    assert matters == 2
    assert counts["农民工工资"] == 1
    assert counts["物业费"] == 1


def test_count_terms_takes_terms_as_sets() -> None:
    counts, matters = count_terms([(["欠薪", "欠薪", "社保"], True), (("欠薪",), True), (["低保"], False)])
    assert (dict(counts), matters) == ({"欠薪": 2, "社保": 1}, 2)


# ------------------------------------------------------------------------------------------- ranking


def test_a_term_new_in_the_window_ranks_above_one_as_frequent_in_the_background() -> None:
    window = Counter({"欠薪": 5, "物业费": 5})
    background = Counter({"物业费": 50})  # 欠薪 never seen before
    ranked = hot_terms(window, 50, background, 500)
    assert [h.term for h in ranked] == ["欠薪", "物业费"]
    new, old = ranked
    assert new.lift == pytest.approx((5 / 50) / (1 / 502))  # add-one: finite for an unseen term
    assert old.lift == pytest.approx((5 / 50) / (51 / 502))
    assert old.lift == pytest.approx(1.0, rel=0.02)  # as frequent as in the background: no lift


def test_min_count_leaves_out_noise() -> None:
    window = Counter({"欠薪": 2, "社保": 3})
    assert [h.term for h in hot_terms(window, 10, Counter(), 100)] == ["社保"]
    assert [h.term for h in hot_terms(window, 10, Counter(), 100, min_count=2)] == ["社保", "欠薪"]
    assert hot_terms(window, 10, Counter(), 100, min_count=4) == []


def test_ties_of_lift_are_broken_by_count_then_term() -> None:
    # lift 3·102/(10·3) = 6·102/(10·6): equal; the term in more matters first
    window = Counter({"低保": 3, "医保": 6, "社保": 6})
    background = Counter({"低保": 2, "医保": 5, "社保": 5})
    ranked = hot_terms(window, 10, background, 100)
    assert [(h.term, h.count) for h in ranked] == [("医保", 6), ("社保", 6), ("低保", 3)]
    assert len({h.lift for h in ranked}) == 1


def test_top_and_empty_windows() -> None:
    window = Counter({f"词{i:02d}": 3 + i for i in range(30)})
    ranked = hot_terms(window, 100, Counter(), 1000)
    assert len(ranked) == 20
    assert (ranked[0].term, ranked[0].count) == ("词29", 32)
    assert ranked[0].lift == pytest.approx(32 / 100 / (1 / 1002))
    assert isinstance(ranked[0], HotTerm)
    assert len(hot_terms(window, 100, Counter(), 1000, top=5)) == 5
    assert hot_terms(Counter(), 0, Counter({"欠薪": 3}), 10) == []
    assert hot_terms(window, 100, Counter(), 1000, top=0) == []


def test_ranking_does_not_depend_on_the_order_of_the_counters() -> None:
    items = [("欠薪", 4), ("社保", 4), ("物业费", 7), ("低保", 3), ("医保", 5)]
    background = Counter({"欠薪": 3, "社保": 3, "物业费": 30, "医保": 1})
    first = hot_terms(Counter(dict(items)), 20, background, 200)
    again = hot_terms(Counter(dict(reversed(items))), 20, Counter(dict(reversed(background.items()))), 200)
    assert first == again


def test_counts_of_occurrences_instead_of_matters_are_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        hot_terms(Counter({"欠薪": 12}), 10, Counter(), 100)
    with pytest.raises(ValueError, match="background"):
        hot_terms(Counter({"欠薪": 3}), 10, Counter({"欠薪": 101}), 100)


# --------------------------------------------------------------------------- on the labelled matters


def test_the_hot_terms_of_each_category_are_its_own() -> None:
    """tests/data/categories.jsonl: each category's matters as the window, all of them as the background."""
    rows = labelled()
    terms = [terms_of(r["title"], r["content"]) for r in rows]
    background, n = count_terms((t, True) for t in terms)
    by_category: dict[str, list[set[str]]] = defaultdict(list)
    for row, t in zip(rows, terms, strict=True):
        by_category[row["category"]].append(t)

    def top(category: str) -> set[str]:
        window, matters = count_terms((t, True) for t in by_category[category])
        return {h.term for h in hot_terms(window, matters, background, n, top=5, min_count=2)}

    expected = {
        "land": {"耕地", "征地", "基本农田"},
        "housing": {"物业", "物业公司"},
        "labor": {"人社局", "社保"},
        "health": {"医生", "手术"},
        "education": {"教育部门", "教育局", "老师"},
        "civil-affairs": {"民政部门", "临时救助"},
        "public-security": {"派出所", "落户", "户籍"},
        "economy": {"非法集资", "监管部门"},
        "litigation": {"法院", "生效"},
    }
    for category, some in expected.items():
        assert top(category) & some, (category, top(category))


@pytest.mark.timeout(30)
def test_a_long_run_of_letters_costs_its_length_not_its_square() -> None:
    """A channel system may send 20,000 characters of content: the masks before segmentation (e-mail addresses,
    runs with a digit) once tried every start position to the end of a run, seconds for one matter."""
    for text in ("x" * 200_000, "a-b_" * 50_000, "x" * 100_000 + "1"):
        assert terms_of("标题", text) is not None
