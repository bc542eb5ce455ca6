"""Staff replies to a student: WeChat's 48-hour window, queueing, sending and recording the outcome."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from handlers import china_time
from handlers.audit import Actor, record_audit
from handlers.errors import Refused
from handlers.inbox.staff import conversation_snapshot, get_conversation
from handlers.outbox import record_job
from models import (
    Conversation,
    Job,
    StaffReply,
    User,
)
from models.status import StaffReplyStatus

SEND_JOB = "inbox.send_reply"
WINDOW = timedelta(hours=48)
WINDOW_MAX_REPLIES = 5
MAX_REPLY_CHARS = 600  # WeChat takes 2048 bytes of text; Chinese is 3 bytes a character
TEMPLATE_FIELD_CHARS = 20  # a template keyword shows about this much

# What a failed send means, in staff's words.
ERRCODE_TEXT = {
    45015: "已超过 48 小时回复时限，或学生已取消关注（45015）",
    45047: "48 小时内已回复满 5 条（45047）",
    43004: "学生未关注公众号，无法发送模板消息（43004）",
    40003: "学生的 openid 无效（40003）",
    40037: "模板 ID 无效，请检查配置（40037）",
    45009: "今日接口调用次数已用完（45009）",
}


# A send whose worker died after calling WeChat: it may well have been delivered.
INTERRUPTED = "发送过程中断，学生可能已收到，请确认后再决定是否重试"


def errcode_text(errcode: int | None, error: str | None = None) -> str:
    if error == INTERRUPTED:
        return INTERRUPTED
    if errcode is None:
        return "发送超时或网络中断，学生可能没有收到" if error else ""
    return ERRCODE_TEXT.get(errcode, f"微信返回错误（{errcode}）")


@dataclass(frozen=True)
class Window:
    """Whether a customer-service message may go out now, by our own records."""

    open: bool
    remaining: int
    closes_at: datetime | None
    reason: str  # "" when open; else why not, in Chinese

    @property
    def label(self) -> str:
        if self.open:
            return "可回复" if self.remaining == WINDOW_MAX_REPLIES else f"剩余 {self.remaining} 条"
        return self.reason


def window(conversation: Conversation, now: datetime) -> Window:
    last = conversation.last_student_message_at
    if last is None:
        return Window(False, 0, None, "学生未发过消息")
    closes_at = last + WINDOW
    remaining = max(0, WINDOW_MAX_REPLIES - conversation.replies_in_window)
    if now > closes_at:
        return Window(False, 0, closes_at, "已超过 48 小时")
    if remaining == 0:
        return Window(False, 0, closes_at, "已回复满 5 条")
    return Window(True, remaining, closes_at, "")


# --- actions (each audited, in the caller's transaction) -------------------------------------------


def _clean(text: str, limit: int) -> str:
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise Refused("empty", "回复内容不能为空")
    if len(text) > limit:
        raise Refused("too_long", f"回复内容最多 {limit} 字")
    return text


def reply(session: Session, actor: Actor, conversation_id: int, text: str, now: datetime) -> StaffReply:
    """Queue a customer-service message, refused up front outside the window or over the quota."""
    conversation = get_conversation(session, conversation_id)
    content = _clean(text, MAX_REPLY_CHARS)
    state = window(conversation, now)
    if not state.open:
        raise Refused("window_closed", f"无法发送客服消息：{state.reason}。可以改发模板通知提醒学生。")
    before = conversation_snapshot(conversation)
    _take_one_reply(session, conversation, now)
    staff_reply = StaffReply(conversation_id=conversation.id, user_id=conversation.user_id, account_id=actor.account_id,
                             kind="custom", content=content, status=StaffReplyStatus.QUEUED, attempts=0,
                             created_at=now)
    session.add(staff_reply)
    _answered(conversation, actor, now, content)
    session.flush()
    _queue(session, staff_reply, conversation)
    record_audit(session, actor, "inbox.reply", "conversation", conversation.id, before=before,
                 after={**conversation_snapshot(conversation), "reply_id": staff_reply.id, "kind": "custom"})
    return staff_reply


def notify(session: Session, actor: Actor, conversation_id: int, text: str, now: datetime,
           template_id: str | None) -> StaffReply:
    """Outside the window: a template message telling the student staff answered (needs the follow)."""
    conversation = get_conversation(session, conversation_id)
    if not template_id:
        raise Refused("no_template", "未配置“工作人员回复”模板，无法发送模板通知")
    content = _clean(text, MAX_REPLY_CHARS)
    if window(conversation, now).open:
        raise Refused("window_open", "仍可直接回复客服消息，无需模板通知")
    before = conversation_snapshot(conversation)
    staff_reply = StaffReply(conversation_id=conversation.id, user_id=conversation.user_id, account_id=actor.account_id,
                             kind="template", content=content, status=StaffReplyStatus.QUEUED, attempts=0,
                             created_at=now)
    session.add(staff_reply)
    _answered(conversation, actor, now, content)
    session.flush()
    _queue(session, staff_reply, conversation)
    record_audit(session, actor, "inbox.notice", "conversation", conversation.id, before=before,
                 after={**conversation_snapshot(conversation), "reply_id": staff_reply.id, "kind": "template"})
    return staff_reply


def _take_one_reply(session: Session, conversation: Conversation, now: datetime) -> None:
    """Count one customer-service message against the window, atomically: two staff members
    answering at once cannot both take the fifth."""
    taken = session.execute(
        update(Conversation)
        .where(Conversation.id == conversation.id, Conversation.replies_in_window < WINDOW_MAX_REPLIES,
               Conversation.last_student_message_at >= now - WINDOW)
        .values(replies_in_window=Conversation.replies_in_window + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(conversation)
    if not taken:
        raise Refused("window_closed", f"无法发送客服消息：{window(conversation, now).reason or '已回复满 5 条'}。"
                                       "可以改发模板通知提醒学生。")


def _answered(conversation: Conversation, actor: Actor, now: datetime, content: str) -> None:
    conversation.waiting_since = None
    conversation.unread = 0
    conversation.last_message_at = now
    conversation.last_preview = ("[回复] " + content)[:60]
    if conversation.assigned_to is None and actor.account_id is not None:
        conversation.assigned_to = actor.account_id


def _queue(session: Session, staff_reply: StaffReply, conversation: Conversation) -> None:
    # Which window the reply was counted in (the student's last message then): a failure gives the
    # count back only to that window.
    window_of = conversation.last_student_message_at
    payload = {"reply_id": staff_reply.id, "window": window_of.isoformat() if window_of else None}
    job = record_job(session, SEND_JOB, payload, max_attempts=1)
    staff_reply.job_id = job.id if job else None


def retry(session: Session, actor: Actor, reply_id: int, now: datetime) -> StaffReply:
    """Send a failed reply again, if the window (for customer-service messages) still allows it."""
    staff_reply = session.get(StaffReply, reply_id)
    if staff_reply is None:
        raise Refused("not_found", "回复不存在")
    if staff_reply.status != StaffReplyStatus.FAILED:
        raise Refused("not_failed", "这条回复没有失败，无需重试")
    conversation = get_conversation(session, staff_reply.conversation_id)
    if staff_reply.kind == "custom":
        state = window(conversation, now)
        if not state.open:
            raise Refused("window_closed", f"无法重试：{state.reason}。可以改发模板通知提醒学生。")
        _take_one_reply(session, conversation, now)
    before = {"status": staff_reply.status, "errcode": staff_reply.errcode}
    staff_reply.status = StaffReplyStatus.QUEUED
    session.flush()
    _queue(session, staff_reply, conversation)
    record_audit(session, actor, "inbox.retry", "staff_reply", staff_reply.id, before=before,
                 after={"status": StaffReplyStatus.QUEUED, "conversation_id": conversation.id})
    return staff_reply


# --- the send job's two halves: what to send, and what came of it ------------------------------

@dataclass(frozen=True)
class Outgoing:
    reply_id: int
    kind: str
    openid: str
    content: str
    created_at: datetime


def outgoing(session: Session, reply_id: int) -> Outgoing | None:
    """The queued reply to send, or None (already sent or failed: a repeated job does nothing)."""
    staff_reply = session.get(StaffReply, reply_id)
    if staff_reply is None or staff_reply.status != StaffReplyStatus.QUEUED:
        return None
    user = session.get(User, staff_reply.user_id)
    assert user is not None
    return Outgoing(staff_reply.id, staff_reply.kind, user.openid, staff_reply.content, staff_reply.created_at)


def start_sending(session: Session, reply_id: int) -> bool:
    """queued → sending, committed by the caller before WeChat is called. A job re-run after the
    worker died (its lease ran out) finds the reply "sending" instead of "queued", so it never
    sends a second customer-service message (WeChat has no dedup for those)."""
    taken = session.execute(update(StaffReply)
                            .where(StaffReply.id == reply_id, StaffReply.status == StaffReplyStatus.QUEUED)
                            .values(status=StaffReplyStatus.SENDING)
                            .execution_options(synchronize_session=False)).rowcount
    return bool(taken)


def record_interrupted(session: Session, reply_id: int) -> bool:
    """A reply left "sending" by a worker that died mid-send: WeChat may have delivered it, so it is
    shown to staff as possibly delivered (quota kept), with the retry button; never sent blind."""
    staff_reply = session.get(StaffReply, reply_id)
    if staff_reply is None or staff_reply.status != StaffReplyStatus.SENDING:
        return False
    record_failed(session, reply_id, None, INTERRUPTED)
    return True


def template_body(item: Outgoing, template_id: str) -> dict[str, Any]:
    summary = (
        item.content if len(item.content) <= TEMPLATE_FIELD_CHARS else item.content[: TEMPLATE_FIELD_CHARS - 1] + "…"
    )
    return {
        "touser": item.openid,
        "template_id": template_id,
        # WeChat drops a repeat with the same id for 10 minutes: a retried job sends once.
        "client_msg_id": f"staff-reply-{item.reply_id}",
        "data": {
            "first": {"value": "工作人员回复了你的留言"},
            "keyword1": {"value": summary},
            "keyword2": {"value": china_time.text(item.created_at)},
            "remark": {"value": "如需继续咨询，请直接在公众号对话框留言。"},
        },
    }


def record_sent(session: Session, reply_id: int, now: datetime) -> None:
    staff_reply = session.get(StaffReply, reply_id)
    if staff_reply is None or staff_reply.status not in (StaffReplyStatus.QUEUED, StaffReplyStatus.SENDING):
        return
    staff_reply.status, staff_reply.errcode, staff_reply.error = StaffReplyStatus.SENT, None, None
    staff_reply.attempts += 1
    staff_reply.sent_at = now
    session.flush()


def record_failed(session: Session, reply_id: int, errcode: int | None, error: str) -> None:
    """Keep the failure on the reply for staff. A refusal WeChat counted nothing for gives the
    conversation its reply back (a timeout may have been delivered, so it stays counted)."""
    staff_reply = session.get(StaffReply, reply_id)
    if staff_reply is None or staff_reply.status not in (StaffReplyStatus.QUEUED, StaffReplyStatus.SENDING):
        return
    staff_reply.status, staff_reply.errcode, staff_reply.error = StaffReplyStatus.FAILED, errcode, error[:300]
    staff_reply.attempts += 1
    conversation = session.get(Conversation, staff_reply.conversation_id)
    # The reply was counted when it was queued (written, or retried): give it back only if no new
    # student message has reset the count since.
    job = session.get(Job, staff_reply.job_id) if staff_reply.job_id is not None else None
    window_of = (job.payload or {}).get("window") if job is not None else None
    counted_in = datetime.fromisoformat(window_of) if window_of else staff_reply.created_at
    if (conversation is not None and staff_reply.kind == "custom" and errcode is not None
            and conversation.last_student_message_at is not None
            and counted_in >= conversation.last_student_message_at and conversation.replies_in_window > 0):
        conversation.replies_in_window = Conversation.replies_in_window - 1  # in SQL: no lost update
    if conversation is not None and conversation.waiting_since is None:
        # The student has no answer: the conversation needs a person again.
        conversation.waiting_since = staff_reply.created_at
    session.flush()
