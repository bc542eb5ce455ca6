"""The inbox: students' messages, one conversation per student, staff replies, canned answers, auto-replies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAtMixin, utcnow
from models.status import ConversationStatus, StaffReplyStatus


class InboxMessage(CreatedAtMixin, Base):
    __tablename__ = "inbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # "in": from the student; "out": what the account answered on its own (msg_type "auto_reply");
    # staff replies are StaffReply rows, which carry their delivery status.
    direction: Mapped[str] = mapped_column(String(3))
    msg_type: Mapped[str] = mapped_column(String(32))
    content: Mapped[str] = mapped_column(Text)
    wechat_msg_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_inbox_messages_user_id_created_at", "user_id", "created_at"),)


class Conversation(Base):
    """One per student: the counters the inbox list shows and WeChat's reply window, kept in the
    same transaction as each inbound message so the list never scans messages."""

    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    status: Mapped[str] = mapped_column(String(8), default=ConversationStatus.OPEN)
    # WeChat's CreateTime of the student's latest message: the 48-hour window runs from here.
    last_student_message_at: Mapped[datetime | None]
    # Customer-service messages queued or sent since that message (WeChat allows 5).
    replies_in_window: Mapped[int] = mapped_column(default=0)
    last_message_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_preview: Mapped[str] = mapped_column(String(120), default="")
    # Messages no staff member has marked read (auto-answered ones do not count).
    unread: Mapped[int] = mapped_column(default=0)
    # Since when a student waits for a person; None when nobody needs to act.
    waiting_since: Mapped[datetime | None]
    assigned_to: Mapped[int | None] = mapped_column(ForeignKey("console_accounts.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_conversations_last_message_at", "last_message_at"),
                      Index("ix_conversations_assigned_to", "assigned_to"))


class StaffReply(CreatedAtMixin, Base):
    """A reply staff wrote: a customer-service message (kind "custom") or, outside the window,
    a template notice (kind "template"). Sent by a job; a failure stays visible with its errcode."""

    __tablename__ = "staff_replies"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("console_accounts.id"))
    kind: Mapped[str] = mapped_column(String(16), default="custom")
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), default=StaffReplyStatus.QUEUED)
    errcode: Mapped[int | None]  # WeChat's errcode of the last failure; None with an error = no answer
    error: Mapped[str | None] = mapped_column(String(300))
    attempts: Mapped[int] = mapped_column(default=0)
    job_id: Mapped[int | None]
    sent_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_staff_replies_conversation_id", "conversation_id"),)


class QuickReply(CreatedAtMixin, Base):
    """A canned answer staff pick in the reply box (the guide's FAQ, edited by staff)."""

    __tablename__ = "quick_replies"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(60))
    body: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(default=0)


class AutoReplyRule(CreatedAtMixin, Base):
    """A keyword rule the webhook answers by itself, within WeChat's 5-second window."""

    __tablename__ = "auto_reply_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    keywords: Mapped[list[str]] = mapped_column(JSON)
    match_mode: Mapped[str] = mapped_column(String(8), default="contains")  # exact, contains
    reply: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(default=True)
    priority: Mapped[int] = mapped_column(default=0)  # higher first
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def as_dict(self) -> dict[str, Any]:
        return {"keywords": list(self.keywords), "match_mode": self.match_mode, "reply": self.reply,
                "enabled": self.enabled, "priority": self.priority}
