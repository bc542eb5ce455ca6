"""Staff console: background jobs that ran out of attempts, with their error, and a retry button."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, abort, redirect, request, url_for

from database import get_database, get_session
from handlers.audit import Actor, record_audit
from handlers.outbox import list_failed_jobs, retry_failed_job
from web.console import STAFF_ROLES, console_required, current_account, register_nav, render_console
from web.console.certificate_desk import local_time

bp = Blueprint("console_jobs", __name__, url_prefix="/console/jobs", template_folder="../templates")

register_nav("失败任务", "console_jobs.index", STAFF_ROLES, 61)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/")
@console_required(*STAFF_ROLES)
def index() -> Response:
    with get_database().readers() as session:
        jobs = list_failed_jobs(session)
        return render_console("console/audit/jobs.html", jobs=jobs, local_time=local_time,
                              retried=request.args.get("retried", type=int))


@bp.post("/<int:job_id>/retry")
@console_required(*STAFF_ROLES)
def retry(job_id: int) -> Response:
    account = current_account()
    assert account is not None
    session = get_session()
    job = retry_failed_job(session, job_id)
    if job is None:
        abort(404)
    record_audit(session, Actor.of(account), "job.retry", "job", job.id,
                 before={"status": "failed", "attempts": job.attempts},
                 after={"status": "pending", "max_attempts": job.max_attempts}, note=job.kind)
    return redirect(url_for("console_jobs.index", retried=job_id))
