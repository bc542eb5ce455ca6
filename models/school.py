"""Schools: the universities whose students train here."""
from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAtMixin


class School(CreatedAtMixin, Base):
    __tablename__ = "schools"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Where paper certificates are mailed; maintained by staff.
    address: Mapped[str | None] = mapped_column(String(300))
