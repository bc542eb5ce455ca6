"""Staff console: schools (create, edit, billing, their admins and invites) and, for platform admins, staff accounts."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, abort, redirect, request, url_for

from database import get_session
from handlers import school_directory as directory
from handlers.learning import Refused
from models import School
from models.console import PLATFORM_ADMIN, STAFF
from web import links
from web.clock import now
from web.console import STAFF_ROLES, console_required, current_actor, page_arg, register_nav, render_console
from web.console.certificate_desk import local_time

bp = Blueprint("console_schools", __name__, url_prefix="/console/schools", template_folder="../templates")
staff_bp = Blueprint("console_staff", __name__, url_prefix="/console/accounts", template_folder="../templates")

register_nav("学校", "console_schools.index", STAFF_ROLES, 40)
register_nav("平台账号", "console_staff.index", (PLATFORM_ADMIN,), 41)

DONE = {"created": "学校已创建", "saved": "已保存", "disabled": "账号已停用", "enabled": "账号已启用",
        "invite_cancelled": "邀请已取消，链接已失效"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(staff_bp)


@bp.context_processor
@staff_bp.context_processor
def _formatting() -> dict[str, object]:
    return {"local_time": local_time, "fields": directory.FIELDS}


def _invite_link(token: str) -> str:
    return links.absolute("console.invite", token=token)


@bp.route("/", methods=["GET", "POST"])
@console_required(*STAFF_ROLES)
def index() -> Response:
    session = get_session()
    error, form = None, None
    if request.method == "POST":
        form = directory.SchoolForm.of(request.form)
        try:
            school = directory.create_school(session, current_actor(), form)
        except Refused as refused:
            session.rollback()
            error = refused.message
        else:
            session.commit()
            return redirect(url_for("console_schools.edit", school_id=school.id, done="created"))
    query = request.args.get("q", "")
    page = page_arg()
    rows, has_next = directory.list_schools(session, query, page)
    return render_console("console/schools/index.html", 200 if error is None else 422, rows=rows, q=query,
                          page=page, has_next=has_next, error=error, form=form)


def _school(school_id: int) -> School:
    school = get_session().get(School, school_id)
    if school is None:
        abort(404)
    return school


def _edit_page(school: School, status: int = 200, **context: object) -> Response:
    session = get_session()
    return render_console("console/schools/edit.html", status, school=school,
                          accounts=directory.school_accounts(session, school.id),
                          invites=directory.pending_invites(session, now(), school_id=school.id),
                          message=DONE.get(request.args.get("done", "")), **context)


@bp.route("/<int:school_id>", methods=["GET", "POST"])
@console_required(*STAFF_ROLES)
def edit(school_id: int) -> Response:
    school = _school(school_id)
    if request.method == "GET":
        return _edit_page(school)
    session = get_session()
    form = directory.SchoolForm.of(request.form)
    try:
        directory.update_school(session, current_actor(), school.id, form)
    except Refused as refused:
        session.rollback()
        return _edit_page(_school(school_id), 422, error=refused.message, form=form)
    session.commit()
    return redirect(url_for("console_schools.edit", school_id=school_id, done="saved"))


@bp.post("/<int:school_id>/invites")
@console_required(*STAFF_ROLES)
def invite(school_id: int) -> Response:
    school = _school(school_id)
    session = get_session()
    try:
        _, token = directory.invite_school_admin(
            session, current_actor(), school.id, request.form.get("display_name", ""), now()
        )
    except Refused as refused:
        session.rollback()
        return _edit_page(school, 422, error=refused.message)
    session.commit()
    # The token is stored only as a hash: this page is the one time anyone sees the link.
    return _edit_page(school, invite_link=_invite_link(token))


@bp.post("/<int:school_id>/invites/<int:invite_id>/cancel")
@console_required(*STAFF_ROLES)
def cancel_invite(school_id: int, invite_id: int) -> Response:
    school = _school(school_id)
    session = get_session()
    try:
        directory.cancel_invite(session, current_actor(), invite_id, now(), school_id=school.id)
    except Refused as refused:
        session.rollback()
        if refused.code == "not_found":
            abort(404)
        return _edit_page(school, 409, error=refused.message)
    session.commit()
    return redirect(url_for("console_schools.edit", school_id=school.id, done="invite_cancelled"))


@bp.post("/<int:school_id>/accounts/<int:account_id>/disabled")
@console_required(*STAFF_ROLES)
def disable(school_id: int, account_id: int) -> Response:
    school = _school(school_id)
    session = get_session()
    disabled = request.form.get("disabled") == "1"
    try:
        directory.set_school_admin_disabled(session, current_actor(), school.id, account_id, disabled)
    except Refused:
        session.rollback()
        abort(404)
    session.commit()
    return redirect(url_for("console_schools.edit", school_id=school.id, done="disabled" if disabled else "enabled"))


# -- platform accounts (platform admins only) ------------------------------------------------------

def _staff_page(status: int = 200, **context: object) -> Response:
    session = get_session()
    return render_console("console/schools/staff.html", status, accounts=directory.staff_accounts(session),
                          invites=directory.pending_invites(session, now(), staff=True),
                          message=DONE.get(request.args.get("done", "")), roles=(STAFF, PLATFORM_ADMIN), **context)


@staff_bp.get("/", endpoint="index")
@console_required(PLATFORM_ADMIN)
def index_staff() -> Response:
    return _staff_page()


@staff_bp.post("/invites")
@console_required(PLATFORM_ADMIN)
def invite_staff() -> Response:
    session = get_session()
    try:
        _, token = directory.invite_staff(session, current_actor(), request.form.get("role", ""),
                                          request.form.get("display_name", ""), now())
    except Refused as refused:
        session.rollback()
        return _staff_page(422, error=refused.message)
    session.commit()
    return _staff_page(invite_link=_invite_link(token))


@staff_bp.post("/invites/<int:invite_id>/cancel")
@console_required(PLATFORM_ADMIN)
def cancel_staff_invite(invite_id: int) -> Response:
    session = get_session()
    try:
        directory.cancel_invite(session, current_actor(), invite_id, now(), staff=True)
    except Refused as refused:
        session.rollback()
        if refused.code == "not_found":
            abort(404)
        return _staff_page(409, error=refused.message)
    session.commit()
    return redirect(url_for("console_staff.index", done="invite_cancelled"))


@staff_bp.post("/<int:account_id>/disabled")
@console_required(PLATFORM_ADMIN)
def disable_staff(account_id: int) -> Response:
    session = get_session()
    disabled = request.form.get("disabled") == "1"
    try:
        directory.set_staff_disabled(session, current_actor(), account_id, disabled)
    except Refused as refused:
        session.rollback()
        if refused.code == "not_found":
            abort(404)
        return _staff_page(422, error=refused.message)
    session.commit()
    return redirect(url_for("console_staff.index", done="disabled" if disabled else "enabled"))
