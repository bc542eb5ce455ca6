"""The 心委培训 H5 pages: home, profile, course progress, topic video with heartbeats, tests."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request, url_for
from flask import session as cookie
from sqlalchemy import select

from database import get_database, get_session
from handlers import identity, learning, quiz, watching
from handlers.catalog import list_courses
from models import Course, Enrollment, QuizAttempt, School
from models.base import DB_INT_MAX
from web import fast_heartbeat
from web.auth import LOGIN_AT, OPENID, _now, csrf_ok, current_user_id, login_required
from web.clock import now
from web.ids import id_value
from web.media import video_url

bp = Blueprint("training", __name__, url_prefix="/h5", template_folder="templates")

STATE_LABELS = {"locked": "未解锁", "watch": "待观看", "test": "待测试", "done": "已完成"}


def _require_csrf() -> None:
    if not csrf_ok():
        abort(400, "页面已过期，请刷新后重试。")


def _refused(refusal: learning.Refused, status: int = 409) -> tuple[str, int]:
    return render_template("h5/refused.html", refusal=refusal), status


def _enrollment(course_code: str) -> Enrollment:
    return learning.enroll(get_session(), current_user_id(), course_code)  # type: ignore[arg-type]


@bp.get("/")
@login_required
def home() -> str:
    session = get_session()
    user_id = current_user_id()
    profile = identity.profile_of(session, user_id)  # type: ignore[arg-type]
    courses = []
    for version in list_courses(session):
        enrollment = session.scalar(select(Enrollment).join(Course).where(
            Enrollment.user_id == user_id, Course.code == version.course.code))
        current = learning.progress(session, enrollment) if enrollment else None
        courses.append((version, current))
    session.commit()
    in_wechat = "MicroMessenger" in request.headers.get("User-Agent", "")
    return render_template("h5/home.html", profile=profile, courses=courses, in_wechat=in_wechat)


@bp.get("/progress")
@login_required
def my_progress() -> Any:
    """我的 → 学习进度: the progress page of the course the student is taking (the main one
    first); the home page when they have not started any."""
    session = get_session()
    taken = {code for (code,) in session.execute(select(Course.code).join(Enrollment).where(
        Enrollment.user_id == current_user_id()))}
    for version in list_courses(session):
        if version.course.code in taken:
            return redirect(url_for("training.course", code=version.course.code))
    return redirect(url_for("training.home"))


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile() -> Any:
    """Fill in → see exactly what will be printed → confirm. After that, no silent edits."""
    session = get_session()
    user_id = current_user_id()
    existing = identity.profile_of(session, user_id)  # type: ignore[arg-type]
    schools = list(session.scalars(select(School).order_by(School.name)))
    if existing is not None and existing.status != "rejected":
        return render_template("h5/profile_locked.html", profile=existing, message=identity.ProfileLocked.message)
    errors: dict[str, str] = {}
    form = None
    if request.method == "POST":
        _require_csrf()
        school_id = id_value(request.form.get("school_id")) or 0
        form = identity.normalize(identity.ProfileForm(
            school_id=school_id, real_name=request.form.get("real_name", ""), college=request.form.get("college", ""),
            student_number=request.form.get("student_number", ""), grade=request.form.get("grade", ""),
            phone=request.form.get("phone", "")))
        errors = identity.check(session, form)
        step = request.form.get("step")
        if not errors and step == "confirm":
            try:
                identity.submit_profile(session, user_id, form)  # type: ignore[arg-type]
            except identity.NumberTaken as exc:
                errors["student_number"] = exc.message
            except identity.ProfileInvalid as exc:
                errors.update(exc.errors)
            else:
                session.commit()
                return redirect(url_for("training.home"))
        if not errors and step == "preview":
            return render_template("h5/profile_confirm.html", form=form,
                                   printed=identity.printed_fields(session, form))
    return render_template("h5/profile.html", schools=schools, form=form or existing, errors=errors,
                           rejected=existing if existing is not None and existing.status == "rejected" else None)


@bp.get("/courses/<code>")
@login_required
def course(code: str) -> Any:
    session = get_session()
    try:
        enrollment = _enrollment(code)
    except learning.Refused as refusal:
        return _refused(refusal, 404 if refusal.code == "no_course" else 403)
    current = learning.progress(session, enrollment)
    session.commit()
    return render_template("h5/course.html", progress=current, labels=STATE_LABELS)


@bp.post("/courses/<code>/restart")
@login_required
def restart(code: str) -> Any:
    _require_csrf()
    session = get_session()
    try:
        learning.start_next_round(session, _enrollment(code))
    except learning.Refused as refusal:
        return _refused(refusal)
    session.commit()
    return redirect(url_for("training.course", code=code))


@bp.get("/courses/<code>/topics/<topic>")
@login_required
def topic(code: str, topic: str) -> Any:
    session = get_session()
    try:
        enrollment = _enrollment(code)
        current, state = learning.topic_state(session, enrollment, topic)
    except learning.Refused as refusal:
        return _refused(refusal, 403)
    session.commit()
    return render_template("h5/topic.html", progress=current, state=state, video_src=video_url(state.topic.video_url),
                           threshold=current.version.watch_threshold)


@bp.post("/api/watch")
@login_required
def api_watch() -> Any:
    """The player opened: resume where the server says, and get a session for heartbeats."""
    _require_csrf()
    session = get_session()
    try:
        enrollment = _enrollment(request.form.get("course", ""))
        watch = watching.start_watch(session, enrollment, request.form.get("topic", ""), now())
    except learning.Refused as refusal:
        return jsonify(error=refusal.code, message=refusal.message), 409
    session.commit()
    # The heartbeats' credential for this watch session (web/fast_heartbeat.py).
    expires = fast_heartbeat.expiry(cookie[LOGIN_AT], current_app.permanent_session_lifetime.total_seconds(), _now())
    token = fast_heartbeat.issue(current_app, watch.user_id, cookie[OPENID], watch.id, expires)
    return jsonify(watch_id=watch.id, position=watch.position, watched_seconds=watch.watched_seconds,
                   completed=False, beat_token=token)


@bp.post("/api/heartbeat")
@login_required
def api_heartbeat() -> Any:
    """A heartbeat (every ~15 s, on play, pause and pagehide via sendBeacon): form fields
    watch_id, seq, position, csrf_token, and paused=1 / resumed=1 from the player's events."""
    _require_csrf()
    try:
        watch_id, seq = int(request.form["watch_id"]), int(request.form["seq"])
        position = float(request.form["position"])
    except (KeyError, ValueError):
        return jsonify(error="bad_request"), 400
    if not 0 <= position < 86400 or not 0 < seq <= DB_INT_MAX or not 0 < watch_id <= DB_INT_MAX:
        return jsonify(error="bad_request"), 400
    try:
        beat = watching.heartbeat(get_database().engine, current_user_id(), watch_id, seq, position,  # type: ignore[arg-type]
                                  now(), paused=request.form.get("paused") == "1",
                                  resumed=request.form.get("resumed") == "1")
    except learning.Refused as refusal:
        return jsonify(error=refusal.code), 404
    return jsonify(accepted=beat.accepted, position=beat.position, watched_seconds=beat.watched_seconds,
                   completed=beat.completed, reason=beat.reason)


@bp.get("/courses/<code>/topics/<topic>/test")
@login_required
def test(code: str, topic: str) -> Any:
    session = get_session()
    try:
        attempt = quiz.start_attempt(session, _enrollment(code), topic, now())
    except learning.Refused as refusal:
        return _refused(refusal, 403)
    sheet = quiz.paper(session, attempt)
    session.commit()
    return render_template("h5/test.html", attempt=attempt, sheet=sheet, code=code)


@bp.post("/attempts/<int:attempt_id>")
@login_required
def submit(attempt_id: int) -> Any:
    _require_csrf()
    session = get_session()
    answers = {key.removeprefix("q"): request.form.getlist(key) for key in request.form if key.startswith("q")}
    try:
        quiz.submit_attempt(session, current_user_id(), attempt_id, answers, now())  # type: ignore[arg-type]
    except learning.Refused as refusal:
        return _refused(refusal, 404)
    session.commit()
    return redirect(url_for("training.result", attempt_id=attempt_id))


@bp.get("/attempts/<int:attempt_id>")
@login_required
def result(attempt_id: int) -> Any:
    session = get_session()
    attempt = session.scalar(select(QuizAttempt).where(QuizAttempt.id == attempt_id,
                                                       QuizAttempt.user_id == current_user_id()))
    if attempt is None or attempt.submitted_at is None:
        abort(404)
    enrollment = session.get(Enrollment, attempt.enrollment_id)
    course_row = session.get(Course, enrollment.course_id)  # type: ignore[union-attr]
    current = learning.progress(session, enrollment)  # type: ignore[arg-type]
    level, sheet = quiz.review_sheet(session, attempt)
    topic_state = next((t for t in current.topics if t.topic.code == attempt.topic_code), None)
    session.commit()
    return render_template("h5/result.html", attempt=attempt, sheet=sheet, level=level, progress=current,
                           topic_state=topic_state, code=course_row.code)  # type: ignore[union-attr]


def no_store(response: Response) -> Response:
    # Pages with a student's data and tests must not be served from a shared cache.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


bp.after_request(no_store)
