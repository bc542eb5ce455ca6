"""What people read instead of codes: China time, actors, and the template filters for both."""
from __future__ import annotations

from datetime import date, datetime

from flask import Flask

from handlers import china_time

# Who did something, as the records store it ("student:12", "staff:wang", "wechatpay:notify").
ACTOR_KINDS = {"student": "学生", "staff": "工作人员", "school": "学校管理员", "admin": "平台管理员",
               "job": "系统任务", "system": "系统", "console": "控制台", "wechatpay": "微信支付"}
ACTOR_NAMES = {"wechatpay:notify": "微信支付（支付通知）", "wechatpay:refund": "微信支付（退款通知）",
               "job:query": "系统（查询支付结果）", "job:reconcile": "系统（对账）", "job:close": "系统（关闭订单）",
               "system:repair": "系统（重新签名）"}


def actor(value: str | None) -> str:
    """"student:12" → 学生 #12; "staff:wang" → 工作人员 wang; unknown kinds are shown as they are."""
    if not value:
        return ""
    if value in ACTOR_NAMES:
        return ACTOR_NAMES[value]
    kind, _, who = value.partition(":")
    label = ACTOR_KINDS.get(kind)
    if label is None:
        return value
    if kind == "student" and who.isdigit():
        return f"{label} #{who}"
    return f"{label} {who}".strip()


def china(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return china_time.text(value, fmt)


def long_date(value: date | None) -> str:
    return china_time.long_date(value) if value else ""


def init_app(app: Flask) -> None:
    app.add_template_filter(china, "china")
    app.add_template_filter(actor, "actor")
    app.add_template_filter(long_date, "long_date")
