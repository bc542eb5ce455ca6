"""Rate-limit events: one row per counted action, shared by every host through the database."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class RateEvent(Base):
    """One counted action (a public lookup, a payment refresh) by one key (a hashed address or a
    user). Old rows are pruned by housekeeping; nothing here names a person in clear."""

    __tablename__ = "rate_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    bucket: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]

    __table_args__ = (Index("ix_rate_events_bucket_key_at", "bucket", "key", "at"),
                      Index("ix_rate_events_at", "at"))
