"""Inbox messages: what students write to the account (and, later, staff replies)."""
from __future__ import annotations

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAtMixin


class InboxMessage(CreatedAtMixin, Base):
    __tablename__ = "inbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # "in": from the student; "out": a staff reply sent through the customer-service API.
    direction: Mapped[str] = mapped_column(String(3))
    msg_type: Mapped[str] = mapped_column(String(32))
    content: Mapped[str] = mapped_column(Text)
    wechat_msg_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_inbox_messages_user_id_created_at", "user_id", "created_at"),)
