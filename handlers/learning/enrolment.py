"""Learning progress: enrolling in a course, topics unlocking in order, the total, and starting over."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers.accounts.identity import profile_of
from handlers.catalog.loader import current_version, test_points
from handlers.errors import Refused
from handlers.learning import school_progress
from models import Course, CourseVersion, Enrollment, QuizAttempt, Topic, WatchSession
from models.status import ProfileStatus


@dataclass(frozen=True)
class TopicState:
    topic: Topic
    state: str  # "locked", "watch", "test", "done"
    score: int | None  # the passing attempt's score once done, else the last attempt's
    max_score: int
    attempts: int


@dataclass(frozen=True)
class Progress:
    enrollment: Enrollment
    version: CourseVersion
    topics: list[TopicState]
    total: int  # sum of the done topics' scores
    state: str  # "learning", "passed", "round_failed"

    @property
    def next_topic(self) -> TopicState | None:
        return next((t for t in self.topics if t.state in ("watch", "test")), None)


def require_verified(session: Session, user_id: int) -> None:
    profile = profile_of(session, user_id)
    if profile is None:
        raise Refused("no_profile", "请先完善个人信息并完成身份认证。")
    if profile.status == ProfileStatus.PENDING:
        raise Refused("pending", "身份认证正在等待学校老师审核，审核通过后即可开始学习。")
    if profile.status == ProfileStatus.REJECTED:
        raise Refused("rejected", f"身份认证未通过：{profile.reject_reason or ''}。请修改个人信息后重新提交。")


def enroll(session: Session, user_id: int, course_code: str) -> Enrollment:
    """The student's enrollment in the course, created on first entry (verified students only)."""
    require_verified(session, user_id)
    course = session.scalar(select(Course).where(Course.code == course_code))
    if course is None:
        raise Refused("no_course", "没有这门课程。")
    mine = (Enrollment.user_id == user_id, Enrollment.course_id == course.id)
    enrollment = session.scalar(select(Enrollment).where(*mine))
    if enrollment is None:
        try:
            with session.begin_nested():  # two first entries at once (two tabs): one enrollment
                enrollment = Enrollment(user_id=user_id, course_id=course.id, round=1)
                session.add(enrollment)
                session.flush()
                school_progress.enrolled(session, enrollment)
        except IntegrityError:
            enrollment = session.scalar(select(Enrollment).where(*mine))
            if enrollment is None:
                raise
    return enrollment


def progress(session: Session, enrollment: Enrollment) -> Progress:
    """Each topic's state in the current round, derived from what was watched and answered."""
    course = session.get(Course, enrollment.course_id)
    assert course is not None
    version = current_version(session, course.code, questions=False)
    assert version is not None
    points = test_points(session, version)
    attempts = list(session.scalars(
        select(QuizAttempt).where(QuizAttempt.enrollment_id == enrollment.id, QuizAttempt.round == enrollment.round,
                                  QuizAttempt.submitted_at.is_not(None))
        .order_by(QuizAttempt.submitted_at, QuizAttempt.id)))
    watched: dict[str, datetime] = {}
    for code, completed in session.execute(
            select(WatchSession.topic_code, WatchSession.completed_at)
            .where(WatchSession.enrollment_id == enrollment.id, WatchSession.round == enrollment.round,
                   WatchSession.completed_at.is_not(None))):
        watched[code] = max(completed, watched.get(code, completed))
    by_topic: dict[str, list[QuizAttempt]] = {}
    for attempt in attempts:
        by_topic.setdefault(attempt.topic_code, []).append(attempt)

    states: list[TopicState] = []
    unlocked = True
    total = 0
    for topic in version.topics:
        mine = by_topic.get(topic.code, [])
        last = mine[-1] if mine else None
        max_score = points[topic.code]
        if not unlocked:
            state = "locked"
        elif last is not None and last.passed:
            state = "done"
        elif topic.code not in watched or (
                last is not None and version.on_topic_failed == "rewatch" and watched[topic.code] < last.submitted_at):
            state = "watch"  # never watched, or failed since the last full watch
        else:
            state = "test"
        if state == "done":
            total += last.score or 0  # type: ignore[union-attr]
        unlocked = state == "done"
        states.append(TopicState(topic, state, last.score if last else None, max_score, len(mine)))
    if all(t.state == "done" for t in states):
        course_state = "passed" if total >= version.pass_mark else "round_failed"
    else:
        course_state = "learning"
    return Progress(enrollment, version, states, total, course_state)


def topic_state(session: Session, enrollment: Enrollment, topic_code: str) -> tuple[Progress, TopicState]:
    current = progress(session, enrollment)
    for state in current.topics:
        if state.topic.code == topic_code:
            if state.state == "locked":
                raise Refused("locked", "请按顺序学习：先完成前面的专题。")
            return current, state
    raise Refused("no_topic", "没有这个专题。")


def record_outcome(session: Session, enrollment: Enrollment, *, now: datetime) -> Progress:
    """After a test: mark the enrollment passed when every topic is done at the pass mark."""
    current = progress(session, enrollment)
    if current.state == "passed" and enrollment.passed_at is None:
        enrollment.passed_at = now
        enrollment.total_score = current.total
        session.flush()
        school_progress.course_passed(session, enrollment)
    return current


def start_next_round(session: Session, enrollment: Enrollment) -> Enrollment:
    """Total under the pass mark after every topic: the topics are done again (nothing is deleted)."""
    current = progress(session, enrollment)
    if current.state != "round_failed":
        raise Refused("not_failed", "当前无需重新学习。")
    enrollment.round += 1
    session.flush()
    return enrollment
