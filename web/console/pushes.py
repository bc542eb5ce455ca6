"""Progress pushes in the console (binding status, bind link and QR, deliveries) and the bind page opened in WeChat."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, redirect, render_template, request, url_for
from markupsafe import Markup
from reportlab.graphics.barcode import qrencoder
from sqlalchemy import select

from database import get_session
from handlers.errors import Refused
from handlers.pushes import bindings, compose, deliveries
from models import ConsoleAccount, School, User
from web.auth import csrf_ok, current_user, login_required
from web.boundary import on_refused
from web.clock import now
from web.console import console_required, current_account, page_arg, register_nav, render_console, school_of

bp = Blueprint("console_pushes", __name__, url_prefix="/console/school", template_folder="../templates")
# The bind link is opened in WeChat, where the admin signs in as a student would (OAuth).
bind_bp = Blueprint("push_bind", __name__, url_prefix="/h5/push-bind", template_folder="../templates")

register_nav("进度推送", "console_pushes.page", ("school_admin",), 15)

STATUS_BADGE = {"queued": "", "sent": "ok", "delivered": "ok", "failed": "bad", "rejected": "bad"}
MESSAGES = {"unbound": "已解除绑定，不会再向该微信推送。", "nothing": "当前没有绑定微信。"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(bind_bp)


def qr_svg(value: str, scale: int = 4) -> Markup:
    """The QR code of `value` as inline SVG (ReportLab's encoder, as on certificates)."""
    qr = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.M)
    qr.addData(qrencoder.QR8bitByte(value.encode("ascii")))
    qr.make()
    modules = qr.modules
    n = len(modules)
    size = (n + 8) * scale
    cells = "".join(f'<rect x="{(x + 4) * scale}" y="{(y + 4) * scale}" width="{scale}" height="{scale}"/>'
                    for y, row in enumerate(modules) for x, dark in enumerate(row) if dark)
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
                  f'viewBox="0 0 {size} {size}" role="img" aria-label="绑定二维码">'
                  f'<rect width="{size}" height="{size}" fill="#fff"/><g fill="#000">{cells}</g></svg>')


def _china_time(moment: datetime) -> str:
    return moment.astimezone(compose.CHINA).strftime("%Y-%m-%d %H:%M")


def _page(account: ConsoleAccount, school: School, *, bind_url: str | None = None, message: str | None = None,
          error: str | None = None, status: int = 200) -> Response:
    session = get_session()
    page = page_arg()
    rows, total = deliveries.deliveries(session, school.id, page)
    pages = max((total + deliveries.PAGE_SIZE - 1) // deliveries.PAGE_SIZE, 1)
    ids = {row.account_id for row in rows}
    names = {account_id: name for account_id, name in session.execute(
        select(ConsoleAccount.id, ConsoleAccount.display_name).where(ConsoleAccount.id.in_(ids)))}
    return render_console(
        "console/pushes/page.html",
        status,
        school=school,
        binding=bindings.binding_of(session, account),
        bind_url=bind_url,
        qr=qr_svg(bind_url) if bind_url else None,
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        names=names,
        message=message,
        error=error,
        status_text=deliveries.STATUS_TEXT,
        kind_text=deliveries.KIND_TEXT,
        badge=STATUS_BADGE,
        explain=deliveries.explain,
        china_time=_china_time,
        ttl_minutes=int(bindings.BIND_TOKEN_TTL.total_seconds() // 60),
    )


@bp.get("/pushes")
@console_required("school_admin")
def page() -> Response:
    account = current_account()
    assert account is not None
    return _page(account, school_of(account), message=MESSAGES.get(request.args.get("done", "")))


@bp.post("/pushes/link")
@console_required("school_admin")
def make_link() -> Response:
    """A fresh one-time bind link; shown once (only its hash is kept), so the page is rendered here."""
    account = current_account()
    assert account is not None
    school = school_of(account)
    token = bindings.create_bind_token(get_session(), account, now())
    bind_url = str(current_app.config["PUBLIC_URL"]).rstrip("/") + url_for("push_bind.open_link", token=token)
    return _page(account, school, bind_url=bind_url)


@bp.post("/pushes/unbind")
@console_required("school_admin")
def unbind() -> Response:
    account = current_account()
    assert account is not None
    school_of(account)
    changed = bindings.unbind(get_session(), account)
    return redirect(url_for("console_pushes.page", done="unbound" if changed else "nothing"), code=303)


# -- the bind page, opened in WeChat -----------------------------------------------------------

def _refused(refusal: Refused, status: int = 409) -> tuple[str, int]:
    return render_template("console/pushes/bind_refused.html", refusal=refusal), status


def _bind_refused(refusal: Refused, **_: Any) -> tuple[str, int]:
    """The link cannot be used (unknown, used, expired): say so on the page WeChat opened."""
    return _refused(refusal)


def _token(token: str) -> str:
    # token_urlsafe(24) gives 32 characters; anything far off is not ours.
    if not 16 <= len(token) <= 64:
        abort(404)
    return token


@bind_bp.get("/<token>")
@login_required
@on_refused(_bind_refused)
def open_link(token: str) -> Response | tuple[str, int]:
    session = get_session()
    account = bindings.peek_bind_token(session, _token(token), now())
    school = session.get(School, account.school_id)
    return Response(render_template("console/pushes/bind.html", account=account, school=school, token=token))


@bind_bp.post("/<token>")
@login_required
@on_refused(_bind_refused)
def confirm(token: str) -> Response | tuple[str, int]:
    if not csrf_ok():
        return _refused(Refused("stale", "页面已过期，请重新打开绑定链接。"), 400)
    session = get_session()
    user: User = current_user()
    account = bindings.bind(session, _token(token), user.id, now())
    school = session.get(School, account.school_id)
    return Response(render_template("console/pushes/bound.html", account=account, school=school,
                                    following=bool(user.subscribed)))
