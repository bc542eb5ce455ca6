"""The inbox: what students write to the account, kept in a conversation per student for staff to answer."""
from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from handlers.accounts.followers import ensure_user
from handlers.inbox import auto_replies
from handlers.messages import Inbound, Reply, TextReply
from models import Conversation, InboxMessage
from models.status import ConversationStatus

ACKNOWLEDGEMENT = "已收到你的留言，工作人员会尽快回复。证书相关问题请写明姓名、学校和学号。"

# How a non-text message appears in a conversation for staff.
MEDIA_LABELS = {"image": "[图片]", "voice": "[语音]", "video": "[视频]", "shortvideo": "[小视频]",
                "location": "[位置]", "link": "[链接]"}

PREVIEW_CHARS = 60


def receive_text(session: Session, inbound: Inbound) -> Reply:
    content = inbound.content or ""
    rule = auto_replies.match(session, content)
    message = _store(session, inbound, content, needs_person=rule is None)
    if rule is None:
        return TextReply(ACKNOWLEDGEMENT)
    # Kept in the thread so staff see what the student was told, and by which rule.
    session.add(InboxMessage(user_id=message.user_id, direction="out", msg_type="auto_reply", content=rule.reply,
                             wechat_msg_id=f"rule:{rule.id}", created_at=inbound.sent_at))
    return TextReply(rule.reply)


def receive_media(session: Session, inbound: Inbound) -> Reply:
    label = MEDIA_LABELS.get(inbound.msg_type, f"[{inbound.msg_type}]")
    _store(session, inbound, label, needs_person=True)
    return TextReply(ACKNOWLEDGEMENT)


def _store(session: Session, inbound: Inbound, content: str, *, needs_person: bool) -> InboxMessage:
    user = ensure_user(session, inbound.openid, now=inbound.sent_at)
    message = InboxMessage(
        user_id=user.id,
        direction="in",
        msg_type=inbound.msg_type,
        content=content,
        wechat_msg_id=inbound.msg_id,
        created_at=inbound.sent_at,
    )
    session.add(message)
    _touch_conversation(session, user.id, inbound, content, needs_person)
    session.flush()
    return message


def _touch_conversation(session: Session, user_id: int, inbound: Inbound, content: str, needs_person: bool) -> None:
    """The student wrote: WeChat's window restarts (5 fresh replies), and unless a rule answered,
    somebody has to look. One upsert, whether the conversation is new or not (the webhook's hot path)."""
    table = Conversation.__table__
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    at = inbound.sent_at
    stmt = insert(table).values(
        user_id=user_id, status=ConversationStatus.OPEN, last_student_message_at=at, replies_in_window=0,
        last_message_at=at, last_preview=content[:PREVIEW_CHARS], unread=1 if needs_person else 0,
        waiting_since=at if needs_person else None, created_at=at)
    changes = {"last_student_message_at": stmt.excluded.last_student_message_at, "replies_in_window": 0,
               "last_message_at": stmt.excluded.last_message_at, "last_preview": stmt.excluded.last_preview}
    if needs_person:
        changes.update(status=ConversationStatus.OPEN, unread=table.c.unread + 1,
                       waiting_since=func.coalesce(table.c.waiting_since, stmt.excluded.waiting_since))
    session.execute(stmt.on_conflict_do_update(index_elements=[table.c.user_id], set_=changes))
