"""Students' identity: the profile printed on certificates, and the school rosters it is checked against."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAtMixin
from models.status import ProfileStatus, RosterUploadStatus

# A student number is held by one WeChat user while its profile is pending or verified;
# a rejected claim frees it.
HOLDING_STATUSES = "status IN ('pending', 'verified')"


class StudentProfile(CreatedAtMixin, Base):
    """What a student declared (and confirmed) about themselves; certificates print it."""

    __tablename__ = "student_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    real_name: Mapped[str] = mapped_column(String(50))
    college: Mapped[str] = mapped_column(String(100))
    student_number: Mapped[str] = mapped_column(String(32))
    grade: Mapped[str] = mapped_column(String(20))
    # Asked only at a paper certificate's order (the courier calls it); None for everyone else.
    phone: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default=ProfileStatus.PENDING)
    # When the student confirmed "this is what will be printed"; after it, changes go
    # through a correction request to staff, never a silent edit.
    confirmed_at: Mapped[datetime]
    verified_at: Mapped[datetime | None]
    verified_via: Mapped[str | None] = mapped_column(String(16))  # "roster" or "admin"
    reviewed_by: Mapped[str | None] = mapped_column(String(100))
    reject_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("uq_student_profiles_school_number_held", "school_id", "student_number", unique=True,
              postgresql_where=text(HOLDING_STATUSES), sqlite_where=text(HOLDING_STATUSES)),
        Index("ix_student_profiles_school_id_status", "school_id", "status"),
        # The school console's student table: keyset pages by id within a school, per filter.
        Index("ix_student_profiles_school_id_id", "school_id", "id"),
        Index("ix_student_profiles_school_status_id", "school_id", "status", "id"),
        Index("ix_student_profiles_school_college_id", "school_id", "college", "id"),
        Index("ix_student_profiles_school_grade_id", "school_id", "grade", "id"),
    )


class RosterEntry(Base):
    """One line of a school's roster (uploaded by its school admin)."""

    __tablename__ = "roster_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    student_number: Mapped[str] = mapped_column(String(32))
    real_name: Mapped[str] = mapped_column(String(50))
    college: Mapped[str | None] = mapped_column(String(100))
    grade: Mapped[str | None] = mapped_column(String(20))
    phone: Mapped[str | None] = mapped_column(String(20))

    __table_args__ = (UniqueConstraint("school_id", "student_number"),)


class RosterUpload(CreatedAtMixin, Base):
    """One roster file a school admin uploaded: who, when, what it held, and the row-by-row report.
    A job parses and merges it: queued → running → done (report filled in) or failed (error says why)."""

    __tablename__ = "roster_uploads"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("console_accounts.id"))
    uploaded_by: Mapped[str] = mapped_column(String(100))
    file_name: Mapped[str] = mapped_column(String(200))
    # "merge": rows absent from the file are kept; "replace": they are removed.
    mode: Mapped[str] = mapped_column(String(16), default="merge")
    rows: Mapped[int] = mapped_column(default=0)
    accepted: Mapped[int] = mapped_column(default=0)
    fixed: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    added: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    kept: Mapped[int] = mapped_column(default=0)
    removed: Mapped[int] = mapped_column(default=0)
    verified: Mapped[int] = mapped_column(default=0)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Uploads recorded before background processing were merged in the request: "done".
    status: Mapped[str] = mapped_column(String(16), default=RosterUploadStatus.QUEUED,
                                        server_default=RosterUploadStatus.DONE)
    parsed_rows: Mapped[int] = mapped_column(default=0, server_default="0")  # progress while running
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_roster_uploads_school_id_created_at", "school_id", "created_at"),)


class RosterFile(Base):
    """An upload's bytes, from the request until its job has read them (then deleted with this row).
    In the blob store, not on a host's disk: they survive a web-host restart and reach a worker on
    any host."""

    __tablename__ = "roster_files"

    upload_id: Mapped[int] = mapped_column(ForeignKey("roster_uploads.id", ondelete="CASCADE"), primary_key=True)
    blob_key: Mapped[str] = mapped_column(String(200))
    size_bytes: Mapped[int]
