"""The pages' words: Simplified Chinese by default, English on request (`?lang=en`, kept in a cookie)."""

from __future__ import annotations

from fastapi import Request

LANGS = ("zh-CN", "en")
LANG_COOKIE = "xf_lang"

WORDS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "信访工作台",
        "track_title": "信访事项查询",
        "sign_in": "登录",
        "sign_out": "退出",
        "username": "用户名",
        "password": "密码",
        "wrong": "用户名或密码不正确。",
        "limited": "尝试次数过多，请稍后再试。",
        "queue": "待交办事项",
        "queue_of": "待交办事项：",
        "empty": "暂无待交办事项。",
        "registered": "登记时间",
        "category": "类别",
        "reason": "原因",
        "unit": "交办单位",
        "assign": "交办",
        "read_only": "只读：领导可查看，不能修改。",
        "matter": "事项",
        "status": "状态",
        "office": "处室",
        "history": "办理记录",
        "who": "经办人",
        "action": "操作",
        "at": "时间",
        "done": "已交办。",
        "refused": "无权进行此操作。",
        "failed": "操作未完成：",
        "code": "查询码",
        "look_up": "查询",
        "deadlines": "期限",
        "opinion": "处理意见",
        "not_found": "未找到该查询码对应的事项。",
        "back": "返回",
        "language": "English",
    },
    "en": {
        "title": "Letters and Visits workbench",
        "track_title": "Track a matter",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "username": "User name",
        "password": "Password",
        "wrong": "Wrong user name or password.",
        "limited": "Too many attempts; try again later.",
        "queue": "Waiting for a unit",
        "queue_of": "Waiting for a unit: ",
        "empty": "Nothing is waiting.",
        "registered": "Registered",
        "category": "Category",
        "reason": "Reason",
        "unit": "Unit",
        "assign": "Assign",
        "read_only": "Read only: leaders see, and change nothing.",
        "matter": "Matter",
        "status": "Status",
        "office": "Office",
        "history": "History",
        "who": "By",
        "action": "Action",
        "at": "At",
        "done": "Assigned.",
        "refused": "You may not do this.",
        "failed": "Not done: ",
        "code": "Tracking code",
        "look_up": "Look up",
        "deadlines": "Deadlines",
        "opinion": "Opinion",
        "not_found": "No matter has this tracking code.",
        "back": "Back",
        "language": "中文",
    },
}


def language(request: Request) -> str:
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    return "en" if asked == "en" else "zh-CN"
