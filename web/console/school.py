"""A school's console pages: the dashboard, the student table and a student's detail, table exports.

A school admin sees their own school; staff pick a school, then see it by `?school=<id>` (404 for
any page but the dashboard without one). Everything is queried by id AND the school's id: another
school's student or export is a 404. Student numbers and phones are masked on these pages; a
student's page shows them in full on a POST that the audit log records (`reveal_student`), and the
table's search term travels by a handle, never in the URL (web.console.searches)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Blueprint, Flask, Response, abort, jsonify, redirect, request, url_for
from flask import session as browser_session
from sqlalchemy import select

from database import get_session
from handlers.audit import Actor, record_audit
from handlers.errors import Refused
from handlers.privacy import masking
from handlers.schools import console, exports
from models import School
from models.console import SCHOOL_ADMIN
from web.blobs import download as blob_download
from web.boundary import on_refused
from web.clock import now
from web.console import (
    STAFF_ROLES,
    console_required,
    current_account,
    current_actor,
    id_value,
    register_nav,
    render_console,
    school_of,
    searches,
)

bp = Blueprint("console_school", __name__, url_prefix="/console/school", template_folder="../templates")

register_nav("学校概览", "console_school.dashboard", (SCHOOL_ADMIN, *STAFF_ROLES), 10)
register_nav("学生", "console_school.students", (SCHOOL_ADMIN,), 11)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


VIEWERS = (SCHOOL_ADMIN, *STAFF_ROLES)


def _school() -> tuple[School, int | None]:
    """The school this request looks at, and the `school` URL parameter that keeps it (staff only)."""
    account = current_account()
    assert account is not None
    if account.role in STAFF_ROLES:
        raw = request.values.get("school", "")
        school_id = id_value(raw)
        school = get_session().get(School, school_id) if school_id is not None else None
        if school is None:
            abort(404)
        return school, school.id
    return school_of(account), None


def _int(name: str) -> int | None:
    return id_value(request.args.get(name))


COURSE_CHOICE = "console_course"


def _chosen_course() -> int | None:
    """The course asked for in the URL (and remembered for the next page), else the last one
    chosen; pick_course falls back to the main course."""
    asked = _int("course")
    if asked is not None:
        browser_session[COURSE_CHOICE] = asked
        return asked
    remembered = browser_session.get(COURSE_CHOICE)
    return remembered if isinstance(remembered, int) else None


def _course() -> tuple[int | None, list[tuple[int, str]]]:
    return console.pick_course(get_session(), _chosen_course())


@bp.get("/")
@console_required(*VIEWERS)
def dashboard() -> Response:
    account = current_account()
    if account is not None and account.role in STAFF_ROLES and not request.args.get("school"):
        return _pick_school()
    school, scope = _school()
    days = max(1, min(365, _int("days") or console.STUCK_DAYS))
    board = console.dashboard(get_session(), school.id, _chosen_course(), now(), days)
    return render_console("console/school/dashboard.html", school=school, scope=scope, board=board,
                          channel_names=console.CHANNEL_NAMES, paper_names=console.PAPER_NAMES)


def _pick_school() -> Response:
    """Staff choose the school to look at (by name); the dashboard then carries ?school=<id>."""
    q = request.args.get("q", "").strip()[:50]
    query = select(School.id, School.name).order_by(School.name).limit(50)
    if q:
        query = query.where(School.name.contains(q, autoescape=True))
    schools = get_session().execute(query).all()
    return render_console("console/school/pick.html", schools=schools, q=q)


def _table_args(filters: console.Filters, course_id: int | None, **extra: Any) -> dict[str, Any]:
    """The table's filters as query-string arguments; the search term as its handle (a name or a
    student number never goes into a URL)."""
    args = {k: v for k, v in filters.as_dict().items()
            if v and k != "q" and not (k == "days" and v == console.STUCK_DAYS)}
    handle = searches.handle_of(filters.q)
    if handle:
        args[searches.HANDLE] = handle
    if course_id:
        args["course"] = course_id
    args.update({k: v for k, v in extra.items() if v is not None})
    return args


@bp.route("/students", methods=["GET", "POST"])
@console_required(*VIEWERS)
def students() -> Response:
    account = current_account()
    if account is not None and account.role in STAFF_ROLES and not request.values.get("school"):
        return _pick_school()  # its `q` is a school's name, searched by GET
    if searches.carries_term():
        # The filter form posts (its search box may hold a student number); the table is a GET.
        return searches.to_handle()
    school, scope = _school()
    session = get_session()
    course_id, courses = _course()
    term = searches.term_of(request.args.get(searches.HANDLE))
    filters = replace(console.Filters.parse(request.args), q=term or "")
    page = console.student_page(session, school.id, course_id, filters, _int("after"), now()) if course_id else \
        console.Page([], None, filters)
    colleges, grades = console.facets(session, school.id)
    return render_console("console/school/students.html", school=school, scope=scope, page=page, filters=filters,
                          course_id=course_id, courses=courses, colleges=colleges, grades=grades,
                          states=console.STATES, exports=exports.exports_of(session, school.id),
                          args=_table_args(filters, course_id, school=scope), next_args=_table_args(
                              filters, course_id, school=scope, after=page.next_after) if page.next_after else None,
                          first_page=bool(_int("after")), formats=exports.FORMATS, search_lost=term is None)


@bp.get("/students/<int:profile_id>")
@console_required(*VIEWERS)
def student(profile_id: int) -> Response:
    school, scope = _school()
    return _student_page(school, scope, profile_id, revealed=False)


@bp.post("/students/<int:profile_id>/reveal")
@console_required(*VIEWERS)
def reveal_student(profile_id: int) -> Response:
    """The student's page with the number and phone in full, on purpose (a POST with the page's CSRF
    token), recorded: who looked at whom, when, which fields; never the values."""
    school, scope = _school()
    return _student_page(school, scope, profile_id, revealed=True)


def _student_page(school: School, scope: int | None, profile_id: int, *, revealed: bool) -> Response:
    session = get_session()
    detail = console.student_detail(session, school.id, profile_id)
    if detail is None:
        abort(404)
    if revealed:
        fields = ["student_number"] + (["phone"] if detail.profile.phone else [])
        masking.record_reveal(session, current_actor(), "student_profile", profile_id, fields, school_id=school.id)
    return render_console("console/school/student.html", school=school, scope=scope, detail=detail,
                          revealed=revealed, status_names=console.STATUS_NAMES, channel_names=console.CHANNEL_NAMES,
                          paper_names=console.PAPER_NAMES)


def _export_refused(refused: Refused, **_: Any) -> Response:
    """No course, an unknown format, too many exports running: a 400 that says which."""
    abort(400, description=refused.message)


@bp.post("/exports")
@console_required(*VIEWERS)
@on_refused(_export_refused)
def export() -> Response:
    account = current_account()
    assert account is not None
    school, scope = _school()
    session = get_session()
    filters = console.Filters.parse(request.form)
    course_id, _ = console.pick_course(session, _form_int("course"))
    if course_id is None:
        raise Refused("no_course", "还没有课程。")
    # The job it enqueues reaches the queue when the boundary commits.
    export = exports.request_export(session, school.id, course_id, f"{account.role}:{account.id}",
                                    request.form.get("format", ""), filters, now=now())
    record_audit(session, Actor.of(account), "school.students_export", "student_export", export.id,
                 school_id=school.id, after={"format": export.file_format, "filters": export.filters})
    return redirect(url_for("console_school.students", **_table_args(filters, course_id, school=scope)) + "#exports")


def _form_int(name: str) -> int | None:
    return id_value(request.form.get(name))


@bp.get("/exports/<int:export_id>")
@console_required(*VIEWERS)
def export_status(export_id: int) -> Response:
    school, scope = _school()
    found = exports.export_of(get_session(), school.id, export_id)
    if found is None:
        abort(404)
    return jsonify(id=found.id, status=found.status, done=found.done_count, total=found.total,
                   download=url_for("console_school.download", export_id=found.id, school=scope)
                   if found.status == "done" else None)


@bp.get("/exports/<int:export_id>/download")
@console_required(*VIEWERS)
def download(export_id: int) -> Response:
    school, scope = _school()
    found = exports.export_of(get_session(), school.id, export_id)
    if found is None or found.status != "done" or not found.blob_key:
        abort(404)
    stamp = found.created_at.strftime("%Y%m%d")
    # The file names every student in full (the export is the on-purpose way to get them): each
    # download is recorded, as its creation was, since another admin of the school may fetch it.
    record_audit(get_session(), current_actor(), "school.students_export_download", "student_export", found.id,
                 school_id=school.id)
    return blob_download(found.blob_key, exports.TYPES[found.file_format],
                         f"{school.name}-学生-{stamp}.{found.file_format}")
