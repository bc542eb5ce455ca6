"""Staff console: students' data requests (copies, erasures) by deadline, and carrying an erasure out sooner."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, redirect, request, url_for
from sqlalchemy import select

from database import get_session
from handlers.audit import Actor
from handlers.privacy import requests
from handlers.privacy.masking import mask_name
from models import School, StudentProfile
from web.blobs import get_blob_store
from web.boundary import on_refused
from web.clock import now
from web.console import STAFF_ROLES, console_required, current_account, register_nav, render_console
from web.console.certificate_desk import local_time

bp = Blueprint("console_privacy", __name__, url_prefix="/console/privacy", template_folder="../templates")

register_nav("数据申请", "console_privacy.index", STAFF_ROLES, 62)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/")
@console_required(*STAFF_ROLES)
def index() -> Response:
    session = get_session()
    show_all = request.args.get("all") == "1"
    items = requests.queue(session, now(), open_only=not show_all)
    # Who asked, masked: enough to answer a student who writes in, not a list of names.
    who = {user_id: (mask_name(name), school) for user_id, name, school in session.execute(
        select(StudentProfile.user_id, StudentProfile.real_name, School.name)
        .join(School, School.id == StudentProfile.school_id)
        .where(StudentProfile.user_id.in_([i.request.user_id for i in items])))}
    return render_console("console/privacy/requests.html", items=items, who=who, kinds=requests.KINDS,
                          statuses=requests.STATUS_LABELS, local_time=local_time, show_all=show_all,
                          done=request.args.get("done", type=int), problem=None)


def _refused(refusal, request_id: int):  # type: ignore[no-untyped-def]
    session = get_session()
    items = requests.queue(session, now())
    return render_console("console/privacy/requests.html", items=items, who={}, kinds=requests.KINDS,
                          statuses=requests.STATUS_LABELS, local_time=local_time, show_all=False, done=None,
                          problem=refusal.message), 409


@bp.post("/<int:request_id>/erase")
@console_required(*STAFF_ROLES)
@on_refused(_refused)
def erase_now(request_id: int) -> Response:
    """Carry out a pending erasure before its cooling-off ends (the student asked staff to hurry);
    audited as privacy.erase by the operation."""
    account = current_account()
    assert account is not None
    requests.staff_erase_now(get_session(), Actor.of(account), request_id, get_blob_store(), now())
    return redirect(url_for("console_privacy.index", done=request_id))
