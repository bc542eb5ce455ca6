"""Staff console: the audit log — search by actor, action, subject, school and period; pages; CSV export."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, request, stream_with_context
from sqlalchemy import select

from database import get_database, get_session
from handlers import audit
from handlers.audit import Actor, record_audit
from models import School
from web.clock import now
from web.console import STAFF_ROLES, console_required, current_account, page_arg, register_nav, render_console
from web.console.certificate_desk import local_time

bp = Blueprint("console_audit", __name__, url_prefix="/console/audit", template_folder="../templates")

register_nav("操作日志", "console_audit.index", STAFF_ROLES, 60)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/")
@console_required(*STAFF_ROLES)
def index() -> Response:
    where = audit.AuditFilter.of(request.args)
    page = page_arg()
    with get_database().readers() as session:
        rows, has_next = audit.search(session, where, page)
        schools = session.execute(select(School.id, School.name).order_by(School.name)).all()
        school_names = {i: n for i, n in schools}
        return render_console("console/audit/index.html", rows=rows, has_next=has_next, page=page, where=where,
                              args=where.args(), school_names=school_names, schools=schools, local_time=local_time,
                              as_json=audit.as_json)


@bp.get("/export.csv")
@console_required(*STAFF_ROLES)
def export() -> Response:
    where = audit.AuditFilter.of(request.args)
    account = current_account()
    assert account is not None
    # Who took a copy of the log, and of what, is itself logged.
    session = get_session()
    record_audit(session, Actor.of(account), "audit.export", None, None, after=where.args() or None)

    def lines():  # type: ignore[no-untyped-def]
        with get_database().readers() as reader:
            yield from audit.csv_lines(reader, where)

    stamp = now().strftime("%Y%m%d-%H%M%S")
    response = Response(stream_with_context(lines()), mimetype="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response
