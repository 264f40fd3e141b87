"""The report's words in Simplified Chinese and English, and how its numbers are written. Codes (channels,
offices, categories, cities, units, ratings) are named by the shared labels (xinfang_shared/contracts/labels.py)."""

from __future__ import annotations

from typing import Any

from xinfang_shared.contracts.labels import name_of

# Which labels table names the keys of each grouping.
TABLE = {"channel": "channel", "office": "office", "unit": "unit", "category": "category", "region": "city"}

WORDS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "bureau": "四川省信访局",
        "title": "信访形势分析报告",
        "period": "统计期间",
        "made": "生成时间",
        "basis": "数据口径：按事项登记日（北京时间）统计；本报告不含任何个人信息。",
        "headline": "主要指标",
        "summary": "一、综述",
        "volume": "二、信访总量",
        "quality": "三、受理与办理",
        "focus": "四、重点单位与问题",
        "satisfaction": "五、群众满意度",
        "hot": "六、热点与预警",
        "by_channel": "按渠道",
        "by_office": "按处室",
        "by_category": "按问题类别",
        "by_region": "按城市",
        "by_unit": "按责任单位",
        "daily": "每日登记量",
        "key": "项目",
        "now": "本期",
        "previous": "上期",
        "last_year": "去年同期",
        "mom": "环比",
        "yoy": "同比",
        "registered": "登记",
        "repeats": "重复件",
        "routed": "转送交办",
        "accepted": "受理",
        "concluded": "办结",
        "overdue": "超期",
        "acceptance_rate": "受理率",
        "on_time_rate": "按期办结率",
        "median": "办结用时中位数（天）",
        "p90": "办结用时P90（天）",
        "satisfaction_rate": "满意率",
        "group_visits": "集体访（批）",
        "group_people": "集体访人次",
        "massive_visits": "大规模集体访（批）",
        "massive_people": "大规模集体访人次",
        "duplicates": "重复信访",
        "not_accepted_again": "不再受理",
        "visits_title": "集体访与重复信访",
        "units_most": "信访量最多的责任单位",
        "categories_most": "反映最多的问题类别",
        "units_late": "按期办结率最低的单位",
        "supervision_title": "督办与升级",
        "orders": "督办件",
        "escalations": "升级至督查复查处",
        "transferred": "转交",
        "open": "在办",
        "rated": "评价件数",
        "rating": "评价",
        "count": "件数",
        "share": "占比",
        "terms": "本期热点词",
        "term": "热点词",
        "lift": "热度倍数",
        "new": "新",
        "alerts": "本期预警",
        "scope": "范围",
        "window": "窗口",
        "observed": "观测",
        "baseline": "基线",
        "opened": "开始",
        "closed": "解除",
        "still_open": "尚未解除",
        "none": "无",
        "unit_name": "单位",
        "unknown": "未定",
        "chart_units": "件",
        "page": "第 {page} 页",
    },
    "en": {
        "bureau": "Sichuan Provincial Bureau for Letters and Visits",
        "title": "Analysis report on letters and visits",
        "period": "Period",
        "made": "Made",
        "basis": "Matters are counted by the Beijing day they were registered. This report holds no personal data.",
        "headline": "Key figures",
        "summary": "1. Summary",
        "volume": "2. Volume",
        "quality": "3. Acceptance and handling",
        "focus": "4. Units and issues to watch",
        "satisfaction": "5. Satisfaction",
        "hot": "6. Hot terms and surges",
        "by_channel": "By channel",
        "by_office": "By office",
        "by_category": "By category",
        "by_region": "By city",
        "by_unit": "By unit",
        "daily": "Registered per day",
        "key": "",
        "now": "This period",
        "previous": "Previous",
        "last_year": "A year before",
        "mom": "vs previous",
        "yoy": "vs a year before",
        "registered": "Registered",
        "repeats": "Repeats",
        "routed": "Routed",
        "accepted": "Accepted",
        "concluded": "Concluded",
        "overdue": "Overdue",
        "acceptance_rate": "Acceptance rate",
        "on_time_rate": "On-time rate",
        "median": "Median days to conclude",
        "p90": "P90 days to conclude",
        "satisfaction_rate": "Satisfaction",
        "group_visits": "Group visits",
        "group_people": "People in group visits",
        "massive_visits": "Massive visits",
        "massive_people": "People in massive visits",
        "duplicates": "Duplicates",
        "not_accepted_again": "Not accepted again",
        "visits_title": "Group visits and repeats",
        "units_most": "Units with the most matters",
        "categories_most": "Categories raised most",
        "units_late": "Units with the lowest on-time rate",
        "supervision_title": "Supervision orders and escalations",
        "orders": "Supervision orders",
        "escalations": "Escalations",
        "transferred": "Transferred",
        "open": "Open",
        "rated": "Rated",
        "rating": "Rating",
        "count": "Matters",
        "share": "Share",
        "terms": "Hot terms of the period",
        "term": "Term",
        "lift": "Lift",
        "new": "new",
        "alerts": "Surges raised",
        "scope": "Where",
        "window": "Window",
        "observed": "Observed",
        "baseline": "Baseline",
        "opened": "Opened",
        "closed": "Closed",
        "still_open": "still open",
        "none": "None",
        "unit_name": "Unit",
        "unknown": "not yet known",
        "chart_units": "matters",
        "page": "Page {page}",
    },
}


def words(language: str) -> dict[str, str]:
    return WORDS.get(language, WORDS["zh-CN"])


def name(language: str, group: str, key: Any) -> str:
    """A grouping key in words (a code the labels do not know stays the code; none is "not yet known")."""
    if key is None or key == "":
        return words(language)["unknown"]
    return name_of(language, TABLE.get(group, group), str(key))


def percent(rate: float | None) -> str:
    """A rate of the API (a fraction, 4 decimals) as a percentage with 2 decimals: the very same number."""
    return "—" if rate is None else f"{rate * 100:.2f}%"


def signed_percent(change: float | None) -> str:
    return "—" if change is None else f"{change * 100:+.1f}%"


def days(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def count(value: int | None) -> str:
    return "—" if value is None else str(value)
