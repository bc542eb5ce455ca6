"""Keyword auto-replies: the rules staff edit, and the matcher the webhook asks (rules cached per process)."""
from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from handlers.errors import Refused
from models import AutoReplyRule

MATCH_MODES = {"exact": "完全匹配", "contains": "包含关键词"}
# How long a process trusts its copy of the rules. An edit reaches the process that made it at
# once and every other process within this many seconds; the webhook never queries per message.
CACHE_SECONDS = 10.0
MAX_KEYWORDS = 20
MAX_REPLY = 600  # WeChat shows a passive text reply up to 2048 bytes; Chinese is 3 bytes a character

# The guide's common questions, offered as rules staff may import (never installed by themselves:
# a rule silently answering students must be a decision someone made).
SUGGESTED_RULES: list[dict[str, Any]] = [
    {"keywords": ["证书在哪", "查看证书", "显示证书", "看证书"], "match_mode": "contains", "priority": 10,
     "reply": "查看电子版证书：打开公众号首页，点右下角「我的」→「显示证书」即可查看，长按图片可保存到相册。"},
    {"keywords": ["纸质证书", "邮寄"], "match_mode": "contains", "priority": 5,
     "reply": "纸质证书 20 元，邮寄费用自理，寄到你所在的学校。支付后请添加证书微信（13387080248，手机同号）确认邮寄。"
              "如还有其他问题，请直接留言，工作人员会回复你。"},
    {"keywords": ["学校付费", "学校统一付费", "学校支付"], "match_mode": "contains", "priority": 5,
     "reply": "如果学校统一付费，你只需要完成视频学习和考试，即可获得电子版证书。"},
    {"keywords": ["不满85", "不满 85", "没到85", "没有85", "不及格"], "match_mode": "contains", "priority": 5,
     "reply": "总分满 85 分（总分 100）才算通过。不满 85 分需要将 14 个专题重新学习并测试一遍。"},
]


@dataclass(frozen=True)
class Rule:
    id: int
    keywords: tuple[str, ...]
    match_mode: str
    reply: str


def normalise(text: str) -> str:
    """What matching compares: case and surrounding whitespace do not matter."""
    return " ".join(text.split()).lower()


class _RuleCache:
    """Enabled rules, highest priority first, per database (engine) and process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: weakref.WeakKeyDictionary[Engine, tuple[float, list[Rule]]] = weakref.WeakKeyDictionary()

    @staticmethod
    def _engine(session: Session) -> Engine:
        bind = session.get_bind()
        return bind if isinstance(bind, Engine) else bind.engine

    def rules(self, session: Session) -> list[Rule]:
        engine = self._engine(session)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(engine)
        if entry is not None and now - entry[0] < CACHE_SECONDS:
            return entry[1]
        rows = session.scalars(select(AutoReplyRule).where(AutoReplyRule.enabled.is_(True))
                               .order_by(AutoReplyRule.priority.desc(), AutoReplyRule.id)).all()
        rules = [Rule(r.id, tuple(normalise(k) for k in r.keywords if k.strip()), r.match_mode, r.reply) for r in rows]
        with self._lock:
            self._entries[engine] = (now, rules)
        return rules

    def forget(self, session: Session) -> None:
        # Every engine's entry: messages are matched through the readers' engine, which on SQLite
        # is not the one the console edits through. Edits are rare; a reload is one query.
        with self._lock:
            self._entries.clear()


CACHE = _RuleCache()


def match(session: Session, text: str) -> Rule | None:
    """The first enabled rule (by priority) whose keyword matches `text`, or None."""
    said = normalise(text)
    if not said:
        return None
    for rule in CACHE.rules(session):
        if rule.match_mode == "exact":
            if said in rule.keywords:
                return rule
        elif any(keyword in said for keyword in rule.keywords):
            return rule
    return None


@dataclass(frozen=True)
class RuleForm:
    keywords: str  # one a line, or separated by commas
    match_mode: str
    reply: str
    enabled: bool
    priority: str


def parse_form(form: RuleForm) -> dict[str, Any]:
    keywords: list[str] = []
    for part in form.keywords.replace("，", "\n").replace(",", "\n").splitlines():
        part = " ".join(part.split())
        if part and part not in keywords:
            keywords.append(part[:50])
    if not keywords:
        raise Refused("no_keywords", "请至少填写一个关键词")
    if len(keywords) > MAX_KEYWORDS:
        raise Refused("too_many_keywords", f"关键词最多 {MAX_KEYWORDS} 个")
    if form.match_mode not in MATCH_MODES:
        raise Refused("bad_mode", "匹配方式无效")
    reply = form.reply.strip()
    if not reply:
        raise Refused("no_reply", "请填写回复内容")
    if len(reply) > MAX_REPLY:
        raise Refused("reply_too_long", f"回复内容最多 {MAX_REPLY} 字")
    try:
        priority = int(form.priority or 0)
    except ValueError:
        raise Refused("bad_priority", "优先级必须是整数") from None
    if not -1000 <= priority <= 1000:
        raise Refused("bad_priority", "优先级在 -1000 到 1000 之间")
    return {"keywords": keywords, "match_mode": form.match_mode, "reply": reply, "enabled": form.enabled,
            "priority": priority}


def list_rules(session: Session) -> list[AutoReplyRule]:
    return list(session.scalars(select(AutoReplyRule).order_by(AutoReplyRule.priority.desc(), AutoReplyRule.id)))


def create_rule(session: Session, values: dict[str, Any], *, now: datetime) -> AutoReplyRule:
    rule = AutoReplyRule(**values, updated_at=now)
    session.add(rule)
    session.flush()
    CACHE.forget(session)
    return rule


def update_rule(session: Session, rule_id: int, values: dict[str, Any], *,
                now: datetime) -> tuple[AutoReplyRule, dict[str, Any]]:
    rule = session.get(AutoReplyRule, rule_id)
    if rule is None:
        raise Refused("not_found", "规则不存在")
    before = rule.as_dict()
    for key, value in values.items():
        setattr(rule, key, value)
    rule.updated_at = now
    session.flush()
    CACHE.forget(session)
    return rule, before


def delete_rule(session: Session, rule_id: int) -> dict[str, Any]:
    rule = session.get(AutoReplyRule, rule_id)
    if rule is None:
        raise Refused("not_found", "规则不存在")
    before = rule.as_dict()
    session.delete(rule)
    session.flush()
    CACHE.forget(session)
    return before


def import_suggested(session: Session, *, now: datetime) -> int:
    """Add the guide's suggested rules that are not there yet (same first keyword); how many were added."""
    existing = {tuple(r.keywords[:1]) for r in session.scalars(select(AutoReplyRule))}
    added = 0
    for suggestion in SUGGESTED_RULES:
        if tuple(suggestion["keywords"][:1]) in existing:
            continue
        session.add(AutoReplyRule(**suggestion, enabled=True, updated_at=now))
        added += 1
    session.flush()
    CACHE.forget(session)
    return added
