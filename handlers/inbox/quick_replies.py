"""Quick replies: the canned answers staff keep and insert into a reply."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.audit import Actor, record_audit
from handlers.errors import Refused
from handlers.inbox.replies import MAX_REPLY_CHARS
from models import (
    QuickReply,
)

# --- quick replies --------------------------------------------------------------------------------

def list_quick_replies(session: Session) -> list[QuickReply]:
    return list(session.scalars(select(QuickReply).order_by(QuickReply.position, QuickReply.id)))


def _quick_values(title: str, body: str, position: str) -> dict[str, Any]:
    title, body = " ".join(title.split()), body.replace("\r\n", "\n").strip()
    if not title or len(title) > 60:
        raise Refused("bad_title", "标题必填，最多 60 字")
    if not body or len(body) > MAX_REPLY_CHARS:
        raise Refused("bad_body", f"内容必填，最多 {MAX_REPLY_CHARS} 字")
    try:
        order = int(position or 0)
    except ValueError:
        raise Refused("bad_position", "排序必须是整数") from None
    return {"title": title, "body": body, "position": order}


def save_quick_reply(session: Session, actor: Actor, quick_id: int | None, title: str, body: str,
                     position: str = "0") -> QuickReply:
    values = _quick_values(title, body, position)
    if quick_id is None:
        quick = QuickReply(**values)
        session.add(quick)
        session.flush()
        record_audit(session, actor, "quick_reply.create", "quick_reply", quick.id, after=values)
        return quick
    quick = session.get(QuickReply, quick_id)
    if quick is None:
        raise Refused("not_found", "快捷回复不存在")
    before = {"title": quick.title, "body": quick.body, "position": quick.position}
    for key, value in values.items():
        setattr(quick, key, value)
    session.flush()
    record_audit(session, actor, "quick_reply.update", "quick_reply", quick.id, before=before, after=values)
    return quick


def delete_quick_reply(session: Session, actor: Actor, quick_id: int) -> None:
    quick = session.get(QuickReply, quick_id)
    if quick is None:
        raise Refused("not_found", "快捷回复不存在")
    before = {"title": quick.title, "body": quick.body, "position": quick.position}
    session.delete(quick)
    session.flush()
    record_audit(session, actor, "quick_reply.delete", "quick_reply", quick_id, before=before)
