"""Learning: enrollments in a course, watching topic videos, and quiz attempts."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAtMixin


class Enrollment(CreatedAtMixin, Base):
    """A student taking a course. `round` counts how many times the topics were started
    over (the course's on_course_failed policy); everything below is kept per round."""

    __tablename__ = "enrollments"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"))
    round: Mapped[int] = mapped_column(default=1)
    passed_at: Mapped[datetime | None]
    total_score: Mapped[int | None]  # the passing round's total, once passed

    __table_args__ = (UniqueConstraint("user_id", "course_id"),)


class WatchSession(Base):
    """One opening of a topic's video player: the watch clock (handlers/learning/watching.py). Progress
    counts only as fast as server time allows in total; only the student's newest session is active."""

    __tablename__ = "watch_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    round: Mapped[int]
    topic_code: Mapped[str] = mapped_column(String(32))
    # The uploaded lecture this player opened (handlers/lectures), or None for a topic whose video
    # is a URL in the catalog. A newer version reaches the student's next open, never this one.
    video_version_id: Mapped[int | None] = mapped_column(ForeignKey("video_versions.id"))
    video_seconds: Mapped[int]
    # The course's watch_threshold and max_playback_rate when the player opened: the rules this
    # viewing is held to.
    threshold: Mapped[float] = mapped_column(default=0.9)
    max_rate: Mapped[float] = mapped_column(default=2.0, server_default="2.0")
    started_at: Mapped[datetime]
    active: Mapped[bool] = mapped_column(default=True)
    last_seq: Mapped[int] = mapped_column(default=0)
    last_beat_at: Mapped[datetime]
    # Server-verified: where the student is, and how many seconds of video they really saw
    # (the furthest verified point: what was seen is always [0, furthest], see watching.py).
    position: Mapped[float] = mapped_column(default=0.0)
    watched_seconds: Mapped[float] = mapped_column(default=0.0)
    # Seconds of video this session may still advance: earned at max_rate per server second,
    # capped, spent by forward progress. Never granted per beat or per session.
    credit: Mapped[float] = mapped_column(default=0.0, server_default="0")
    # The player said it was paused at the last beat: the pause earns no credit.
    paused: Mapped[bool] = mapped_column(default=False, server_default=false())
    completed_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_watch_sessions_enrollment_round_topic", "enrollment_id", "round", "topic_code"),
        Index("ix_watch_sessions_user_id_active", "user_id", "active"),
    )


class QuizAttempt(Base):
    """One sitting of a topic's test: the draw (questions and option order) is stored when it
    starts; grading reads only this row and the catalog version it points into."""

    __tablename__ = "quiz_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    round: Mapped[int]
    topic_code: Mapped[str] = mapped_column(String(32))
    version_id: Mapped[int] = mapped_column(ForeignKey("course_versions.id"))
    # [{"question_id": 12, "options": ["C", "A", "D", "B"]}, ...] in the order shown
    draw: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    started_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    answers: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"12": ["B"], ...}
    score: Mapped[int | None]
    max_score: Mapped[int]
    passed: Mapped[bool | None]

    __table_args__ = (Index("ix_quiz_attempts_enrollment_round_topic", "enrollment_id", "round", "topic_code"),)
