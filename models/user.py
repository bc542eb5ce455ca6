"""Users: one row per WeChat openid that has talked to the official account."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAtMixin


class User(CreatedAtMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), unique=True)
    # Whether the user follows the account now; template messages need it (43004).
    subscribed: Mapped[bool] = mapped_column(default=False)
    subscribed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    # From /cgi-bin/user/info, synced by a job after each subscribe (WeChat no longer
    # shares nickname or avatar): unionid links a future mini program to the same person.
    unionid: Mapped[str | None] = mapped_column(String(64))
    subscribe_scene: Mapped[str | None] = mapped_column(String(32))
    synced_at: Mapped[datetime | None]
    # 退出登录 on any device ends every H5 sign-in made before this moment (the sessions are
    # signed cookies: this is where the server takes them back).
    signed_out_at: Mapped[datetime | None]
