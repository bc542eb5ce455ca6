"""Staff console: schools (create, edit, billing, their admins and invites) and, for platform admins, staff accounts."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, abort, redirect, request, url_for

from database import get_session
from handlers.errors import Refused
from handlers.schools import directory
from models import School
from models.console import PLATFORM_ADMIN, STAFF
from web import links
from web.boundary import on_refused
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


def _index_page(status: int = 200, **context: object) -> Response:
    query = request.args.get("q", "")
    page = page_arg()
    rows, has_next = directory.list_schools(get_session(), query, page)
    return render_console("console/schools/index.html", status, rows=rows, q=query, page=page, has_next=has_next,
                          **context)


def _index_refused(refused: Refused, **_: Any) -> Response:
    """The list again, with the new school's form as typed and why it was refused."""
    return _index_page(422, error=refused.message, form=directory.SchoolForm.of(request.form))


@bp.route("/", methods=["GET", "POST"])
@console_required(*STAFF_ROLES)
@on_refused(_index_refused)
def index() -> Response:
    if request.method == "POST":
        school = directory.create_school(get_session(), current_actor(), directory.SchoolForm.of(request.form))
        return redirect(url_for("console_schools.edit", school_id=school.id, done="created"))
    return _index_page(error=None, form=None)


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


def _edit_refused(status: int, *, with_form: bool = False) -> Callable[..., Response]:
    """The responder of a step on one school: its page again with the reason (and the form as typed)."""

    def respond(refused: Refused, school_id: int, **_: Any) -> Response:
        form = {"form": directory.SchoolForm.of(request.form)} if with_form else {}
        return _edit_page(_school(school_id), status, error=refused.message, **form)

    return respond


def _not_found(refused: Refused, **_: Any) -> Response:
    # Another school's account, a staff account, or one that does not exist: all look the same.
    abort(404)


@bp.route("/<int:school_id>", methods=["GET", "POST"])
@console_required(*STAFF_ROLES)
@on_refused(_edit_refused(422, with_form=True))
def edit(school_id: int) -> Response:
    school = _school(school_id)
    if request.method == "GET":
        return _edit_page(school)
    directory.update_school(get_session(), current_actor(), school.id, directory.SchoolForm.of(request.form))
    return redirect(url_for("console_schools.edit", school_id=school_id, done="saved"))


@bp.post("/<int:school_id>/invites")
@console_required(*STAFF_ROLES)
@on_refused(_edit_refused(422))
def invite(school_id: int) -> Response:
    school = _school(school_id)
    _, token = directory.invite_school_admin(
        get_session(), current_actor(), school.id, request.form.get("display_name", ""), now()
    )
    # The token is stored only as a hash: this page is the one time anyone sees the link.
    return _edit_page(school, invite_link=_invite_link(token))


@bp.post("/<int:school_id>/invites/<int:invite_id>/cancel")
@console_required(*STAFF_ROLES)
@on_refused(_edit_refused(409))
def cancel_invite(school_id: int, invite_id: int) -> Response:
    school = _school(school_id)
    directory.cancel_invite(get_session(), current_actor(), invite_id, now(), school_id=school.id)
    return redirect(url_for("console_schools.edit", school_id=school.id, done="invite_cancelled"))


@bp.post("/<int:school_id>/accounts/<int:account_id>/disabled")
@console_required(*STAFF_ROLES)
@on_refused(_not_found)
def disable(school_id: int, account_id: int) -> Response:
    school = _school(school_id)
    disabled = request.form.get("disabled") == "1"
    directory.set_school_admin_disabled(get_session(), current_actor(), school.id, account_id, disabled)
    return redirect(url_for("console_schools.edit", school_id=school.id, done="disabled" if disabled else "enabled"))


# -- platform accounts (platform admins only) ------------------------------------------------------

def _staff_page(status: int = 200, **context: object) -> Response:
    session = get_session()
    return render_console("console/schools/staff.html", status, accounts=directory.staff_accounts(session),
                          invites=directory.pending_invites(session, now(), staff=True),
                          message=DONE.get(request.args.get("done", "")), roles=(STAFF, PLATFORM_ADMIN), **context)


def _staff_refused(status: int) -> Callable[..., Response]:
    """The responder of a step on platform accounts: their page again with the reason."""

    def respond(refused: Refused, **_: Any) -> Response:
        return _staff_page(status, error=refused.message)

    return respond


@staff_bp.get("/", endpoint="index")
@console_required(PLATFORM_ADMIN)
def index_staff() -> Response:
    return _staff_page()


@staff_bp.post("/invites")
@console_required(PLATFORM_ADMIN)
@on_refused(_staff_refused(422))
def invite_staff() -> Response:
    _, token = directory.invite_staff(get_session(), current_actor(), request.form.get("role", ""),
                                      request.form.get("display_name", ""), now())
    return _staff_page(invite_link=_invite_link(token))


@staff_bp.post("/invites/<int:invite_id>/cancel")
@console_required(PLATFORM_ADMIN)
@on_refused(_staff_refused(409))
def cancel_staff_invite(invite_id: int) -> Response:
    directory.cancel_invite(get_session(), current_actor(), invite_id, now(), staff=True)
    return redirect(url_for("console_staff.index", done="invite_cancelled"))


@staff_bp.post("/<int:account_id>/disabled")
@console_required(PLATFORM_ADMIN)
@on_refused(_staff_refused(422))
def disable_staff(account_id: int) -> Response:
    disabled = request.form.get("disabled") == "1"
    directory.set_staff_disabled(get_session(), current_actor(), account_id, disabled)
    return redirect(url_for("console_staff.index", done="disabled" if disabled else "enabled"))
