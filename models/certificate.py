"""Certificates: issued versions with their printed snapshot, serial counters, and the audit trail."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from models.status import CertificateExportStatus, CertificateStatus, CorrectionStatus

LIVE = "status = 'valid'"


# A certificate whose holder erased their data keeps its serial, course, score and date, and no
# signature: it signed the name, so the public key would let anyone test guessed names against it.
ERASED_SIGNATURE = "erased"

class SerialCounter(Base):
    """The last serial number handed out in a year. Incremented under a row lock inside the
    issuing transaction, so serials have no gaps (a rolled-back issue gives its number back)
    and no duplicates however many claims run at once."""

    __tablename__ = "serial_counters"

    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_number: Mapped[int] = mapped_column(default=0)


class Certificate(Base):
    """One version of a student's certificate for a course. Never edited: a correction issues a
    new version that supersedes this one; a revocation only changes the status."""

    __tablename__ = "certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"))
    serial: Mapped[str] = mapped_column(String(20))  # readable; kept across versions
    version: Mapped[int] = mapped_column(default=1)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("certificates.id"))
    # Unguessable, one per version: the QR code and the verify link carry it.
    verify_token: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=CertificateStatus.VALID)
    channel: Mapped[str] = mapped_column(String(16), default="electronic")  # electronic, paper, both
    # The paper copy's payment (PaperStatus): None (electronic only), awaiting payment, then paid.
    # The channel may change only while nothing has been paid.
    paper_status: Mapped[str | None] = mapped_column(String(24))
    # The snapshot taken at issue: exactly what is printed and signed.
    holder_name: Mapped[str] = mapped_column(String(50))
    school_name: Mapped[str] = mapped_column(String(100))
    student_number: Mapped[str] = mapped_column(String(32))
    course_title: Mapped[str] = mapped_column(String(100))
    score: Mapped[int]
    issued_on: Mapped[date]
    issuers: Mapped[list[str]] = mapped_column(JSON)
    verify_url: Mapped[str] = mapped_column(String(200))
    signature: Mapped[str] = mapped_column(String(120))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(Text)

    @property
    def holder_erased(self) -> bool:
        """The holder erased their personal data (handlers/privacy/erase.py): no name, no signature."""
        return self.signature == ERASED_SIGNATURE

    __table_args__ = (
        UniqueConstraint("serial", "version"),
        # Staff search by name (prefix) and by student number.
        # varchar_pattern_ops: PostgreSQL serves `LIKE 'prefix%'` from it under any collation.
        Index("ix_certificates_holder_name", "holder_name", postgresql_ops={"holder_name": "varchar_pattern_ops"}),
        Index("ix_certificates_student_number", "student_number"),
        # One live certificate per student and course, whatever races.
        Index("uq_certificates_user_course_live", "user_id", "course_id", unique=True,
              postgresql_where=text(LIVE), sqlite_where=text(LIVE)),
        # Every version of a student's certificates (the school console's student page).
        Index("ix_certificates_user_id", "user_id"),
    )


class CertificateEvent(Base):
    """Append-only: who did what to which certificate, when and why."""

    __tablename__ = "certificate_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"))
    action: Mapped[str] = mapped_column(String(32))  # issued, superseded, revoked, ...
    actor: Mapped[str] = mapped_column(String(100))  # "student:12", "staff:wang", ...
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_certificate_events_certificate_id", "certificate_id"),)


class CertificateFile(Base):
    """The rendered PDF and PNG of one certificate version, stored at issue: re-rendering later
    (a new template, a new library) never changes what was issued. The bytes are in the blob
    store under `blob_key` (written before this row, so a row never points at nothing)."""

    __tablename__ = "certificate_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"))
    kind: Mapped[str] = mapped_column(String(8))  # "pdf" or "png"
    blob_key: Mapped[str] = mapped_column(String(200))
    size_bytes: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("certificate_id", "kind"),)


class CorrectionRequest(Base):
    """A student's request to fix what a certificate prints (the guide: "contact staff");
    approving it issues a new version, rejecting it keeps the reason for the student."""

    __tablename__ = "correction_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # Only printed fields: {"holder_name": "...", "student_number": "..."}
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=CorrectionStatus.PENDING)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decision_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_correction_requests_status", "status"),)


class CertificateExport(Base):
    """A zip of many certificates' PDFs (a school, a period), built by a job with progress."""

    __tablename__ = "certificate_exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    requested_by: Mapped[str] = mapped_column(String(100))  # "staff:wang", "school_admin:3"
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"))
    issued_from: Mapped[date | None]
    issued_until: Mapped[date | None]
    status: Mapped[str] = mapped_column(String(16), default=CertificateExportStatus.PENDING)
    total: Mapped[int] = mapped_column(default=0)
    done_count: Mapped[int] = mapped_column(default=0)
    file_name: Mapped[str | None] = mapped_column(String(200))  # the name it downloads as
    blob_key: Mapped[str | None] = mapped_column(String(200))  # where the finished zip is
    size_bytes: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
