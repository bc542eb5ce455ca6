"""Staff console: upload a course catalog file, see its problems line by line or a preview, then load it."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, request

from database import get_database, get_session
from handlers import catalog, catalog_upload
from handlers.console_accounts import Actor
from handlers.learning import Refused
from web.console import STAFF_ROLES, console_required, current_account, register_nav, render_console

bp = Blueprint("console_content", __name__, url_prefix="/console/content", template_folder="../templates")

register_nav("课程内容", "console_content.index", STAFF_ROLES, 50)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _page(status: int = 200, **context: object) -> Response:
    with get_database().readers() as session:
        courses = catalog.list_courses(session)
        return render_console("console/content/index.html", status, courses=courses, **context)


def _source_name(name: str | None) -> str:
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:100] or "upload.toml"


@bp.get("/")
@console_required(*STAFF_ROLES)
def index() -> Response:
    return _page()


@bp.post("/preview")
@console_required(*STAFF_ROLES)
def preview() -> Response:
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _page(422, error="请选择要上传的课程文件（.toml）。")
    source = _source_name(upload.filename)
    try:
        text = catalog_upload.decode(upload.read(catalog_upload.MAX_BYTES + 1))
    except Refused as refused:
        return _page(422, error=refused.message, source=source)
    with get_database().readers() as session:
        checked = catalog_upload.check(session, text, source)
    if isinstance(checked, list):
        lines = text.splitlines()
        problems = [(p.line, p.message, lines[p.line - 1] if p.line and p.line <= len(lines) else None)
                    for p in checked]
        return _page(422, problems=problems, source=source)
    return _page(preview=checked, text=text, source=source)


@bp.post("/load")
@console_required(*STAFF_ROLES)
def load() -> Response:
    account = current_account()
    assert account is not None
    session = get_session()
    text = request.form.get("text", "")
    source = _source_name(request.form.get("source"))
    try:
        result = catalog_upload.load(session, Actor.of(account), text, source, request.form.get("digest", ""))
    except Refused as refused:
        session.rollback()
        return _page(422, error=refused.message)
    session.commit()
    return _page(loaded=result)
