"""The inbound-event log: one row per WeChat delivery, keyed for dedup across hosts."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class InboundEvent(Base):
    """A message or event WeChat delivered, and the reply it got.

    The unique `dedup_key` is inserted in the same transaction as the handler's work,
    so a retried delivery either waits for that transaction and finds the stored
    reply, or (if the first delivery failed and rolled back) runs the handler itself.
    """

    __tablename__ = "inbound_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    openid: Mapped[str] = mapped_column(String(64))
    msg_type: Mapped[str] = mapped_column(String(32))
    event: Mapped[str | None] = mapped_column(String(64))
    event_key: Mapped[str | None] = mapped_column(String(255))
    # WeChat's CreateTime of the delivery.
    sent_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The plaintext reply XML the first delivery produced; retries get the same one.
    reply_xml: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_inbound_events_received_at", "received_at"),)
