"""Personal data: the privacy notice's versions, the consents given to them, and students' data requests."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from models.status import DataRequestStatus


class PrivacyNotice(Base):
    """One published version of the privacy notice (隐私政策), exactly as students read it: a consent
    names the version, so what a student agreed to can always be shown again."""

    __tablename__ = "privacy_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    # A material change (new purposes, new recipients) asks every student again; a wording fix does not.
    material: Mapped[bool] = mapped_column(default=True)
    effective_on: Mapped[str] = mapped_column(String(10))  # the date the notice states, YYYY-MM-DD
    body: Mapped[str] = mapped_column(Text)  # Markdown-like text, rendered as headed sections
    sha256: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime] = mapped_column(default=utcnow)


class Consent(Base):
    """A student giving or withdrawing one consent, appended and never changed: the latest row per
    user and purpose is the current answer; the earlier ones are its history."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    purpose: Mapped[str] = mapped_column(String(32))  # handlers/privacy/consent.py: notice, school_sharing
    notice_version: Mapped[int]
    granted: Mapped[bool]
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_consents_user_purpose_id", "user_id", "purpose", "id"),)


class DataRequest(Base):
    """A student's request for a copy of their data or for its deletion, with the deadline the notice
    promises; staff see them in a queue and every step is in the audit log."""

    __tablename__ = "data_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # copy, erase
    status: Mapped[str] = mapped_column(String(16), default=DataRequestStatus.PENDING)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    # An erasure runs once this has passed (the cooling-off period in which the student may cancel).
    run_after: Mapped[datetime]
    due_at: Mapped[datetime]  # the latest the notice allows
    finished_at: Mapped[datetime | None]
    handled_by: Mapped[str | None] = mapped_column(String(100))  # staff who acted; None for the system
    # The copy's zip in the blob store until it expires.
    blob_key: Mapped[str | None] = mapped_column(String(200))
    size_bytes: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_data_requests_status_due_at", "status", "due_at"),)
