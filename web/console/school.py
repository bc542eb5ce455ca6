"""A school admin's console pages: the dashboard, the student table and a student's detail, table exports."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, redirect, request, send_file, url_for

from handlers import school_console as console
from handlers.learning import Refused
from models.console import SCHOOL_ADMIN
from web.clock import now
from web.console import console_required, current_account, register_nav, render_console, school_of
from web.database import get_session

bp = Blueprint("console_school", __name__, url_prefix="/console/school", template_folder="../templates")

register_nav("学校概览", "console_school.dashboard", (SCHOOL_ADMIN,), 10)
register_nav("学生", "console_school.students", (SCHOOL_ADMIN,), 11)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _int(name: str) -> int | None:
    try:
        return int(request.args.get(name, ""))
    except ValueError:
        return None


def _course() -> tuple[int | None, list[tuple[int, str]]]:
    return console.pick_course(get_session(), _int("course"))


@bp.get("/")
@console_required(SCHOOL_ADMIN)
def dashboard() -> Response:
    school = school_of(current_account())  # type: ignore[arg-type]
    days = max(1, min(365, _int("days") or console.STUCK_DAYS))
    board = console.dashboard(get_session(), school.id, _int("course"), now(), days)
    return render_console("console/school/dashboard.html", school=school, board=board,
                          channel_names=console.CHANNEL_NAMES, paper_names=console.PAPER_NAMES)


def _table_args(filters: console.Filters, course_id: int | None, **extra: Any) -> dict[str, Any]:
    args = {k: v for k, v in filters.as_dict().items() if v and not (k == "days" and v == console.STUCK_DAYS)}
    if course_id:
        args["course"] = course_id
    args.update(extra)
    return args


@bp.get("/students")
@console_required(SCHOOL_ADMIN)
def students() -> Response:
    school = school_of(current_account())  # type: ignore[arg-type]
    session = get_session()
    course_id, courses = _course()
    filters = console.Filters.parse(request.args)
    page = console.student_page(session, school.id, course_id, filters, _int("after"), now()) if course_id else \
        console.Page([], None, filters)
    colleges, grades = console.facets(session, school.id)
    return render_console("console/school/students.html", school=school, page=page, filters=filters,
                          course_id=course_id, courses=courses, colleges=colleges, grades=grades,
                          states=console.STATES, exports=console.exports_of(session, school.id),
                          args=_table_args(filters, course_id), next_args=_table_args(
                              filters, course_id, after=page.next_after) if page.next_after else None,
                          first_page=bool(_int("after")), formats=console.FORMATS)


@bp.get("/students/<int:profile_id>")
@console_required(SCHOOL_ADMIN)
def student(profile_id: int) -> Response:
    school = school_of(current_account())  # type: ignore[arg-type]
    detail = console.student_detail(get_session(), school.id, profile_id)
    if detail is None:
        abort(404)
    return render_console("console/school/student.html", school=school, detail=detail,
                          status_names=console.STATUS_NAMES, channel_names=console.CHANNEL_NAMES,
                          paper_names=console.PAPER_NAMES)


@bp.post("/exports")
@console_required(SCHOOL_ADMIN)
def export() -> Response:
    account = current_account()
    school = school_of(account)  # type: ignore[arg-type]
    session = get_session()
    filters = console.Filters.parse(request.form)
    course_id, _ = console.pick_course(session, _form_int("course"))
    try:
        if course_id is None:
            raise Refused("no_course", "还没有课程。")
        console.request_export(session, school.id, course_id, f"school_admin:{account.id}",  # type: ignore[union-attr]
                               request.form.get("format", ""), filters)
    except Refused as refused:
        session.rollback()
        abort(400, description=refused.message)
    session.commit()  # hands the job to the queue
    return redirect(url_for("console_school.students", **_table_args(filters, course_id)) + "#exports")


def _form_int(name: str) -> int | None:
    try:
        return int(request.form.get(name, ""))
    except ValueError:
        return None


@bp.get("/exports/<int:export_id>")
@console_required(SCHOOL_ADMIN)
def export_status(export_id: int) -> Response:
    school = school_of(current_account())  # type: ignore[arg-type]
    found = console.export_of(get_session(), school.id, export_id)
    if found is None:
        abort(404)
    return jsonify(id=found.id, status=found.status, done=found.done_count, total=found.total,
                   download=url_for("console_school.download", export_id=found.id) if found.status == "done" else None)


@bp.get("/exports/<int:export_id>/download")
@console_required(SCHOOL_ADMIN)
def download(export_id: int) -> Response:
    school = school_of(current_account())  # type: ignore[arg-type]
    found = console.export_of(get_session(), school.id, export_id)
    if found is None or found.status != "done" or not found.file_name:
        abort(404)
    path = Path(current_app.config["EXPORT_DIR"]) / found.file_name
    if not path.is_file():
        abort(404)
    mimetype = "text/csv" if found.file_format == "csv" else \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    stamp = found.created_at.strftime("%Y%m%d")
    response = send_file(path, mimetype=mimetype, as_attachment=True,
                         download_name=f"{school.name}-学生-{stamp}.{found.file_format}")
    response.headers["Cache-Control"] = "no-store"
    return response
