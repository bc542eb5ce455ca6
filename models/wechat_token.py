"""The shared token store: access_token and jsapi_ticket, one row each, for every host."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class WeChatToken(Base):
    __tablename__ = "wechat_tokens"

    # e.g. "access_token:wx123" or "jsapi_ticket:wx123"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
