"""Schools: the universities whose students train here."""
from __future__ import annotations

from sqlalchemy import String, false
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAtMixin


class School(CreatedAtMixin, Base):
    __tablename__ = "schools"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Where paper certificates are mailed; maintained by staff.
    address: Mapped[str | None] = mapped_column(String(300))
    # Billing, maintained by staff: who the school's invoices name, and whether the school pays
    # for its students' electronic certificates (the guide: "electronic (school pays)").
    billing_name: Mapped[str | None] = mapped_column(String(100))
    billing_tax_id: Mapped[str | None] = mapped_column(String(32))
    billing_contact: Mapped[str | None] = mapped_column(String(100))
    pays_electronic: Mapped[bool] = mapped_column(default=False, server_default=false())
