"""Console pages every account shares: sign-in and out, accepting an invite, the home page, own password and TOTP."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, redirect, request, url_for
from werkzeug.exceptions import HTTPException

from database import get_session
from handlers.accounts import console
from handlers.errors import Refused
from models import School
from web.auth import csrf_ok, safe_next
from web.boundary import on_refused
from web.clock import now
from web.console import (
    ALL_ROLES,
    CONSOLE_HOME,
    console_required,
    current_account,
    end_console_session,
    render_console,
    start_console_session,
)

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="../templates")

PROBLEM_TITLES = {400: "请求无效", 401: "请先登录", 403: "没有权限", 404: "页面不存在", 405: "请求无效",
                  413: "内容太大", 429: "操作太频繁"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    for code in PROBLEM_TITLES:
        app.register_error_handler(code, _console_problem)


def _console_problem(error: HTTPException) -> Response | HTTPException:
    """Console errors as console pages (in Chinese); elsewhere Flask's own answer stands."""
    if not request.path.startswith(CONSOLE_HOME):
        return error
    status = error.code or 500
    detail = error.description if status == 400 and error.description and not error.description.startswith(
        "The browser") else None
    return render_console("console/problem.html", status=status, title=PROBLEM_TITLES.get(status, "出错了"),
                          detail=detail)


def _client_ip() -> str:
    # The first hop is the proxy's business (ProxyFix in deploy); the rate limit keys on what reached us.
    return (request.remote_addr or "unknown")[:64]


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Response:
    target = safe_next(request.values.get("next"), CONSOLE_HOME)
    if request.method == "GET":
        if current_account() is not None:
            return redirect(target)
        return render_console("console/sign_in.html", next=target, username="", need_totp=False)
    username = request.form.get("username", "")
    if not csrf_ok():
        return render_console("console/sign_in.html", 400, next=target, username=username, need_totp=False,
                              error="页面已过期，请重新输入")
    try:
        account = console.authenticate(get_session(), username, request.form.get("password", ""), _client_ip(),
                                        now(), totp_code=request.form.get("totp") or None)
    except Refused as refused:
        # Caught here, not by the boundary: answered normally, the failed attempt it recorded is committed and counts.
        status = 429 if refused.code == "rate_limited" else 401 if refused.code == "bad_credentials" else 200
        return render_console("console/sign_in.html", status, next=target, username=username,
                              need_totp=refused.code in ("totp_required", "bad_totp"), error=refused.message)
    start_console_session(account)
    return redirect(target)


@bp.post("/sign-out")
def sign_out() -> Response:
    if current_account() is not None and not csrf_ok():
        return render_console("console/problem.html", 400, title="请求无效", detail="页面已过期，请刷新后重试")
    account = current_account()
    if account is not None:
        # Revoked on the server: the epoch ends this account's signed sessions everywhere, so a
        # copy of the cookie taken before 退出 is worthless after it.
        account.session_epoch += 1
    end_console_session()
    return redirect(url_for("console.sign_in"))


@bp.get("/")
@console_required(*ALL_ROLES)
def home() -> Response:
    account = current_account()
    school = get_session().get(School, account.school_id) if account and account.school_id else None
    return render_console("console/home.html", school_name=school.name if school else "")


def _invite_refused(refused: Refused, token: str) -> Response:
    """A dead invite link is a 404 page; anything else accepting refused, the form again with the reason."""
    if refused.code == "invite_invalid":
        return render_console("console/problem.html", 404, title="邀请无效", detail=refused.message)
    pending = console.open_invite(get_session(), token[:64], now())
    return render_console("console/invite.html", 200, invite=pending, username=request.form.get("username", ""),
                          error=refused.message)


@bp.route("/invite/<token>", methods=["GET", "POST"])
@on_refused(_invite_refused)
def invite(token: str) -> Response:
    session = get_session()
    pending = console.open_invite(session, token[:64], now())
    if request.method == "GET":
        return render_console("console/invite.html", invite=pending, username="")
    username = request.form.get("username", "")
    if not csrf_ok():
        return render_console("console/invite.html", 400, invite=pending, username=username, error="页面已过期，请重试")
    if request.form.get("password", "") != request.form.get("password2", ""):
        return render_console(
            "console/invite.html", 200, invite=pending, username=username, error="两次输入的密码不一致"
        )
    account = console.accept_invite(session, token[:64], username=username,
                                     password=request.form.get("password", ""), now=now())
    start_console_session(account)
    return redirect(url_for("console.home"))


def _account_page(message: str | None = None, error: str | None = None, new_secret: str | None = None) -> Response:
    account = current_account()
    assert account is not None
    if account.totp_secret is None and new_secret is None:
        new_secret = console.new_totp_secret()
    totp_uri = console.totp_uri(account, new_secret) if new_secret else None
    return render_console("console/account.html", message=message, error=error, totp_secret=new_secret,
                          totp_uri=totp_uri)


def _account_refused(refused: Refused, **_: Any) -> Response:
    """The page again with the reason; a TOTP secret being set up stays on screen for another try."""
    new_secret = request.form.get("secret", "")[:64] if request.form.get("action") == "totp" else None
    return _account_page(error=refused.message, new_secret=new_secret)


@bp.route("/account", methods=["GET", "POST"])
@console_required(*ALL_ROLES)
@on_refused(_account_refused)
def account_settings() -> Response:
    account = current_account()
    assert account is not None
    if request.method != "POST":
        return _account_page()
    session = get_session()
    action = request.form.get("action")
    if action == "password":
        if request.form.get("new", "") != request.form.get("new2", ""):
            raise Refused("mismatch", "两次输入的新密码不一致")
        console.change_password(session, account, request.form.get("old", ""), request.form.get("new", ""))
        start_console_session(account)
        return _account_page(message="密码已修改，其他设备上的登录已失效")
    if action == "totp":
        console.enable_totp(session, account, request.form.get("secret", "")[:64], request.form.get("code", ""), now())
        start_console_session(account)
        return _account_page(message="已开启两步验证，下次登录需输入动态码")
    raise Refused("bad_action", "未知操作")
