"""Staff console: upload a course catalog file, see its problems line by line or a preview, then load it."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, request
from sqlalchemy.orm import Session

from database import get_database, get_session
from handlers.audit import Actor
from handlers.catalog import loader
from handlers.catalog import upload as catalog_upload
from handlers.errors import Refused
from web.boundary import on_refused
from web.console import STAFF_ROLES, console_required, current_account, register_nav, render_console

bp = Blueprint("console_content", __name__, url_prefix="/console/content", template_folder="../templates")

register_nav("课程内容", "console_content.index", STAFF_ROLES, 50)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _page(status: int = 200, *, session: Session | None = None, **context: object) -> Response:
    """The content page. After a load, `session` is the request's own: the boundary commits the new version
    only once the page is rendered, so a reader would not see it yet."""
    if session is None:
        with get_database().readers() as reader:
            return _page(status, session=reader, **context)
    return render_console("console/content/index.html", status, courses=loader.list_courses(session), **context)


def _source_name(name: str | None) -> str:
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:100] or "upload.toml"


@bp.get("/")
@console_required(*STAFF_ROLES)
def index() -> Response:
    return _page()


def _preview_refused(refused: Refused, **_: Any) -> Response:
    """The file could not be read (too big, not UTF-8): the page again, naming it."""
    return _page(422, error=refused.message, source=_source_name(request.files["file"].filename))


def _load_refused(refused: Refused, **_: Any) -> Response:
    return _page(422, error=refused.message)


@bp.post("/preview")
@console_required(*STAFF_ROLES)
@on_refused(_preview_refused)
def preview() -> Response:
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _page(422, error="请选择要上传的课程文件（.toml）。")
    source = _source_name(upload.filename)
    text = catalog_upload.decode(upload.read(catalog_upload.MAX_BYTES + 1))
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
@on_refused(_load_refused)
def load() -> Response:
    account = current_account()
    assert account is not None
    text = request.form.get("text", "")
    source = _source_name(request.form.get("source"))
    session = get_session()
    result = catalog_upload.load(session, Actor.of(account), text, source, request.form.get("digest", ""))
    return _page(loaded=result, session=session)
