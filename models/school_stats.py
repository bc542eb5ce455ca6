"""The school console's read model: a progress row per student and course, school counters, table exports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from models.status import StudentExportStatus

# A student's stage in a course, one value per row so each filter of the student table is one
# index range: learning (enrolled, not passed), passed (no certificate yet), certified.
STAGES = ("learning", "passed", "certified")


class StudentProgress(Base):
    """What the school console shows of one student in one course, kept up to date by the learning
    and certificate flows in their own transactions (never derived from attempts at read time).
    Per-topic results are stored compactly in `topic_scores` (one list per student, not a row per
    topic): the table, the export and the funnel never need the attempts."""

    __tablename__ = "student_progress"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"))
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    # None once the student erased their data (handlers/privacy/erase.py): the row stays, anonymous,
    # so the school's counters still equal a recount.
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("student_profiles.id"))
    stage: Mapped[str] = mapped_column(String(16), default="learning")
    # The most topics ever finished in order (any round): the funnel counts it, it never goes back.
    topics_done: Mapped[int] = mapped_column(default=0)
    # Passing score per topic position (index 0 = topic 1), None while not passed; the latest pass.
    topic_scores: Mapped[list[Any]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(default=0)  # submitted test attempts, all rounds
    total_score: Mapped[int | None]
    passed_at: Mapped[datetime | None]
    # The last time the student moved forward (enrolled, opened a video, submitted a test):
    # "stuck" students are found by a range on it.
    last_progress_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("user_id", "course_id"),
        Index("ix_student_progress_school_course_stage_profile", "school_id", "course_id", "stage", "profile_id"),
        Index("ix_student_progress_school_course_stage_last", "school_id", "course_id", "stage", "last_progress_at"),
    )


class SchoolStat(Base):
    """One counter of a school: `course_id` 0 for school-wide ones (profiles by status), else per
    course (enrolled, passed, score_sum, certified, topic.<n> finished, cert.<channel>.<paper>).
    Changed by +/- deltas in the transaction of the event; `flask schools recount` rebuilds them."""

    __tablename__ = "school_stats"

    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), primary_key=True)
    course_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(160), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class StudentExport(Base):
    """A school's student table (with its filters) written to XLSX or CSV by a job, with progress."""

    __tablename__ = "student_exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"))
    requested_by: Mapped[str] = mapped_column(String(100))
    file_format: Mapped[str] = mapped_column(String(8))  # xlsx, csv
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=StudentExportStatus.PENDING)
    total: Mapped[int] = mapped_column(default=0)
    done_count: Mapped[int] = mapped_column(default=0)
    file_name: Mapped[str | None] = mapped_column(String(200))  # the name it downloads as
    blob_key: Mapped[str | None] = mapped_column(String(200))  # where the finished file is
    size_bytes: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_student_exports_school_id_id", "school_id", "id"),
    )
