"""The course catalog: courses, their immutable versions, topics and questions."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow


class Course(Base):
    """A course by its stable code; what students see is its current version."""

    __tablename__ = "courses"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    current_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    versions: Mapped[list[CourseVersion]] = relationship(back_populates="course", order_by="CourseVersion.number")


class CourseVersion(Base):
    """One loaded catalog file. Never changed after loading: attempts point into it."""

    __tablename__ = "course_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id"))
    number: Mapped[int]
    # sha256 of the parsed content (not the file bytes): comments and layout make no version.
    content_hash: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    pass_mark: Mapped[int]
    topic_pass_percent: Mapped[int]
    on_topic_failed: Mapped[str] = mapped_column(String(32))
    on_course_failed: Mapped[str] = mapped_column(String(32))
    watch_threshold: Mapped[float]
    # The fastest playback the player offers; the watch clock never credits more.
    max_playback_rate: Mapped[float] = mapped_column(default=2.0, server_default="2.0")
    # What a submitted test's result page shows (handlers/learning/quiz.py REVIEW_*): after a failed
    # attempt, which questions were wrong or the score only; the right answers and explanations
    # once the topic is passed, or never.
    review_on_fail: Mapped[str] = mapped_column(String(32), default="wrong_questions",
                                                server_default="wrong_questions")
    review_answers: Mapped[str] = mapped_column(String(32), default="after_pass", server_default="after_pass")
    # Where the course stands in every list (students' and consoles'): the main course first.
    display_order: Mapped[int] = mapped_column(default=100, server_default="100")
    source: Mapped[str] = mapped_column(String(200))
    loaded_at: Mapped[datetime] = mapped_column(default=utcnow)

    course: Mapped[Course] = relationship(back_populates="versions")
    topics: Mapped[list[Topic]] = relationship(back_populates="version", order_by="Topic.position")

    __table_args__ = (
        UniqueConstraint("course_id", "number"),
        UniqueConstraint("course_id", "content_hash"),
    )


class Topic(Base):
    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("course_versions.id"))
    position: Mapped[int]  # 1-based teaching order
    # Stable across versions: a student's progress follows the code, not the row.
    code: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(100))
    summary: Mapped[str] = mapped_column(Text)
    video_url: Mapped[str] = mapped_column(String(500))
    video_seconds: Mapped[int]
    # How many of the topic's questions one test draws (None: all of them). A retake draws the
    # questions seen least often first.
    test_questions: Mapped[int | None]

    version: Mapped[CourseVersion] = relationship(back_populates="topics")
    questions: Mapped[list[Question]] = relationship(back_populates="topic", order_by="Question.position")

    __table_args__ = (
        UniqueConstraint("version_id", "code"),
        UniqueConstraint("version_id", "position"),
    )


class Question(Base):
    __tablename__ = "questions"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"))
    position: Mapped[int]
    code: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))  # "single", "multiple", "judge"
    points: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    # [{"key": "A", "text": "..."}], in the file's order; attempts store their own shuffle.
    options: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # The answer key: never sent to a browser.
    answer: Mapped[list[str]] = mapped_column(JSON)
    explanation: Mapped[str] = mapped_column(Text)

    topic: Mapped[Topic] = relationship(back_populates="questions")

    __table_args__ = (UniqueConstraint("topic_id", "code"),)
