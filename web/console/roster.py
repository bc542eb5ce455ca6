"""Console pages for a school admin's roster: upload (CSV/XLSX, processed by a job), each upload's progress
and report, history, the roster itself.

The roster's list shows numbers and phones masked and is searched by a handle, never a term in the
URL (web.console.searches). An upload's report shows its problem rows in full: it is about the file
the admin just sent, and a fixed cell (a number restored from 2.02E+09) can only be checked whole."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, abort, jsonify, redirect, request, url_for

from database import get_session
from handlers import china_time
from handlers.audit import Actor
from handlers.errors import Refused
from handlers.schools import roster, roster_files
from models.base import utcnow
from models.console import SCHOOL_ADMIN
from web.blobs import get_blob_store
from web.boundary import on_refused
from web.clock import now
from web.console import console_required, current_account, register_nav, render_console, school_of, searches

bp = Blueprint("console_roster", __name__, url_prefix="/console/school", template_folder="../templates")
register_nav("学生名单", "console_roster.roster_page", (SCHOOL_ADMIN,), 12)

PER_PAGE = 50
# The multipart envelope around a file at the cap: boundaries, headers, the CSRF field.
UPLOAD_SLACK = 64 * 1024
TEMPLATE_CSV = "\ufeff姓名,学号,学院,年级,手机\r\n张三,2024001,心理学院,2024级,13800138000\r\n"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.app_template_filter("beijing_time")
def beijing_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Times are stored in UTC; school admins read them in Beijing time."""
    return china_time.text(value, fmt)


@bp.before_request
def _cap_upload() -> None:
    # Before the gate reads the form (for its CSRF check): a larger body is a 413, never parsed.
    if request.endpoint == "console_roster.upload":
        request.max_content_length = roster_files.MAX_BYTES + UPLOAD_SLACK


def _page_number() -> int:
    try:
        return max(1, min(int(request.args.get("page", "1")), 100_000))
    except ValueError:
        return 1


def _roster_page(school_id: int, status: int = 200, error: str | None = None) -> Response:
    session = get_session()
    handle = request.args.get(searches.HANDLE)
    query = searches.term_of(handle)
    page = _page_number()
    entries, total = roster.search_roster(session, school_id, query or "", page, PER_PAGE)
    uploads = roster.uploads_of(session, school_id)
    return render_console("console/roster/roster.html", status, error=error, entries=entries, total=total,
                          q=query or "", handle=handle if query else None, search_lost=query is None,
                          page=page, pages=max(1, -(-total // PER_PAGE)), uploads=uploads,
                          latest=uploads[0] if uploads else None, max_mb=roster_files.MAX_BYTES // 1024 // 1024,
                          max_rows=roster_files.MAX_ROWS)


@bp.route("/roster", methods=["GET", "POST"])
@console_required(SCHOOL_ADMIN)
def roster_page() -> Response:
    school = school_of(current_account())  # type: ignore[arg-type]
    if searches.carries_term():
        # The search box posts (a number or a name); the list answers a GET with the term's handle.
        return searches.to_handle()
    return _roster_page(school.id)


def _upload_refused(refused: Refused, **_: Any) -> Response:
    """The roster page again, with why the file was not taken (a bad mode, the previous upload still running)."""
    return _roster_page(school_of(current_account()).id, 400, refused.message)  # type: ignore[arg-type]


@bp.post("/roster/upload")
@console_required(SCHOOL_ADMIN)
@on_refused(_upload_refused)
def upload() -> Response:
    account = current_account()
    assert account is not None
    school = school_of(account)
    file = request.files.get("file")
    if file is None or not file.filename:
        return _roster_page(school.id, 400, "请选择要上传的名单文件（CSV 或 .xlsx）")
    data = file.read(roster_files.MAX_BYTES + 1)
    # Old browsers send the whole client path; the history shows the file's own name.
    name = file.filename.replace("\\", "/").rsplit("/", 1)[-1]
    # The job it enqueues reaches the queue when the boundary commits.
    uploaded = roster.request_upload(get_session(), Actor.of(account), school.id, data, name,
                                     request.form.get("mode", "merge"), now=now(), blobs=get_blob_store())
    return redirect(url_for("console_roster.upload_report", upload_id=uploaded.id))


@bp.get("/roster/uploads/<int:upload_id>")
@console_required(SCHOOL_ADMIN)
def upload_report(upload_id: int) -> Response:
    school = school_of(current_account())  # type: ignore[arg-type]
    uploaded = roster.upload_of(get_session(), school.id, upload_id)
    if uploaded is None:
        abort(404)
    # Still unfinished after the busy window: its job failed for good (staff see it among failed jobs).
    stuck = uploaded.status in roster.UNFINISHED and uploaded.created_at < utcnow() - roster.BUSY_WINDOW
    return render_console("console/roster/report.html", upload=uploaded, report=uploaded.report, stuck=stuck)


@bp.get("/roster/uploads/<int:upload_id>/status")
@console_required(SCHOOL_ADMIN)
def upload_status(upload_id: int) -> Response:
    """What the report page polls while the job runs."""
    school = school_of(current_account())  # type: ignore[arg-type]
    uploaded = roster.upload_of(get_session(), school.id, upload_id)
    if uploaded is None:
        abort(404)
    response = jsonify(id=uploaded.id, status=uploaded.status, rows=uploaded.parsed_rows)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/roster/template.csv")
@console_required(SCHOOL_ADMIN)
def template() -> Response:
    school_of(current_account())  # type: ignore[arg-type]
    return Response(TEMPLATE_CSV.encode("utf-8"), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=roster-template.csv",
                             "Cache-Control": "no-store"})
