"""Console pages for a school admin's approval queue: pending students, approve, reject with a reason, bulk approve.

Phones are masked (one row's in full on an audited POST); student numbers are not: telling a typo
in a number from another student's number is the decision this page exists for."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, abort, flash, redirect, request, url_for

from database import get_session
from handlers.audit import Actor
from handlers.errors import Refused
from handlers.schools import approvals
from models.console import SCHOOL_ADMIN
from web.boundary import on_refused
from web.clock import now
from web.console import console_required, current_account, register_nav, render_console, school_of
from web.ids import id_value

bp = Blueprint("console_approvals", __name__, url_prefix="/console/school", template_folder="../templates")
register_nav("待审核学生", "console_approvals.queue_page", (SCHOOL_ADMIN,), 13)

PER_PAGE = 30


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _page_number() -> int:
    try:
        return max(1, min(int(request.args.get("page", "1")), 100_000))
    except ValueError:
        return 1


def _queue(school_id: int, status: int = 200, error: str | None = None, revealed: int | None = None) -> Response:
    page = _page_number()
    items, total = approvals.queue(get_session(), school_id, page, PER_PAGE)
    return render_console("console/approvals/queue.html", status, items=items, total=total, page=page,
                          pages=max(1, -(-total // PER_PAGE)), error=error, revealed=revealed)


@bp.get("/approvals")
@console_required(SCHOOL_ADMIN)
def queue_page() -> Response:
    school = school_of(current_account())  # type: ignore[arg-type]
    return _queue(school.id)


@bp.post("/approvals/<int:profile_id>/reveal")
@console_required(SCHOOL_ADMIN)
def reveal(profile_id: int) -> Response:
    """The queue again (same page), this student's phone in full; the audit log records who looked."""
    account = current_account()
    assert account is not None
    school = school_of(account)
    try:
        profile = approvals.reveal_phone(get_session(), Actor.of(account), school.id, profile_id)
    except approvals.NotFound:
        abort(404)
    return _queue(school.id, revealed=profile.id)


def _decide_refused(refused: Refused, **_: Any) -> Response:
    """The queue again with the reason: 409 when someone decided first, 400 for the admin's own input."""
    school = school_of(current_account())  # type: ignore[arg-type]
    return _queue(school.id, 409 if refused.code == "already_decided" else 400, refused.message)


def _bulk_refused(refused: Refused, **_: Any) -> Response:
    school = school_of(current_account())  # type: ignore[arg-type]
    return _queue(school.id, 400, refused.message)


def _decide(profile_id: int, approve: bool) -> Response:
    account = current_account()
    assert account is not None
    school = school_of(account)
    try:
        profile = approvals.decide(get_session(), Actor.of(account), school.id, profile_id, approve=approve,
                                   reason=request.form.get("reason"), now=now())
    except approvals.NotFound:
        abort(404)
    flash(f"已通过 {profile.real_name}（{profile.student_number}）" if approve
          else f"已驳回 {profile.real_name}（{profile.student_number}），学生会看到原因")
    return redirect(url_for("console_approvals.queue_page"))


@bp.post("/approvals/<int:profile_id>/approve")
@console_required(SCHOOL_ADMIN)
@on_refused(_decide_refused)
def approve(profile_id: int) -> Response:
    return _decide(profile_id, True)


@bp.post("/approvals/<int:profile_id>/reject")
@console_required(SCHOOL_ADMIN)
@on_refused(_decide_refused)
def reject(profile_id: int) -> Response:
    return _decide(profile_id, False)


@bp.post("/approvals/bulk-approve")
@console_required(SCHOOL_ADMIN)
@on_refused(_bulk_refused)
def bulk_approve() -> Response:
    account = current_account()
    assert account is not None
    school = school_of(account)
    ids = [id_value(value) for value in request.form.getlist("profile_id")]
    if None in ids:
        abort(400)
    if not ids:
        return _queue(school.id, 400, "请先勾选要通过的学生")
    try:
        done, skipped = approvals.approve_many(get_session(), Actor.of(account), school.id, ids, now=now())
    except approvals.NotFound:
        abort(404)
    flash(f"已批量通过 {done} 人" + (f"；{len(skipped)} 人已被处理过，已跳过" if skipped else ""))
    for message in skipped[:5]:
        flash(message)
    return redirect(url_for("console_approvals.queue_page"))
