"""What a school admin reads: the dashboard, the student table and one student's detail."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from handlers.catalog.loader import current_version
from handlers.learning import enrolment, school_progress
from handlers.privacy.consent import SCHOOL_SHARING
from models import Certificate, Consent, Course, Enrollment, QuizAttempt, StudentProfile, StudentProgress, Topic
from models.status import PaperStatus, ProfileStatus

PAGE_SIZE = 50
STUCK_DAYS = 7
# The table's state filter: profile statuses, then the learning stages of the chosen course.
STATES = {
    ProfileStatus.PENDING: "待审核", ProfileStatus.REJECTED: "未通过认证", ProfileStatus.VERIFIED: "已认证",
    "not_started": "已认证未开始", "learning": "学习中", "stuck": "停滞", "passed": "已通过未领证",
    "certified": "已领证",
}
STATUS_NAMES = {ProfileStatus.PENDING: "待审核", ProfileStatus.VERIFIED: "已认证", ProfileStatus.REJECTED: "未通过"}
STAGE_NAMES = {"learning": "学习中", "passed": "已通过", "certified": "已领证"}
CHANNEL_NAMES = {"electronic": "电子版", "paper": "纸质版", "both": "电子版+纸质版"}
PAPER_NAMES = {"none": "无需支付", PaperStatus.AWAITING_PAYMENT: "待支付", PaperStatus.PAID: "已支付"}


# --- dashboard --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    course_id: int
    courses: list[tuple[int, str]]
    profiles: dict[str, int]  # status -> count
    enrolled: int
    passed: int
    certified: int
    average_score: float | None  # of the passed students' totals
    funnel: list[tuple[int, str, int]]  # (position, topic title, students who finished it)
    certificates: list[tuple[str, str, int]]  # (channel, paper state, count)
    stuck: int
    stuck_days: int

    @property
    def not_started(self) -> int:
        return max(0, self.profiles.get(ProfileStatus.VERIFIED, 0) - self.enrolled)

    @property
    def funnel_top(self) -> int:
        return max([self.enrolled] + [n for _, _, n in self.funnel]) or 1


def pick_course(session: Session, requested: int | None) -> tuple[int | None, list[tuple[int, str]]]:
    courses = school_progress.courses(session)
    ids = [cid for cid, _ in courses]
    if requested in ids:
        return requested, courses
    return (ids[0] if ids else None), courses


def stuck_cutoff(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)


def dashboard(session: Session, school_id: int, course_id: int | None, now: datetime,
              stuck_days: int = STUCK_DAYS) -> Dashboard:
    """Counters (one index range of school_stats), the topic titles, and one indexed count of
    the stuck: nothing here grows with the school's size except that last range."""
    course_id, courses = pick_course(session, course_id)
    counts = school_progress.counters(session, school_id)
    profiles = {k.split(".", 1)[1]: v for (c, k), v in counts.items() if c == school_progress.SCHOOL_WIDE
                and k.startswith("profiles.")}
    funnel: list[tuple[int, str, int]] = []
    certificates: list[tuple[str, str, int]] = []
    stuck = 0
    mine: dict[str, int] = {}
    if course_id is not None:
        mine = {k: v for (c, k), v in counts.items() if c == course_id}
        course = session.get(Course, course_id)
        version = current_version(session, course.code) if course else None
        titles = [(t.position, t.title) for t in session.execute(
            select(Topic.position, Topic.title).where(Topic.version_id == version.id).order_by(Topic.position))
        ] if version else []
        funnel = [(pos, title, mine.get(f"topic.{pos}", 0)) for pos, title in titles]
        certificates = sorted(((k.split(".")[1], k.split(".")[2], v) for k, v in mine.items()
                               if k.startswith("cert.") and v), key=lambda r: (r[0], r[1]))
        stuck = session.scalar(select(func.count()).select_from(StudentProgress).where(
            StudentProgress.school_id == school_id, StudentProgress.course_id == course_id,
            StudentProgress.stage == "learning",
            StudentProgress.last_progress_at < stuck_cutoff(now, stuck_days))) or 0
    passed = mine.get("passed", 0)
    return Dashboard(
        course_id=course_id or 0, courses=courses, profiles=profiles, enrolled=mine.get("enrolled", 0),
        passed=passed, certified=mine.get("certified", 0),
        average_score=round(mine.get("score_sum", 0) / passed, 1) if passed else None,
        funnel=funnel, certificates=certificates, stuck=stuck, stuck_days=stuck_days)


def facets(session: Session, school_id: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Colleges and grades of the school's students with their counts (maintained counters)."""
    colleges, grades = [], []
    for (course, name), value in school_progress.counters(session, school_id).items():
        if course != school_progress.SCHOOL_WIDE or value <= 0:
            continue
        if name.startswith("college."):
            colleges.append((name[8:], value))
        elif name.startswith("grade."):
            grades.append((name[6:], value))
    return sorted(colleges), sorted(grades)


# --- the student table -----------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    college: str = ""
    grade: str = ""
    state: str = ""
    q: str = ""
    stuck_days: int = STUCK_DAYS

    @classmethod
    def parse(cls, args: Any) -> Filters:
        state = args.get("state", "")
        try:
            days = max(1, min(365, int(args.get("days", STUCK_DAYS))))
        except (TypeError, ValueError):
            days = STUCK_DAYS
        return cls(college=args.get("college", "")[:100], grade=args.get("grade", "")[:20],
                   state=state if state in STATES else "", q=args.get("q", "").strip()[:50], stuck_days=days)

    def as_dict(self) -> dict[str, Any]:
        return {"college": self.college, "grade": self.grade, "state": self.state, "q": self.q,
                "days": self.stuck_days}


WITHHELD = "（已撤回向学校共享）"


@dataclass(frozen=True)
class StudentRow:
    id: int
    real_name: str
    student_number: str
    college: str
    grade: str
    status: str
    stage: str | None
    topics_done: int
    topic_scores: list[Any]
    attempts: int
    total_score: int | None
    last_progress_at: datetime | None
    # The student withdrew sharing with the school (handlers/privacy/consent.py): counted, not named.
    withheld: bool = False

    @property
    def state_name(self) -> str:
        if self.status != ProfileStatus.VERIFIED:
            return STATUS_NAMES.get(self.status, self.status)
        return STAGE_NAMES.get(self.stage or "", "未开始")


@dataclass
class Page:
    rows: list[StudentRow]
    next_after: int | None  # the last id shown, when there is more
    filters: Filters = field(default_factory=Filters)


_COLUMNS = (StudentProfile.id, StudentProfile.real_name, StudentProfile.student_number, StudentProfile.college,
            StudentProfile.grade, StudentProfile.status, StudentProgress.stage, StudentProgress.topics_done,
            StudentProgress.topic_scores, StudentProgress.attempts, StudentProgress.total_score,
            StudentProgress.last_progress_at)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def table_query(school_id: int, course_id: int, filters: Filters, now: datetime):  # type: ignore[no-untyped-def]
    """The table's rows in id order. Each state filter is driven by an index that starts with
    the school and ends with the id, so a keyset page reads about one page of index entries:
    profiles by (school, [status|college|grade], id), learning stages by the progress rows'
    (school, course, stage, profile_id)."""
    p, sp = StudentProfile, StudentProgress
    joined = and_(sp.user_id == p.user_id, sp.course_id == course_id)
    state = filters.state
    if state in ("learning", "passed", "certified", "stuck"):
        query = select(*_COLUMNS).select_from(sp).join(p, p.id == sp.profile_id).where(
            sp.school_id == school_id, sp.course_id == course_id,
            sp.stage == ("learning" if state == "stuck" else state))
        if state == "stuck":
            query = query.where(sp.last_progress_at < stuck_cutoff(now, filters.stuck_days))
        order = sp.profile_id
    else:
        query = select(*_COLUMNS).select_from(p).outerjoin(sp, joined).where(p.school_id == school_id)
        if state in (ProfileStatus.PENDING, ProfileStatus.REJECTED, ProfileStatus.VERIFIED):
            query = query.where(p.status == state)
        elif state == "not_started":
            # An anti-join probing the progress rows' unique (user, course) index per profile.
            started = aliased(StudentProgress)
            query = query.where(p.status == ProfileStatus.VERIFIED, ~select(started.id).where(
                started.user_id == p.user_id, started.course_id == course_id).correlate(p).exists())
        order = p.id
    return _profile_filters(query, filters), order


def student_page(session: Session, school_id: int, course_id: int, filters: Filters, after: int | None,
                 now: datetime, limit: int = PAGE_SIZE) -> Page:
    """One keyset page (ids greater than `after`), never an OFFSET: page 800 costs what page 1 does."""
    if filters.state in STAGE_FILTERS:
        rows = _stage_rows(session, school_id, course_id, filters, after, now, limit + 1)
    else:
        query, order = table_query(school_id, course_id, filters, now)
        if after:
            query = query.where(order > after)
        rows = [StudentRow(*r) for r in session.execute(query.order_by(order).limit(limit + 1))]
    more = len(rows) > limit
    rows = _withhold(session, rows[:limit])
    return Page(rows, rows[-1].id if more and rows else None, filters)


def withdrawn_sharing(session: Session, profile_ids: list[int]) -> set[int]:
    """Which of these profiles' students withdrew sharing with their school: their latest answer to
    that consent is no (one correlated lookup per row on the consents' (user, purpose, id) index)."""
    if not profile_ids:
        return set()
    return set(session.scalars(select(StudentProfile.id).where(StudentProfile.id.in_(profile_ids),
                                                               sharing_answer().is_(False))))


def sharing_answer():  # type: ignore[no-untyped-def]
    """A profile's student's latest answer to sharing with the school (NULL when never asked: the
    students verified before the notice existed, who are asked on their next visit)."""
    return select(Consent.granted).where(Consent.user_id == StudentProfile.user_id,
                                         Consent.purpose == SCHOOL_SHARING) \
        .order_by(Consent.id.desc()).limit(1).correlate(StudentProfile).scalar_subquery()


def _withhold(session: Session, rows: list[StudentRow]) -> list[StudentRow]:
    """Rows of students who withdrew sharing: still a row (the counts stay true), with nothing that
    names them or details their learning (the notice promises exactly this)."""
    hidden = withdrawn_sharing(session, [r.id for r in rows])
    return [StudentRow(r.id, WITHHELD, "", "", "", r.status, r.stage, 0, [], 0, None, None, withheld=True)
            if r.id in hidden else r for r in rows]


STAGE_FILTERS = ("learning", "passed", "certified", "stuck")
STAGE_BATCH = 500  # progress rows read per step when profile filters may drop some


def _stage_rows(session: Session, school_id: int, course_id: int, filters: Filters, after: int | None,
                now: datetime, wanted: int) -> list[StudentRow]:
    """A learning-stage page in two plain steps instead of one join: the next profile ids from the
    progress rows' (school, course, stage, profile_id) index, then those profiles (with the college,
    grade or search filters) by primary key. A join here let PostgreSQL pick a merge join that walks
    the whole profiles primary key (every school's students) when a filter matched few; this way
    the work is bounded by the school's own rows whatever the planner thinks."""
    sp, p = StudentProgress, StudentProfile
    narrowed = bool(filters.college or filters.grade or filters.q)
    batch = STAGE_BATCH if narrowed else wanted
    ids_query = select(sp.profile_id).where(sp.school_id == school_id, sp.course_id == course_id,
                                            sp.stage == ("learning" if filters.state == "stuck" else filters.state))
    if filters.state == "stuck":
        ids_query = ids_query.where(sp.last_progress_at < stuck_cutoff(now, filters.stuck_days))
    cursor = after or 0
    rows: list[StudentRow] = []
    while len(rows) < wanted:
        ids = list(session.scalars(ids_query.where(sp.profile_id > cursor).order_by(sp.profile_id).limit(batch)))
        if not ids:
            break
        query = select(*_COLUMNS).select_from(p).join(sp, and_(sp.user_id == p.user_id, sp.course_id == course_id)) \
            .where(p.id.in_(ids), p.school_id == school_id)
        query = _profile_filters(query, filters)
        rows += [StudentRow(*r) for r in session.execute(query.order_by(p.id))]
        cursor = ids[-1]
        if len(ids) < batch:
            break
    return rows[:wanted]


def _profile_filters(query, filters: Filters):  # type: ignore[no-untyped-def]
    p = StudentProfile
    if filters.college:
        query = query.where(p.college == filters.college)
    if filters.grade:
        query = query.where(p.grade == filters.grade)
    if filters.q:
        like = _escape_like(filters.q)
        query = query.where(or_(p.real_name.like(f"%{like}%", escape="\\"),
                                p.student_number.like(f"{like}%", escape="\\")))
    return query


def count_rows(session: Session, school_id: int, course_id: int, filters: Filters, now: datetime) -> int:
    query, _ = table_query(school_id, course_id, filters, now)
    return session.scalar(select(func.count()).select_from(query.subquery())) or 0


# --- one student -----------------------------------------------------------------------------


@dataclass
class CourseDetail:
    title: str
    progress: enrolment.Progress
    row: StudentProgress | None
    attempts: list[QuizAttempt]
    titles: dict[str, str]


@dataclass
class StudentDetail:
    profile: StudentProfile
    courses: list[CourseDetail]
    certificates: list[Certificate]


def student_detail(session: Session, school_id: int, profile_id: int) -> StudentDetail | None:
    """A student of this school (None for anyone else's: the page is a 404)."""
    profile = session.scalar(select(StudentProfile).where(StudentProfile.id == profile_id,
                                                          StudentProfile.school_id == school_id))
    if profile is None or withdrawn_sharing(session, [profile.id]):
        return None
    courses = []
    for enrollment in session.scalars(select(Enrollment).where(Enrollment.user_id == profile.user_id)
                                      .order_by(Enrollment.course_id)):
        current = enrolment.progress(session, enrollment)
        attempts = list(session.scalars(select(QuizAttempt).where(
            QuizAttempt.enrollment_id == enrollment.id, QuizAttempt.submitted_at.is_not(None))
            .order_by(QuizAttempt.submitted_at.desc(), QuizAttempt.id.desc()).limit(200)))
        row = session.scalar(select(StudentProgress).where(StudentProgress.user_id == profile.user_id,
                                                           StudentProgress.course_id == enrollment.course_id))
        titles = {t.topic.code: t.topic.title for t in current.topics}
        courses.append(CourseDetail(current.version.title, current, row, attempts, titles))
    certificates = list(session.scalars(select(Certificate).where(Certificate.user_id == profile.user_id)
                                        .order_by(Certificate.id.desc())))
    return StudentDetail(profile, courses, certificates)
