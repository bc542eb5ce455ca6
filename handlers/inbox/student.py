"""The inbox: what students write to the account, kept in a conversation per student for staff to answer."""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy import bindparam, func, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from handlers.accounts.followers import USER_ID_BY_OPENID, ensure_user_write
from handlers.inbox import auto_replies
from handlers.messages import Inbound, Planned, TextReply, Write, planned
from models import Conversation, InboxMessage
from models.status import ConversationStatus

ACKNOWLEDGEMENT = "已收到你的留言，工作人员会尽快回复。证书相关问题请写明姓名、学校和学号。"

# How a non-text message appears in a conversation for staff.
MEDIA_LABELS = {"image": "[图片]", "voice": "[语音]", "video": "[视频]", "shortvideo": "[小视频]",
                "location": "[位置]", "link": "[链接]"}

PREVIEW_CHARS = 60


@planned
def receive_text(session: Session, inbound: Inbound) -> Planned:
    content = inbound.content or ""
    rule = auto_replies.match(session, content)
    writes = _store(session, inbound, content, needs_person=rule is None)
    if rule is None:
        return Planned(TextReply(ACKNOWLEDGEMENT), writes)
    # Kept in the thread so staff see what the student was told, and by which rule.
    writes.append(Write(_MESSAGE, {"openid": inbound.openid, "direction": "out", "msg_type": "auto_reply",
                                   "content": rule.reply, "wechat_msg_id": f"rule:{rule.id}",
                                   "created_at": inbound.sent_at}))
    return Planned(TextReply(rule.reply), writes)


@planned
def receive_media(session: Session, inbound: Inbound) -> Planned:
    label = MEDIA_LABELS.get(inbound.msg_type, f"[{inbound.msg_type}]")
    return Planned(TextReply(ACKNOWLEDGEMENT), _store(session, inbound, label, needs_person=True))


# The webhook's hot path runs statements built once, with their values bound at execution: building
# them per message (coercing every value, the upsert's generative calls) cost more than the
# database work itself (bench/webhook --profile: 1.7 ms of 3.3 ms per text message). They find the
# student by openid, so the boundary can send them with the dedup row in one batch.
_MESSAGES = InboxMessage.__table__
_MESSAGE = insert(_MESSAGES).values(user_id=USER_ID_BY_OPENID, **{
    name: bindparam(name, type_=_MESSAGES.c[name].type)
    for name in ("direction", "msg_type", "content", "wechat_msg_id", "created_at")})


@lru_cache(maxsize=8)
def _touch(dialect: str, needs_person: bool):  # type: ignore[no-untyped-def]
    """The conversation's upsert for this dialect, with or without "somebody has to look"."""
    table = Conversation.__table__
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    at = bindparam("at", type_=table.c.last_message_at.type)
    stmt = insert_(table).values(
        user_id=USER_ID_BY_OPENID, status=ConversationStatus.OPEN, last_student_message_at=at,
        replies_in_window=0, last_message_at=at, last_preview=bindparam("preview"),
        unread=1 if needs_person else 0, waiting_since=at if needs_person else None, created_at=at)
    changes = {"last_student_message_at": stmt.excluded.last_student_message_at, "replies_in_window": 0,
               "last_message_at": stmt.excluded.last_message_at, "last_preview": stmt.excluded.last_preview}
    if needs_person:
        changes.update(status=ConversationStatus.OPEN, unread=table.c.unread + 1,
                       waiting_since=func.coalesce(table.c.waiting_since, stmt.excluded.waiting_since))
    return stmt.on_conflict_do_update(index_elements=[table.c.user_id], set_=changes)


def _store(session: Session, inbound: Inbound, content: str, *, needs_person: bool) -> list[Write]:
    """The follower (created if new), the message in the inbox, and the conversation touched: the
    student wrote, so WeChat's window restarts (5 fresh replies), and unless a rule answered,
    somebody has to look. One upsert, whether the conversation is new or not."""
    dialect = session.get_bind().dialect.name
    return [
        ensure_user_write(dialect, inbound.openid, now=inbound.sent_at),
        Write(_MESSAGE, {"openid": inbound.openid, "direction": "in", "msg_type": inbound.msg_type,
                         "content": content, "wechat_msg_id": inbound.msg_id, "created_at": inbound.sent_at}),
        Write(_touch(dialect, needs_person),
              {"openid": inbound.openid, "at": inbound.sent_at, "preview": content[:PREVIEW_CHARS]}),
    ]
