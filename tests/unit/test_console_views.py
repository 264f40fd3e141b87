"""What the console's pages offer a person (views.py): the actions follow the same rights the services enforce
(shared/staff.py) and the deadline rules, so nobody is shown a button that can only be refused; times in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from xinfang_console.accounts import Account
from xinfang_console.views import beijing, matter_actions, time_left

from xinfang_shared.contracts.reference import Office
from xinfang_shared.staff import Role

CLERK = Account("li", "李", Role.CLERK, Office.LETTERS_2)
HEAD = Account("chen", "陈", Role.HEAD, Office.LETTERS_2)
OTHER_HEAD = Account("wang", "王", Role.HEAD, Office.ONLINE)
LEADER = Account("zhao", "赵", Role.LEADER, None)
HANDLING = {"deadline": "handling", "open": True, "paused": False}
RE_REVIEW = {"deadline": "re-review", "open": True, "paused": False}


def test_a_waiting_matter_is_assigned_by_its_office_and_moved_on_by_its_head_alone() -> None:
    waiting = {"office": "letters-2", "status": "awaiting-assignment"}
    transferred = {"office": "letters-2", "status": "transferred"}
    assert matter_actions(CLERK, waiting, [])["assign"] and matter_actions(HEAD, waiting, [])["assign"]
    assert not matter_actions(CLERK, transferred, [])["reassign"] and matter_actions(HEAD, transferred, [])["reassign"]
    for outsider in (OTHER_HEAD, LEADER):
        offered = matter_actions(outsider, transferred | {"status": "awaiting-assignment"}, [])
        assert not offered["assign"] and not offered["reassign"]
    assert not matter_actions(HEAD, {"office": "letters-2", "status": "concluded"}, [])["reassign"]


def test_deadline_actions_follow_the_rules_and_the_role() -> None:
    matter = {"office": "letters-2", "status": "accepted"}
    assert matter_actions(HEAD, matter, [HANDLING])["deadlines"] == {"handling": ["extend"]}
    assert matter_actions(CLERK, matter, [HANDLING])["deadlines"] == {}, "extensions are the head's"
    assert matter_actions(CLERK, matter, [RE_REVIEW])["deadlines"] == {"re-review": ["pause"]}, "a hearing: pausable"
    paused = RE_REVIEW | {"paused": True}
    assert matter_actions(CLERK, matter, [paused])["deadlines"] == {"re-review": ["resume"]}
    assert matter_actions(HEAD, matter, [HANDLING | {"extended_days": 10}])["deadlines"] == {}, "extended once"
    closed = HANDLING | {"open": False}
    assert matter_actions(HEAD, matter, [closed])["deadlines"] == {}
    assert matter_actions(LEADER, matter, [HANDLING, RE_REVIEW])["deadlines"] == {}
    assert matter_actions(OTHER_HEAD, matter, [HANDLING, RE_REVIEW])["deadlines"] == {}


def test_times_are_beijing_time_and_time_left_says_which_side_of_due() -> None:
    assert beijing("2026-12-06T16:30:00+00:00") == "2026-12-07 00:30"
    assert beijing(None) == "—"
    now = datetime(2026, 12, 7, tzinfo=UTC)
    assert time_left("en", (now + timedelta(days=2, hours=3)).isoformat(), now) == "2 d 3 h left"
    assert time_left("en", (now - timedelta(hours=5)).isoformat(), now) == "5 h overdue"
    assert time_left("zh-CN", (now + timedelta(days=1, hours=1)).isoformat(), now) == "剩余1天1小时"
