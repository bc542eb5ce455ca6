"""Staff's side of the inbox: the conversation list, a thread with the student's context, replies
within WeChat's 48-hour / 5-message window (or a template notice outside it), assignment, quick replies."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select, update
from sqlalchemy.orm import Session

from handlers import china_time, learning
from handlers.console_accounts import STAFF_ROLES, Actor, record_audit
from handlers.learning import Refused
from handlers.outbox import record_job
from models import (
    Certificate,
    ConsoleAccount,
    Conversation,
    Enrollment,
    InboxMessage,
    Job,
    QuickReply,
    School,
    StaffReply,
    StudentProfile,
    User,
)

SEND_JOB = "inbox.send_reply"
WINDOW = timedelta(hours=48)
WINDOW_MAX_REPLIES = 5
MAX_REPLY_CHARS = 600  # WeChat takes 2048 bytes of text; Chinese is 3 bytes a character
TEMPLATE_FIELD_CHARS = 20  # a template keyword shows about this much
PAGE_SIZE = 30

FILTERS = {"waiting": "待回复", "mine": "分配给我", "unassigned": "未分配", "all": "全部"}

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


def waiting_label(since: datetime | None, now: datetime) -> str:
    if since is None:
        return ""
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 60:
        return "等待不到 1 分钟"
    if seconds < 3600:
        return f"等待 {seconds // 60} 分钟"
    if seconds < 86400:
        return f"等待 {seconds // 3600} 小时"
    return f"等待 {seconds // 86400} 天"


# --- the list -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    conversation: Conversation
    openid: str
    name: str
    student_number: str
    school: str
    assignee: str


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def list_conversations(session: Session, account_id: int, view: str = "waiting", query: str = "",
                       page: int = 1) -> tuple[list[Row], int]:
    """Conversations for the list, waiting ones first (longest wait first), then the latest; and the total."""
    stmt = (select(Conversation, User.openid, StudentProfile.real_name, StudentProfile.student_number, School.name,
                   ConsoleAccount.display_name)
            .join(User, User.id == Conversation.user_id)
            .outerjoin(StudentProfile, StudentProfile.user_id == Conversation.user_id)
            .outerjoin(School, School.id == StudentProfile.school_id)
            .outerjoin(ConsoleAccount, ConsoleAccount.id == Conversation.assigned_to))
    if view == "waiting":
        stmt = stmt.where(Conversation.waiting_since.is_not(None), Conversation.status == "open")
    elif view == "mine":
        stmt = stmt.where(Conversation.assigned_to == account_id)
    elif view == "unassigned":
        stmt = stmt.where(Conversation.assigned_to.is_(None), Conversation.status == "open")
    query = " ".join(query.split())[:50]
    if query:
        pattern = _like(query)
        said = exists().where(InboxMessage.user_id == Conversation.user_id, InboxMessage.direction == "in",
                              InboxMessage.content.like(pattern, escape="\\"))
        stmt = stmt.where(or_(StudentProfile.real_name.like(pattern, escape="\\"),
                              StudentProfile.student_number.like(pattern, escape="\\"),
                              User.openid == query, said))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    waiting_first = case((Conversation.waiting_since.is_(None), 1), else_=0)
    stmt = (stmt.order_by(waiting_first, Conversation.waiting_since, Conversation.last_message_at.desc(),
                          Conversation.id.desc())
            .limit(PAGE_SIZE).offset(max(0, page - 1) * PAGE_SIZE))
    rows = [Row(c, openid, name or "未填写资料", number or "", school or "", assignee or "")
            for c, openid, name, number, school, assignee in session.execute(stmt)]
    return rows, total


def counters(session: Session, account_id: int) -> dict[str, int]:
    waiting = and_(Conversation.waiting_since.is_not(None), Conversation.status == "open")
    row = session.execute(select(
        func.count().filter(waiting),
        func.count().filter(and_(waiting, Conversation.assigned_to == account_id)),
        func.count().filter(and_(Conversation.assigned_to.is_(None), Conversation.status == "open")),
        func.coalesce(func.sum(Conversation.unread), 0),
    )).one()
    return {"waiting": row[0], "mine": row[1], "unassigned": row[2], "unread": int(row[3])}


# --- one conversation ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ThreadItem:
    at: datetime
    direction: str  # "in", "auto", "staff"
    content: str
    reply: StaffReply | None = None
    author: str = ""


@dataclass(frozen=True)
class StudentContext:
    openid: str
    subscribed: bool
    profile: StudentProfile | None
    school: School | None
    progress: list[learning.Progress]
    certificates: list[Certificate]


def get_conversation(session: Session, conversation_id: int) -> Conversation:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise Refused("not_found", "会话不存在")
    return conversation


def thread(session: Session, conversation: Conversation, limit: int = 200) -> list[ThreadItem]:
    items: list[ThreadItem] = []
    for message in session.scalars(select(InboxMessage).where(InboxMessage.user_id == conversation.user_id)
                                   .order_by(InboxMessage.created_at.desc(), InboxMessage.id.desc()).limit(limit)):
        items.append(ThreadItem(message.created_at, "in" if message.direction == "in" else "auto", message.content))
    authors = dict(session.execute(select(ConsoleAccount.id, ConsoleAccount.display_name)).all())
    for reply in session.scalars(select(StaffReply).where(StaffReply.conversation_id == conversation.id)
                                 .order_by(StaffReply.created_at.desc(), StaffReply.id.desc()).limit(limit)):
        items.append(ThreadItem(reply.created_at, "staff", reply.content, reply, authors.get(reply.account_id, "")))
    order = {"in": 0, "auto": 1, "staff": 2}
    items.sort(key=lambda item: (item.at, order[item.direction], item.reply.id if item.reply else 0))
    return items[-limit:]


def student_context(session: Session, conversation: Conversation) -> StudentContext:
    user = session.get(User, conversation.user_id)
    assert user is not None
    profile = session.scalar(select(StudentProfile).where(StudentProfile.user_id == user.id))
    school = session.get(School, profile.school_id) if profile else None
    enrollments = session.scalars(select(Enrollment).where(Enrollment.user_id == user.id)
                                  .order_by(Enrollment.course_id, Enrollment.round.desc())).all()
    latest: dict[int, Enrollment] = {}
    for enrollment in enrollments:
        latest.setdefault(enrollment.course_id, enrollment)
    progress = [learning.progress(session, e) for e in latest.values()]
    certificates = list(session.scalars(select(Certificate).where(Certificate.user_id == user.id)
                                        .order_by(Certificate.issued_at.desc(), Certificate.id.desc())))
    return StudentContext(user.openid, user.subscribed, profile, school, progress, certificates)


def staff_accounts(session: Session) -> list[ConsoleAccount]:
    return list(session.scalars(select(ConsoleAccount).where(ConsoleAccount.role.in_(STAFF_ROLES),
                                                             ConsoleAccount.disabled.is_(False))
                                .order_by(ConsoleAccount.display_name)))


# --- actions (each audited, in the caller's transaction) -------------------------------------------

def conversation_snapshot(conversation: Conversation) -> dict[str, Any]:
    return {"status": conversation.status, "assigned_to": conversation.assigned_to, "unread": conversation.unread,
            "waiting": conversation.waiting_since is not None}


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
                             kind="custom", content=content, status="queued", attempts=0, created_at=now)
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
                             kind="template", content=content, status="queued", attempts=0, created_at=now)
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
    if staff_reply.status != "failed":
        raise Refused("not_failed", "这条回复没有失败，无需重试")
    conversation = get_conversation(session, staff_reply.conversation_id)
    if staff_reply.kind == "custom":
        state = window(conversation, now)
        if not state.open:
            raise Refused("window_closed", f"无法重试：{state.reason}。可以改发模板通知提醒学生。")
        _take_one_reply(session, conversation, now)
    before = {"status": staff_reply.status, "errcode": staff_reply.errcode}
    staff_reply.status = "queued"
    session.flush()
    _queue(session, staff_reply, conversation)
    record_audit(session, actor, "inbox.retry", "staff_reply", staff_reply.id, before=before,
                 after={"status": "queued", "conversation_id": conversation.id})
    return staff_reply


def assign(session: Session, actor: Actor, conversation_id: int, account_id: int | None) -> Conversation:
    conversation = get_conversation(session, conversation_id)
    if account_id is not None:
        target = session.get(ConsoleAccount, account_id)
        if target is None or target.role not in STAFF_ROLES or target.disabled:
            raise Refused("bad_assignee", "只能分配给在职的平台工作人员")
    before = conversation_snapshot(conversation)
    conversation.assigned_to = account_id
    session.flush()
    record_audit(session, actor, "inbox.assign", "conversation", conversation.id, before=before,
                 after=conversation_snapshot(conversation))
    return conversation


def mark_read(session: Session, actor: Actor, conversation_id: int) -> Conversation:
    conversation = get_conversation(session, conversation_id)
    before = conversation_snapshot(conversation)
    conversation.unread = 0
    session.flush()
    record_audit(session, actor, "inbox.read", "conversation", conversation.id, before=before,
                 after=conversation_snapshot(conversation))
    return conversation


def set_status(session: Session, actor: Actor, conversation_id: int, status: str) -> Conversation:
    """Close (nobody needs to act; the next message reopens it) or reopen a conversation."""
    if status not in ("open", "closed"):
        raise Refused("bad_status", "状态无效")
    conversation = get_conversation(session, conversation_id)
    before = conversation_snapshot(conversation)
    conversation.status = status
    if status == "closed":
        conversation.waiting_since = None
        conversation.unread = 0
    session.flush()
    record_audit(session, actor, "inbox.close" if status == "closed" else "inbox.reopen", "conversation",
                 conversation.id, before=before, after=conversation_snapshot(conversation))
    return conversation


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
    if staff_reply is None or staff_reply.status != "queued":
        return None
    user = session.get(User, staff_reply.user_id)
    assert user is not None
    return Outgoing(staff_reply.id, staff_reply.kind, user.openid, staff_reply.content, staff_reply.created_at)


def start_sending(session: Session, reply_id: int) -> bool:
    """queued → sending, committed by the caller before WeChat is called. A job re-run after the
    worker died (its lease ran out) finds the reply "sending" instead of "queued", so it never
    sends a second customer-service message (WeChat has no dedup for those)."""
    taken = session.execute(update(StaffReply).where(StaffReply.id == reply_id, StaffReply.status == "queued")
                            .values(status="sending").execution_options(synchronize_session=False)).rowcount
    return bool(taken)


def record_interrupted(session: Session, reply_id: int) -> bool:
    """A reply left "sending" by a worker that died mid-send: WeChat may have delivered it, so it is
    shown to staff as possibly delivered (quota kept), with the retry button; never sent blind."""
    staff_reply = session.get(StaffReply, reply_id)
    if staff_reply is None or staff_reply.status != "sending":
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
    if staff_reply is None or staff_reply.status not in ("queued", "sending"):
        return
    staff_reply.status, staff_reply.errcode, staff_reply.error = "sent", None, None
    staff_reply.attempts += 1
    staff_reply.sent_at = now
    session.flush()


def record_failed(session: Session, reply_id: int, errcode: int | None, error: str) -> None:
    """Keep the failure on the reply for staff. A refusal WeChat counted nothing for gives the
    conversation its reply back (a timeout may have been delivered, so it stays counted)."""
    staff_reply = session.get(StaffReply, reply_id)
    if staff_reply is None or staff_reply.status not in ("queued", "sending"):
        return
    staff_reply.status, staff_reply.errcode, staff_reply.error = "failed", errcode, error[:300]
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

