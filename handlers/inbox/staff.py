"""Staff's side of the inbox: the list and counters, a thread with the student's context, assignment, status."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from handlers.accounts.console import STAFF_ROLES
from handlers.audit import Actor, record_audit
from handlers.errors import Refused
from handlers.learning import enrolment
from models import (
    Certificate,
    ConsoleAccount,
    Conversation,
    Enrollment,
    InboxMessage,
    School,
    StaffReply,
    StudentProfile,
    User,
)
from models.status import ConversationStatus

PAGE_SIZE = 30

FILTERS = {"waiting": "待回复", "mine": "分配给我", "unassigned": "未分配", "all": "全部"}


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
        stmt = stmt.where(Conversation.waiting_since.is_not(None), Conversation.status == ConversationStatus.OPEN)
    elif view == "mine":
        stmt = stmt.where(Conversation.assigned_to == account_id)
    elif view == "unassigned":
        stmt = stmt.where(Conversation.assigned_to.is_(None), Conversation.status == ConversationStatus.OPEN)
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
    waiting = and_(Conversation.waiting_since.is_not(None), Conversation.status == ConversationStatus.OPEN)
    row = session.execute(select(
        func.count().filter(waiting),
        func.count().filter(and_(waiting, Conversation.assigned_to == account_id)),
        func.count().filter(and_(Conversation.assigned_to.is_(None), Conversation.status == ConversationStatus.OPEN)),
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
    progress: list[enrolment.Progress]
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
    progress = [enrolment.progress(session, e) for e in latest.values()]
    certificates = list(session.scalars(select(Certificate).where(Certificate.user_id == user.id)
                                        .order_by(Certificate.issued_at.desc(), Certificate.id.desc())))
    return StudentContext(user.openid, user.subscribed, profile, school, progress, certificates)


def staff_accounts(session: Session) -> list[ConsoleAccount]:
    return list(session.scalars(select(ConsoleAccount).where(ConsoleAccount.role.in_(STAFF_ROLES),
                                                             ConsoleAccount.disabled.is_(False))
                                .order_by(ConsoleAccount.display_name)))


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
    if status not in (ConversationStatus.OPEN, ConversationStatus.CLOSED):
        raise Refused("bad_status", "状态无效")
    conversation = get_conversation(session, conversation_id)
    before = conversation_snapshot(conversation)
    conversation.status = status
    if status == ConversationStatus.CLOSED:
        conversation.waiting_since = None
        conversation.unread = 0
    session.flush()
    action = "inbox.close" if status == ConversationStatus.CLOSED else "inbox.reopen"
    record_audit(session, actor, action, "conversation", conversation.id, before=before,
                 after=conversation_snapshot(conversation))
    return conversation


def conversation_snapshot(conversation: Conversation) -> dict[str, Any]:
    return {"status": conversation.status, "assigned_to": conversation.assigned_to, "unread": conversation.unread,
            "waiting": conversation.waiting_since is not None}
