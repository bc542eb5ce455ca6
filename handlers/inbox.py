"""The inbox: what students write to the account, kept for staff to answer."""
from __future__ import annotations

from sqlalchemy.orm import Session

from handlers.accounts import ensure_user
from handlers.messages import Inbound, Reply, TextReply
from models import InboxMessage

ACKNOWLEDGEMENT = "已收到你的留言，工作人员会尽快回复。证书相关问题请写明姓名、学校和学号。"

# How a non-text message appears in a conversation for staff.
MEDIA_LABELS = {"image": "[图片]", "voice": "[语音]", "video": "[视频]", "shortvideo": "[小视频]",
                "location": "[位置]", "link": "[链接]"}


def receive_text(session: Session, inbound: Inbound) -> Reply:
    _store(session, inbound, inbound.content or "")
    return TextReply(ACKNOWLEDGEMENT)


def receive_media(session: Session, inbound: Inbound) -> Reply:
    label = MEDIA_LABELS.get(inbound.msg_type, f"[{inbound.msg_type}]")
    _store(session, inbound, label)
    return TextReply(ACKNOWLEDGEMENT)


def _store(session: Session, inbound: Inbound, content: str) -> InboxMessage:
    user = ensure_user(session, inbound.openid)
    message = InboxMessage(
        user_id=user.id,
        direction="in",
        msg_type=inbound.msg_type,
        content=content,
        wechat_msg_id=inbound.msg_id,
        created_at=inbound.sent_at,
    )
    session.add(message)
    session.flush()
    return message
