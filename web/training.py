"""The 心委培训 H5 pages: home, profile, course progress, topic video with heartbeats, tests."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request, url_for
from flask import session as cookie
from sqlalchemy import select

from database import get_database, get_session
from handlers.accounts import identity
from handlers.catalog.loader import list_courses
from handlers.errors import Refused
from handlers.learning import enrolment, quiz, watching
from handlers.lectures import delivery
from handlers.privacy import consent
from models import Course, Enrollment, QuizAttempt, School, VideoVersion, WatchSession
from models.base import DB_INT_MAX
from web import fast_heartbeat, lectures
from web.auth import LOGIN_AT, OPENID, _now, csrf_ok, current_user_id, login_required
from web.boundary import on_refused
from web.clock import now
from web.ids import id_value
from web.media import video_url
from web.refusals import json_refusal, refused_page

bp = Blueprint("training", __name__, url_prefix="/h5", template_folder="templates")

STATE_LABELS = {"locked": "未解锁", "watch": "待观看", "test": "待测试", "done": "已完成"}


def _require_csrf() -> None:
    if not csrf_ok():
        abort(400, "页面已过期，请刷新后重试。")


def _enrollment(course_code: str) -> Enrollment:
    return enrolment.enroll(get_session(), current_user_id(), course_code)  # type: ignore[arg-type]


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
        current = enrolment.progress(session, enrollment) if enrollment else None
        courses.append((version, current))
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


def _profile_form() -> identity.ProfileForm:
    return identity.normalize(identity.ProfileForm(
        school_id=id_value(request.form.get("school_id")) or 0, real_name=request.form.get("real_name", ""),
        college=request.form.get("college", ""), student_number=request.form.get("student_number", ""),
        grade=request.form.get("grade", ""), phone=request.form.get("phone", "")))


def _locked_page() -> Any:
    """The confirmed profile, when there is one: after confirmation, no silent edits."""
    existing = identity.profile_of(get_session(), current_user_id())  # type: ignore[arg-type]
    if existing is not None and existing.status != "rejected":
        return render_template("h5/profile_locked.html", profile=existing, message=identity.ProfileLocked.MESSAGE)
    return None


def _profile_page(form: Any, errors: dict[str, str]) -> Any:
    session = get_session()
    existing = identity.profile_of(session, current_user_id())  # type: ignore[arg-type]
    schools = list(session.scalars(select(School).order_by(School.name)))
    return render_template("h5/profile.html", schools=schools, form=form or existing, errors=errors,
                           rejected=existing if existing is not None and existing.status == "rejected" else None,
                           notice=consent.current_notice())


def _consent_errors() -> dict[str, str]:
    """The two boxes beside the form (never ticked for the student): both are needed to be verified
    through the school; each missing one says why."""
    return consent.check_ticked(request.form.get("agree_notice") == "1", request.form.get("agree_sharing") == "1")


def _profile_refused(refusal: Refused) -> Any:
    """The confirm step refused: the form again, the reason beside its field."""
    if isinstance(refusal, identity.ProfileInvalid):
        errors = refusal.errors
    elif isinstance(refusal, identity.NumberTaken):
        errors = {"student_number": refusal.message}
    else:
        errors = {"reason": refusal.message}
    return _profile_page(_profile_form(), errors)


@bp.route("/profile", methods=["GET", "POST"])
@login_required
@on_refused(_profile_refused)
def profile() -> Any:
    """Fill in → see exactly what will be printed → confirm. After that, no silent edits."""
    locked = _locked_page()
    if locked is not None:
        return locked
    if request.method == "GET":
        return _profile_page(None, {})
    _require_csrf()
    session = get_session()
    form = _profile_form()
    step = request.form.get("step")
    errors = identity.check(session, form)
    if step != "edit":
        errors |= _consent_errors()
    if not errors and step == "confirm":
        identity.submit_profile(session, current_user_id(), form, now=now())  # type: ignore[arg-type]
        # In the same transaction as the profile: no profile without the consents it rests on.
        consent.give(session, current_user_id(), (consent.NOTICE, consent.SCHOOL_SHARING), now())  # type: ignore[arg-type]
        return redirect(url_for("training.home"))
    if not errors and step == "preview":
        return render_template("h5/profile_confirm.html", form=form, printed=identity.printed_fields(session, form))
    return _profile_page(form, errors)


@bp.get("/courses/<code>")
@login_required
@on_refused(refused_page(403, no_course=404))
def course(code: str) -> Any:
    current = enrolment.progress(get_session(), _enrollment(code))
    return render_template("h5/course.html", progress=current, labels=STATE_LABELS)


@bp.post("/courses/<code>/restart")
@login_required
@on_refused(refused_page())
def restart(code: str) -> Any:
    _require_csrf()
    enrolment.start_next_round(get_session(), _enrollment(code))
    return redirect(url_for("training.course", code=code))


@bp.get("/courses/<code>/topics/<topic>")
@login_required
@on_refused(refused_page(403))
def topic(code: str, topic: str) -> Any:
    current, state = enrolment.topic_state(get_session(), _enrollment(code), topic)
    # An uploaded lecture's links are signed for the watch session the player opens; a catalog
    # URL goes in the page as before.
    lecture = delivery.published(get_session(), code, topic)
    return render_template("h5/topic.html", progress=current, state=state, lecture=lecture,
                           video_src=None if lecture is not None else video_url(state.topic.video_url),
                           threshold=current.version.watch_threshold)


@bp.post("/api/watch")
@login_required
@on_refused(json_refusal(409))
def api_watch() -> Any:
    """The player opened: resume where the server says, and get a session for heartbeats."""
    _require_csrf()
    enrollment = _enrollment(request.form.get("course", ""))
    watch = watching.start_watch(get_session(), enrollment, request.form.get("topic", ""), now())
    # The heartbeats' credential for this watch session (web/fast_heartbeat.py).
    expires = fast_heartbeat.expiry(cookie[LOGIN_AT], current_app.permanent_session_lifetime.total_seconds(), _now())
    token = fast_heartbeat.issue(current_app, watch.user_id, cookie[OPENID], watch.id, expires)
    return jsonify(watch_id=watch.id, position=watch.position, watched_seconds=watch.watched_seconds,
                   video_seconds=watch.video_seconds, completed=False, beat_token=token, media=_media(watch))


def _media(watch: WatchSession) -> dict[str, Any]:
    """The video this watch session plays: its lecture version's signed links, or the catalog's URL."""
    if watch.video_version_id is None:
        return {"kind": "file"}  # the page's <video> already has it
    version = get_session().get(VideoVersion, watch.video_version_id)
    assert version is not None
    return lectures.media(version, watch.user_id)


@bp.post("/api/watch/media")
@login_required
@on_refused(json_refusal(404))
def api_watch_media() -> Any:
    """Fresh links for a watch session's lecture (the old ones expired while the player waited): the
    same version, so a lecture replaced meanwhile does not change under a student mid-watch."""
    _require_csrf()
    watch_id = id_value(request.form.get("watch_id"))
    watch = get_session().get(WatchSession, watch_id) if watch_id is not None else None
    if watch is None or watch.user_id != current_user_id():
        raise Refused("no_watch", "播放记录不存在。")
    return jsonify(media=_media(watch))


@bp.post("/api/heartbeat")
@login_required
@on_refused(json_refusal(404))
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
    paused, resumed = request.form.get("paused") == "1", request.form.get("resumed") == "1"
    # The relaxed engine, as the fast path (web/fast_heartbeat.py says why).
    beat = watching.heartbeat(get_database().relaxed, current_user_id(), watch_id, seq, position,  # type: ignore[arg-type]
                              now(), paused=paused, resumed=resumed)
    return jsonify(accepted=beat.accepted, position=beat.position, watched_seconds=beat.watched_seconds,
                   completed=beat.completed, reason=beat.reason)


@bp.get("/courses/<code>/topics/<topic>/test")
@login_required
@on_refused(refused_page(403))
def test(code: str, topic: str) -> Any:
    session = get_session()
    attempt = quiz.start_attempt(session, _enrollment(code), topic, now())
    sheet = quiz.paper(session, attempt)
    return render_template("h5/test.html", attempt=attempt, sheet=sheet, code=code)


@bp.post("/attempts/<int:attempt_id>")
@login_required
@on_refused(refused_page(404))
def submit(attempt_id: int) -> Any:
    _require_csrf()
    answers = {key.removeprefix("q"): request.form.getlist(key) for key in request.form if key.startswith("q")}
    quiz.submit_attempt(get_session(), current_user_id(), attempt_id, answers, now())  # type: ignore[arg-type]
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
    current = enrolment.progress(session, enrollment)  # type: ignore[arg-type]
    level, sheet = quiz.review_sheet(session, attempt)
    topic_state = next((t for t in current.topics if t.topic.code == attempt.topic_code), None)
    return render_template("h5/result.html", attempt=attempt, sheet=sheet, level=level, progress=current,
                           topic_state=topic_state, code=course_row.code)  # type: ignore[union-attr]


def no_store(response: Response) -> Response:
    # Pages with a student's data and tests must not be served from a shared cache.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


bp.after_request(no_store)
