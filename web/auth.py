"""Student sign-in for the H5 pages: WeChat OAuth (snsapi_base), the signed session, login_required."""
from __future__ import annotations

import functools
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import select

import telemetry
from database import get_database, get_session
from handlers.accounts.followers import ensure_user, sign_out
from models import User
from web.boundary import commit_early
from web.clock import now
from wechat.oauth import OAuthCodeRejected, OAuthUnavailable, authorize_url, exchange_code

logger = logging.getLogger(__name__)

bp = Blueprint("auth", __name__, template_folder="templates")
# The placeholder training home at /h5/, kept apart so that the real one (another blueprint)
# replaces it by not registering this one: two views on one URL would be decided by order.

DEFAULT_NEXT = "/h5/"
# WeChat allows a-zA-Z0-9 in `state`, up to 128 bytes: 32 hex characters are 128 random bits.
STATE_BYTES = 16
STATE_TTL_SECONDS = 600
# Several pending logins may coexist (two taps on the menu open two pages); the cap keeps the
# signed cookie far below the browsers' 4 KiB limit whatever `next` values are stored.
MAX_PENDING_STATES = 4
MAX_NEXT_LENGTH = 512
SESSION_DAYS_DEFAULT = 7

# Session keys. The cookie is signed, not encrypted: nothing here is secret from its holder.
USER_ID = "user_id"
OPENID = "openid"
LOGIN_AT = "login_at"
CSRF = "csrf"
PENDING = "oauth_pending"

# A `next` may only use these characters: no backslash, quote, angle bracket, space, control
# character or '#', so it cannot leave the site, break a header or a page, or hide a host.
NEXT_CHARS = re.compile(r"^[A-Za-z0-9\-._~!$&*+,;=:@/?%]+$")

F = TypeVar("F", bound=Callable[..., Any])


def _now() -> float:
    """The clock for state expiry and session age (tests move it)."""
    return time.time()


def init_app(app: Flask) -> None:
    """Register the sign-in blueprint (not the placeholder home) and the session cookie's settings.

    SameSite=Lax, not Strict: WeChat's redirect back to the callback is a cross-site top-level
    navigation, and the cookie holding `state` must come with it.
    """
    days = float(app.config.get("H5_SESSION_DAYS") or SESSION_DAYS_DEFAULT)
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(days=days)
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = str(app.config.get("PUBLIC_URL") or "").startswith("https://")
    app.register_blueprint(bp)


# -- the redirect target ----------------------------------------------------------------

def safe_next(value: str | None, home: str = DEFAULT_NEXT) -> str:
    """`value` if it is a relative path under `home` (the training home /h5/, or /console/) on
    this site, else `home`."""
    if not value or len(value) > MAX_NEXT_LENGTH or not value.startswith(home):
        return home
    if not NEXT_CHARS.match(value):
        return home
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return home
    # Browsers resolve '..' (also written %2e%2e) before asking: /h5/../admin is /admin.
    if any(segment in {".", ".."} for segment in unquote(parts.path).split("/")):
        return home
    return value


def _current_target() -> str:
    """This request's path and query, encoded as the browser would send them."""
    target = quote(request.path, safe="/-._~!$&*+,;=:@")
    if request.query_string:
        # The raw bytes: what was already percent-encoded stays so, stray bytes get encoded.
        target += "?" + quote(request.query_string, safe="=&%+-._~!$*,;:@/?")
    return target


def login_url(next_path: str | None = None) -> str:
    """Where to send a visitor to sign in and come back to `next_path` (if it is safe)."""
    return url_for("auth.login", next=safe_next(next_path))


# -- the signed session ---------------------------------------------------------------------

def _lifetime_seconds() -> float:
    return current_app.permanent_session_lifetime.total_seconds()


def current_user_id() -> int | None:
    """The signed-in student's user id, or None. Checks the session's age, not the database
    (login_required does that once per request)."""
    cached = g.get("student_user_id")
    if cached is not None:
        return cached
    user_id, openid, login_at = session.get(USER_ID), session.get(OPENID), session.get(LOGIN_AT)
    if not isinstance(user_id, int) or not isinstance(openid, str) or not isinstance(login_at, (int, float)):
        return None
    # The cookie's own expiry slides with use; this bounds a login's life absolutely.
    if not 0 <= _now() - login_at <= _lifetime_seconds():
        return None
    return user_id


def current_user() -> User:
    """The signed-in student's row in the request's session (so a view can change it and
    commit once). Only inside login_required views."""
    user = g.get("student_user")
    if user is None:
        user_id = current_user_id()
        if user_id is None:
            raise RuntimeError("current_user() outside a login_required view")
        user = get_session().get(User, user_id)
        if user is None:
            raise RuntimeError("the signed-in user disappeared during the request")
        g.student_user = user
    return user


# (user id, openid) pairs recently checked against the database, per app and process: the
# player's heartbeats and page loads need not each ask again (it was the costliest part of a
# heartbeat). H5_USER_CHECK_SECONDS bounds how long a session outlives a removed user.
CHECKED_USERS = "xinwei.checked_users"
_CHECK_MAX = 10_000


def _user_still_exists(user_id: int, openid: str, login_at: float) -> bool:
    """The user is still there with this openid, and has not signed out since this login."""
    key = (user_id, openid, login_at)
    checked_users: dict[tuple[int, str], float] = current_app.extensions.setdefault(CHECKED_USERS, {})
    checked = checked_users.get(key)
    if checked is not None and time.monotonic() - checked < float(current_app.config["H5_USER_CHECK_SECONDS"]):
        return True
    # A reader session: on SQLite it never takes the write lock, so read-only pages stay
    # concurrent. The openid check stops a reused id (a restored or emptied table) from
    # handing one student's session to another.
    with get_database().readers() as reader:
        row = reader.execute(select(User.openid, User.signed_out_at).where(User.id == user_id)).first()
        reader.rollback()
    ok = row is not None and hmac.compare_digest(row[0].encode(), openid.encode()) \
        and (row[1] is None or login_at > row[1].timestamp())
    if ok:
        if len(checked_users) >= _CHECK_MAX:
            checked_users.clear()
        checked_users[key] = time.monotonic()
    else:
        checked_users.pop(key, None)
    return ok


def login_required(view: F) -> F:
    """H5 views: anonymous visitors go through WeChat OAuth and come back here.

    GET/HEAD are redirected to /h5/login?next=<this path and query>; other methods (the
    pages' own fetch calls) get 401 JSON, since a redirect cannot replay their body.
    """
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        user_id = current_user_id()
        openid = session.get(OPENID)
        if user_id is None or not isinstance(openid, str) \
                or not _user_still_exists(user_id, openid, float(session.get(LOGIN_AT, 0))):
            for key in (USER_ID, OPENID, LOGIN_AT, CSRF):
                session.pop(key, None)
            if request.method in {"GET", "HEAD"}:
                return redirect(login_url(_current_target()), code=302)
            return make_response(jsonify(error="login_required", login=login_url(DEFAULT_NEXT)), 401)
        g.student_user_id = user_id
        telemetry.openid_hash.set(telemetry.hash_openid(openid, current_app.config["SECRET_KEY"]))
        return view(*args, **kwargs)
    return wrapped  # type: ignore[return-value]


def csrf_token() -> str:
    """The session's anti-forgery token for H5 forms and fetch calls (field `csrf_token` or
    header X-CSRF-Token). Made at login; made here if an older session lacks one."""
    token = session.get(CSRF)
    if not isinstance(token, str) or not token:
        token = session[CSRF] = secrets.token_hex(16)
    return token


def csrf_ok() -> bool:
    """Whether this request carries the session's token (constant-time comparison)."""
    expected = session.get(CSRF)
    given = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    return isinstance(expected, str) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


bp.add_app_template_global(csrf_token, "csrf_token")


# -- pending logins (state) -------------------------------------------------------------------

def _fresh(entry: Any, now: float) -> bool:
    return (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], (int, float))
            and isinstance(entry[1], str) and 0 <= now - entry[0] <= STATE_TTL_SECONDS)


def _pending() -> dict[str, list[Any]]:
    """Pending logins by state: [issued_at, next]; expired ones dropped."""
    raw = session.get(PENDING)
    now = _now()
    return {k: v for k, v in raw.items() if _fresh(v, now)} if isinstance(raw, dict) else {}


def _take_state(state: str) -> tuple[bool, str]:
    """Remove the pending login `state` (single use): (whether it was known and fresh, its next)."""
    raw = session.get(PENDING)
    if not state or not isinstance(raw, dict) or state not in raw:
        return False, DEFAULT_NEXT
    entry = raw[state]
    # Removed whether fresh or expired, and the cookie saved either way: a reload or a
    # replay of the callback URL then finds nothing.
    remaining = {k: v for k, v in raw.items() if k != state}
    if remaining:
        session[PENDING] = remaining
    else:
        session.pop(PENDING, None)
    if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[1], str):
        return False, DEFAULT_NEXT
    return _fresh(entry, _now()), safe_next(entry[1])


# -- views ---------------------------------------------------------------------------------

def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _problem(status: int, title: str, message: str, *, retry: str | None = DEFAULT_NEXT) -> Response:
    response = make_response(render_template("auth/problem.html", title=title, message=message, retry=retry),
                             status)
    # The callback URL carries the code and state: keep them out of any Referer.
    response.headers["Referrer-Policy"] = "no-referrer"
    return _no_store(response)


@bp.get("/h5/login")
def login() -> Response:
    """Start WeChat OAuth: remember a fresh single-use state with where to go afterwards."""
    state = secrets.token_hex(STATE_BYTES)
    pending = _pending()
    while len(pending) >= MAX_PENDING_STATES:
        pending.pop(min(pending, key=lambda k: pending[k][0]))
    pending[state] = [int(_now()), safe_next(request.args.get("next"))]
    session[PENDING] = pending
    redirect_uri = str(current_app.config["PUBLIC_URL"]).rstrip("/") + url_for("auth.oauth_callback")
    return _no_store(redirect(authorize_url(current_app.config, redirect_uri, state), code=302))


STALE_TITLE = "登录已失效"
STALE_MESSAGE = "这个页面已经过期或已被使用。请返回公众号，点击菜单「毫末平台」→「心委培训」重新进入。"


@bp.get("/h5/oauth/callback")
def oauth_callback() -> Response:
    """WeChat sends the student back here with a code; trade it for the openid and sign in."""
    state_ok, next_path = _take_state(request.args.get("state", ""))
    if not state_ok:
        logger.info("OAuth callback refused: state missing, unknown, reused or expired")
        return _problem(400, STALE_TITLE, STALE_MESSAGE, retry=next_path)
    code = request.args.get("code", "")
    if not code or len(code) > 512:
        return _problem(400, STALE_TITLE, STALE_MESSAGE, retry=next_path)
    try:
        grant = exchange_code(current_app.config, code)
    except OAuthCodeRejected:
        return _problem(400, STALE_TITLE, STALE_MESSAGE, retry=next_path)
    except OAuthUnavailable:
        return _problem(503, "微信暂时无法确认你的身份", "网络不太稳定，请稍后再试一次。", retry=next_path)
    if grant.snapshot:
        # 快照页: WeChat shows the page to a virtual user whose openid is not the student's.
        # Binding it would attach a stranger's progress; nothing is written.
        logger.info("OAuth callback refused: snapshot (快照页) visitor")
        return _problem(403, "请使用完整服务", "当前是预览模式，无法识别你的身份。请点击右下角「使用完整服务」后重试。",
                        retry=None)

    user_id = ensure_user(get_session(), grant.openid, now=now()).id
    # Rotate: nothing from before the login (pending states, another student's keys) survives.
    session.clear()
    session.permanent = True
    session[USER_ID] = user_id
    session[OPENID] = grant.openid
    session[LOGIN_AT] = round(_now(), 3)  # to the millisecond: a sign-out just after still ends it
    session[CSRF] = secrets.token_hex(16)
    telemetry.openid_hash.set(telemetry.hash_openid(grant.openid, current_app.config["SECRET_KEY"]))
    response = _no_store(redirect(next_path, code=302))
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.post("/h5/logout")
def logout() -> Response:
    """Sign out. CSRF: the session's token in form field `csrf_token` or header X-CSRF-Token."""
    user_id = session.get(USER_ID)
    if user_id is not None and not csrf_ok():
        return _problem(400, "无法退出登录", "页面已过期，请刷新后再试。")
    if isinstance(user_id, int):
        # Revoked on the server: a copy of this cookie (or another device's) stops working.
        # Other hosts notice within H5_USER_CHECK_SECONDS (their cache of checked users).
        sign_out(get_session(), user_id, datetime.fromtimestamp(_now(), timezone.utc))
        commit_early()  # this host's cache is cleared only once the sign-out is durable
        checked: dict[tuple[int, str, float], float] = current_app.extensions.setdefault(CHECKED_USERS, {})
        for key in [k for k in checked if k[0] == user_id]:
            checked.pop(key, None)
    session.clear()
    return redirect(url_for("auth.logged_out"), code=303)


@bp.get("/h5/logged-out")
def logged_out() -> Response:
    return _no_store(make_response(render_template("auth/logged_out.html", home=DEFAULT_NEXT)))
