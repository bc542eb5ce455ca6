"""Each school's counters and progress rows of its students' learning: kept in each event's transaction, recounted.

Two ways in, chosen by who owns the event:
- Learning (enrolled, opened a video, submitted a test, passed) calls this module from its own
  flows (one line each in enrolment.py, watching.py and quiz.py): the events are ours and a
  test submit is a Core UPDATE no ORM event would see.
- Profiles (pending / verified / rejected, college, grade) and certificates (issued, channel,
  paper payment, superseded, revoked) are followed by a flush listener on the ORM rows
  themselves: approvals, rosters, orders and corrections change them from several modules
  (some still being written), and a counter that depends on every one of them remembering a call
  would drift. A Core UPDATE of those columns bypasses the listener: use the ORM, or call
  `recount` for the school afterwards.

Counters are +/- deltas upserted into `school_stats` in the same transaction, so a rollback takes
them back. `recount` rebuilds everything from the source rows (deploy backfill, repair, tests)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, event, func, inspect, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from models import (
    Certificate,
    Course,
    CourseVersion,
    Enrollment,
    QuizAttempt,
    SchoolStat,
    StudentProfile,
    StudentProgress,
    Topic,
    WatchSession,
)
from models.status import CertificateStatus

SCHOOL_WIDE = 0  # course_id of counters that belong to no course


def _insert(session: Session):  # type: ignore[no-untyped-def]
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def bump(session: Session, deltas: dict[tuple[int, int, str], int]) -> None:
    """Add each delta to its counter (school_id, course_id, name), creating it at 0 first."""
    # In one global order (school, course, name): two transactions bumping the same counters take
    # their row locks in the same sequence and cannot deadlock each other.
    rows = [
        {"school_id": s, "course_id": c, "name": n[:160], "value": v} for (s, c, n), v in sorted(deltas.items()) if v
    ]
    if not rows:
        return
    insert = _insert(session)
    for row in rows:  # one statement each: a multi-row upsert may not touch one key twice on PostgreSQL
        stmt = insert(SchoolStat).values(**row)
        session.execute(stmt.on_conflict_do_update(
            index_elements=[SchoolStat.school_id, SchoolStat.course_id, SchoolStat.name],
            set_={"value": SchoolStat.value + stmt.excluded.value}))


def cert_key(channel: str, paper_status: str | None) -> str:
    return f"cert.{channel}.{paper_status or 'none'}"


# --- learning: called by the flows ----------------------------------------------------------


def _progress_row(session: Session, enrollment: Enrollment) -> StudentProgress | None:
    """The enrollment's progress row; created (and counted) when missing, as for enrollments
    made before the console existed. None when the student has no profile (cannot happen for
    an enrollment, which needs a verified one)."""
    row = session.scalar(select(StudentProgress).where(
        StudentProgress.user_id == enrollment.user_id, StudentProgress.course_id == enrollment.course_id))
    if row is not None:
        return row
    profile = session.scalar(select(StudentProfile).where(StudentProfile.user_id == enrollment.user_id))
    if profile is None:
        return None
    row = StudentProgress(user_id=enrollment.user_id, course_id=enrollment.course_id, school_id=profile.school_id,
                          profile_id=profile.id, stage="learning", topics_done=0, topic_scores=[], attempts=0,
                          last_progress_at=enrollment.created_at)
    session.add(row)
    session.flush()
    bump(session, {(profile.school_id, enrollment.course_id, "enrolled"): 1})
    return row


def enrolled(session: Session, enrollment: Enrollment) -> None:
    """A new enrollment: its row, counted as enrolled, progress dated from now."""
    _progress_row(session, enrollment)


def touched(session: Session, enrollment: Enrollment, at: datetime) -> None:
    """The student moved (opened a video, started over): not stuck since `at`."""
    row = _progress_row(session, enrollment)
    if row is not None and at > row.last_progress_at:
        row.last_progress_at = at


def test_submitted(session: Session, attempt: QuizAttempt) -> None:
    """A counted test submit: one more attempt; a pass records the topic's score and, the first
    time a topic is reached, moves the funnel."""
    enrollment = session.get(Enrollment, attempt.enrollment_id)
    assert enrollment is not None and attempt.submitted_at is not None
    row = _progress_row(session, enrollment)
    if row is None:
        return
    row.attempts += 1
    if attempt.submitted_at > row.last_progress_at:
        row.last_progress_at = attempt.submitted_at
    if not attempt.passed:
        return
    position = session.scalar(select(Topic.position).where(Topic.version_id == attempt.version_id,
                                                           Topic.code == attempt.topic_code))
    if position is None:
        return
    scores = list(row.topic_scores or [])
    scores.extend([None] * (position - len(scores)))
    scores[position - 1] = attempt.score
    row.topic_scores = scores
    if position > row.topics_done:
        bump(
            session, {(row.school_id, row.course_id, f"topic.{k}"): 1 for k in range(row.topics_done + 1, position + 1)}
        )
        row.topics_done = position


def course_passed(session: Session, enrollment: Enrollment) -> None:
    """The enrollment just passed (record_outcome set passed_at and the total)."""
    row = _progress_row(session, enrollment)
    if row is None or row.passed_at is not None:
        return
    row.passed_at, row.total_score = enrollment.passed_at, enrollment.total_score
    if row.stage == "learning":
        row.stage = "passed"
    bump(session, {(row.school_id, row.course_id, "passed"): 1,
                   (row.school_id, row.course_id, "score_sum"): enrollment.total_score or 0})


# --- profiles and certificates: followed on the ORM rows ----------------------------------------

_PROFILE_FIELDS = ("school_id", "status", "college", "grade")
_CERT_FIELDS = ("status", "channel", "paper_status")


def _old_and_new(obj: Any, fields: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Before and after values of `fields` of a dirty row; None when none of them changed."""
    state = inspect(obj)
    before, after, changed = {}, {}, False
    for name in fields:
        history = state.attrs[name].history
        after[name] = getattr(obj, name)
        if history.deleted:
            before[name], changed = history.deleted[0], True
        else:
            before[name] = after[name]
    return (before, after) if changed else None


def _profile_counters(values: dict[str, Any], sign: int, deltas: dict[tuple[int, int, str], int]) -> None:
    school = values["school_id"]
    for key in (f"profiles.{values['status']}", f"college.{values['college']}", f"grade.{values['grade']}"):
        deltas[(school, SCHOOL_WIDE, key)] += sign


def _after_flush(session: Session, flush_context: Any) -> None:
    deltas: dict[tuple[int, int, str], int] = defaultdict(int)
    certificate_keys: dict[tuple[int, int], int] = defaultdict(int)  # (user, course) -> live delta
    cert_changes: list[tuple[Certificate, dict[str, Any] | None, dict[str, Any] | None]] = []
    for obj in session.new:
        if isinstance(obj, StudentProfile):
            _profile_counters({f: getattr(obj, f) for f in _PROFILE_FIELDS}, +1, deltas)
        elif isinstance(obj, Certificate):
            cert_changes.append((obj, None, {f: getattr(obj, f) for f in _CERT_FIELDS}))
    for obj in session.dirty:
        if isinstance(obj, StudentProfile):
            change = _old_and_new(obj, _PROFILE_FIELDS)
            if change:
                _profile_counters(change[0], -1, deltas)
                _profile_counters(change[1], +1, deltas)
        elif isinstance(obj, Certificate):
            change = _old_and_new(obj, _CERT_FIELDS)
            if change:
                cert_changes.append((obj, change[0], change[1]))
    for obj in session.deleted:
        if isinstance(obj, StudentProfile):
            _profile_counters({f: getattr(obj, f) for f in _PROFILE_FIELDS}, -1, deltas)
    if cert_changes:
        schools = dict(session.execute(select(StudentProfile.user_id, StudentProfile.school_id).where(
            StudentProfile.user_id.in_({c.user_id for c, _, _ in cert_changes}))).all())
        for cert, before, after in cert_changes:
            school = schools.get(cert.user_id)
            if school is None:
                continue
            for values, sign in ((before, -1), (after, +1)):
                if values is not None and values["status"] == CertificateStatus.VALID:
                    deltas[(school, cert.course_id, cert_key(values["channel"], values["paper_status"]))] += sign
                    certificate_keys[(cert.user_id, cert.course_id)] += sign
    if not deltas:
        return
    bump(session, deltas)
    # A student is "certified" while a valid certificate exists (a correction swaps versions, a
    # revocation ends it): the stage and the certified counter follow the net change.
    for (user_id, course_id), net in certificate_keys.items():
        if net:
            _set_certified(session, user_id, course_id, net > 0)


def _set_certified(session: Session, user_id: int, course_id: int, certified: bool) -> None:
    row = session.scalar(select(StudentProgress).where(StudentProgress.user_id == user_id,
                                                       StudentProgress.course_id == course_id))
    if row is None:
        return
    stage = "certified" if certified else ("passed" if row.passed_at is not None else "learning")
    if stage == row.stage:
        return
    delta = 1 if certified else -1
    # Inside a flush: a Core UPDATE, not an attribute change the flush in progress would miss.
    session.execute(StudentProgress.__table__.update().where(StudentProgress.__table__.c.id == row.id)
                    .values(stage=stage))
    set_committed_value(row, "stage", stage)
    bump(session, {(row.school_id, course_id, "certified"): delta})


def _active_history(target: Any, value: Any, oldvalue: Any, initiator: Any) -> None:
    """No-op: registered so an expired column's old value is loaded before it is replaced."""


for _attr in (StudentProfile.school_id, StudentProfile.status, StudentProfile.college, StudentProfile.grade,
              Certificate.status, Certificate.channel, Certificate.paper_status):
    event.listen(_attr, "set", _active_history, active_history=True)
event.listen(Session, "after_flush", _after_flush)


def counting() -> bool:
    """Whether the counters follow every flush: code that deletes profiles in bulk (the privacy
    erasure and retention) asserts it, since the deletions' counts come from this hook."""
    return event.contains(Session, "after_flush", _after_flush)


# --- recount ---------------------------------------------------------------------------------


def rebuild_progress(session: Session, school_id: int | None = None, batch: int = 1000) -> int:
    """Rebuild every student_progress row from enrollments, attempts, watches and certificates
    (the deploy backfill; a repair). Returns the number of rows. Three queries per `batch`
    enrollments: a job or the CLI, not a request."""
    progress_t = StudentProgress.__table__
    # Rows whose profile is gone (the student erased their data) cannot be rebuilt from a profile:
    # they stay as they are, anonymous.
    query = delete(progress_t).where(progress_t.c.profile_id.is_not(None))
    if school_id is not None:
        query = query.where(progress_t.c.school_id == school_id)
    session.execute(query)
    for loaded in [o for o in session.identity_map.values() if isinstance(o, StudentProgress)]:
        session.expunge(loaded)  # deleted underneath: their ids may come back for the new rows
    positions = {(v, c): p for v, c, p in session.execute(select(Topic.version_id, Topic.code, Topic.position))}
    enrollments = select(Enrollment, StudentProfile.id, StudentProfile.school_id).join(
        StudentProfile, StudentProfile.user_id == Enrollment.user_id).order_by(Enrollment.id)
    if school_id is not None:
        enrollments = enrollments.where(StudentProfile.school_id == school_id)
    count, last_id = 0, 0
    while True:
        chunk = session.execute(enrollments.where(Enrollment.id > last_id).limit(batch)).all()
        if not chunk:
            break
        last_id = chunk[-1][0].id
        ids = [e.id for e, _, _ in chunk]
        attempts: dict[int, list[Any]] = defaultdict(list)
        for row in session.execute(select(QuizAttempt.enrollment_id, QuizAttempt.version_id, QuizAttempt.topic_code,
                                          QuizAttempt.submitted_at, QuizAttempt.score, QuizAttempt.passed)
                                   .where(QuizAttempt.enrollment_id.in_(ids), QuizAttempt.submitted_at.is_not(None))
                                   .order_by(QuizAttempt.submitted_at, QuizAttempt.id)):
            attempts[row.enrollment_id].append(row)
        watched = dict(session.execute(select(WatchSession.enrollment_id, func.max(WatchSession.started_at))
                                       .where(WatchSession.enrollment_id.in_(ids))
                                       .group_by(WatchSession.enrollment_id)).all())
        live = {(u, c) for u, c in session.execute(select(Certificate.user_id, Certificate.course_id).where(
            Certificate.status == CertificateStatus.VALID, Certificate.user_id.in_([e.user_id for e, _, _ in chunk])))}
        for enrollment, profile_id, school in chunk:
            latest = enrollment.created_at
            scores: list[int | None] = []
            done = 0
            for attempt in attempts[enrollment.id]:
                latest = max(latest, attempt.submitted_at)
                position = positions.get((attempt.version_id, attempt.topic_code))
                if attempt.passed and position is not None:
                    scores.extend([None] * (position - len(scores)))
                    scores[position - 1] = attempt.score
                    done = max(done, position)
            if enrollment.id in watched:
                latest = max(latest, watched[enrollment.id])
            passed = enrollment.passed_at is not None
            stage = ("certified" if (enrollment.user_id, enrollment.course_id) in live
                     else "passed" if passed else "learning")
            session.add(StudentProgress(
                user_id=enrollment.user_id, course_id=enrollment.course_id, school_id=school, profile_id=profile_id,
                stage=stage, topics_done=done, topic_scores=scores, attempts=len(attempts[enrollment.id]),
                total_score=enrollment.total_score if passed else None, passed_at=enrollment.passed_at,
                last_progress_at=latest))
            count += 1
        session.flush()
    return count


def recount(session: Session, school_id: int | None = None) -> int:
    """Rebuild the counters of one school (or all) from the rows they count, in SQL. Returns
    how many counter rows were written."""
    def scoped(query, column):  # type: ignore[no-untyped-def]
        return query if school_id is None else query.where(column == school_id)

    session.execute(scoped(delete(SchoolStat), SchoolStat.school_id))
    rows: list[dict[str, Any]] = []
    p, sp = StudentProfile, StudentProgress
    for field in ("status", "college", "grade"):
        prefix = "profiles." if field == "status" else f"{field}."
        column = getattr(p, field)
        for school, name, n in session.execute(
            scoped(
                select(p.school_id, literal(prefix) + column, func.count()).group_by(p.school_id, column), p.school_id
            )
        ):
            rows.append({"school_id": school, "course_id": SCHOOL_WIDE, "name": name, "value": n})
    by_stage = scoped(
        select(sp.school_id, sp.course_id, sp.stage, func.count(), func.coalesce(func.sum(sp.total_score), 0)).group_by(
            sp.school_id, sp.course_id, sp.stage
        ),
        sp.school_id,
    )
    totals: dict[tuple[int, int, str], int] = defaultdict(int)
    for school, course, stage, n, score_sum in session.execute(by_stage):
        totals[(school, course, "enrolled")] += n
        if stage in ("passed", "certified"):
            totals[(school, course, "passed")] += n
            totals[(school, course, "score_sum")] += score_sum
        if stage == "certified":
            totals[(school, course, "certified")] += n
    # The funnel: how many reached at least topic k = a running sum over topics_done, top down.
    by_done: dict[tuple[int, int], dict[int, int]] = defaultdict(dict)
    for school, course, done, n in session.execute(scoped(
            select(sp.school_id, sp.course_id, sp.topics_done, func.count())
            .where(sp.topics_done > 0).group_by(sp.school_id, sp.course_id, sp.topics_done), sp.school_id)):
        by_done[(school, course)][done] = n
    for (school, course), counts in by_done.items():
        running = 0
        for k in range(max(counts), 0, -1):
            running += counts.get(k, 0)
            totals[(school, course, f"topic.{k}")] = running
    c = Certificate
    # The school from the progress row, not the profile: a student who erased their data has no
    # profile left, and their certificate still counts where it was counted.
    for school, course, channel, paper, n in session.execute(scoped(
            select(sp.school_id, c.course_id, c.channel, c.paper_status, func.count())
            .join(sp, (sp.user_id == c.user_id) & (sp.course_id == c.course_id))
            .where(c.status == CertificateStatus.VALID)
            .group_by(sp.school_id, c.course_id, c.channel, c.paper_status), sp.school_id)):
        totals[(school, course, cert_key(channel, paper))] += n
    rows += [{"school_id": s, "course_id": co, "name": name, "value": v} for (s, co, name), v in totals.items() if v]
    for start in range(0, len(rows), 5000):
        session.execute(SchoolStat.__table__.insert(), rows[start:start + 5000])
    session.flush()
    return len(rows)


def counters(session: Session, school_id: int) -> dict[tuple[int, str], int]:
    """Every counter of a school as {(course_id, name): value}: one index range, a few dozen rows."""
    return {(c, n): v for c, n, v in session.execute(
        select(SchoolStat.course_id, SchoolStat.name, SchoolStat.value).where(SchoolStat.school_id == school_id))}


def courses(session: Session) -> list[tuple[int, str]]:
    """(course id, current title) of every course, for the console's course choice."""
    return [(cid, title) for cid, title in session.execute(
        select(Course.id, CourseVersion.title).join(CourseVersion, (CourseVersion.course_id == Course.id)
                                                    & (CourseVersion.number == Course.current_version))
        .order_by(CourseVersion.display_order, Course.code))]
