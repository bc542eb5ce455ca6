"""The console's frame: who is signed in, session expiry, role gates, CSRF on every write, the menu."""
from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from flask import Flask, Response, abort, current_app, g, redirect, render_template, request, session, url_for

from database import get_session
from handlers.audit import Actor
from models import ConsoleAccount, School
from models.console import PLATFORM_ADMIN, SCHOOL_ADMIN, STAFF
from web.auth import CSRF, csrf_ok, safe_next
from web.clock import now
from web.console.searches import KEY as SEARCHES
from web.headers import page_policy
from web.ids import id_value

F = TypeVar("F", bound=Callable[..., Any])

CONSOLE_HOME = "/console/"

# Session keys, beside the student's own in the same signed cookie: the console sign-in is a
# separate identity (a school admin may also be a student), so signing out of one keeps the other.
ACCOUNT = "console_account"
EPOCH = "console_epoch"
SIGNED_IN_AT = "console_signed_in_at"
SEEN_AT = "console_seen_at"
# The idle clock is written back at most this often, so a page of fetches does not rewrite the cookie each time.
SEEN_RESOLUTION_SECONDS = 60

ROLE_NAMES = {PLATFORM_ADMIN: "平台管理员", STAFF: "平台工作人员", SCHOOL_ADMIN: "学校管理员"}
STAFF_ROLES = (PLATFORM_ADMIN, STAFF)
ALL_ROLES = (PLATFORM_ADMIN, STAFF, SCHOOL_ADMIN)


@dataclass(frozen=True)
class NavItem:
    label: str
    endpoint: str
    roles: tuple[str, ...]
    order: int


_NAV: dict[str, NavItem] = {}


def register_nav(label: str, endpoint: str, roles: tuple[str, ...], order: int = 50) -> None:
    """Put a page in the console menu for these roles (called at import by each console module).
    An item whose blueprint is not registered on the app is simply not shown."""
    _NAV[endpoint] = NavItem(label, endpoint, tuple(roles), order)


def nav_for(account: ConsoleAccount) -> list[NavItem]:
    known = current_app.view_functions
    return sorted((item for item in _NAV.values() if account.role in item.roles and item.endpoint in known),
                  key=lambda item: (item.order, item.label))


def init_app(app: Flask) -> None:
    app.config.setdefault("CONSOLE_IDLE_MINUTES", 30)
    app.config.setdefault("CONSOLE_SESSION_HOURS", 12)
    app.context_processor(_template_globals)


def _template_globals() -> dict[str, Any]:
    return {"console_role_names": ROLE_NAMES}


def _timestamp() -> int:
    return int(now().timestamp())


def start_console_session(account: ConsoleAccount) -> None:
    """Sign this account in: a fresh CSRF token, so a token seen before sign-in is worthless after."""
    for key in (ACCOUNT, EPOCH, SIGNED_IN_AT, SEEN_AT, SEARCHES):
        session.pop(key, None)
    session.permanent = True
    stamp = _timestamp()
    session[ACCOUNT] = account.id
    session[EPOCH] = account.session_epoch
    session[SIGNED_IN_AT] = stamp
    session[SEEN_AT] = stamp
    session[CSRF] = secrets.token_hex(16)


def end_console_session() -> None:
    for key in (ACCOUNT, EPOCH, SIGNED_IN_AT, SEEN_AT, SEARCHES):
        session.pop(key, None)


def current_account() -> ConsoleAccount | None:
    """The signed-in console account, or None when there is none, it expired (idle or absolute),
    it was disabled, or its password changed since (the epoch moved)."""
    if "console_account" in g:
        return g.console_account  # type: ignore[no-any-return]
    account = _load_account()
    g.console_account = account
    return account


def _load_account() -> ConsoleAccount | None:
    account_id = session.get(ACCOUNT)
    if not isinstance(account_id, int):
        return None
    stamp = _timestamp()
    idle = int(current_app.config["CONSOLE_IDLE_MINUTES"]) * 60
    longest = int(current_app.config["CONSOLE_SESSION_HOURS"]) * 3600
    seen, signed_in = session.get(SEEN_AT), session.get(SIGNED_IN_AT)
    if (
        not isinstance(seen, int)
        or not isinstance(signed_in, int)
        or stamp - seen > idle
        or stamp - signed_in > longest
    ):
        end_console_session()
        return None
    account = get_session().get(ConsoleAccount, account_id)
    if account is None or account.disabled or account.session_epoch != session.get(EPOCH):
        end_console_session()
        return None
    if stamp - seen >= SEEN_RESOLUTION_SECONDS:
        session[SEEN_AT] = stamp
    return account


def current_actor() -> Actor:
    """The signed-in account as the audit log records it (only inside console_required views)."""
    account = current_account()
    if account is None:
        raise RuntimeError("current_actor() outside a signed-in console view")
    return Actor.of(account)


def sign_in_url() -> str:
    target = request.full_path if request.query_string else request.path
    return url_for("console.sign_in") + "?next=" + quote(safe_next(target, CONSOLE_HOME), safe="/")


def console_required(*roles: str) -> Callable[[F], F]:
    """Gate a console view: anonymous visitors go to sign-in; a signed-in account of another role
    gets 403; every request that is not GET/HEAD must carry the CSRF token (400 otherwise)."""
    allowed = tuple(roles) or ALL_ROLES

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            account = current_account()
            if account is None:
                if request.method in ("GET", "HEAD"):
                    return redirect(sign_in_url())
                abort(401)
            if account.role not in allowed:
                abort(403)
            if request.method not in ("GET", "HEAD", "OPTIONS") and not csrf_ok():
                abort(400, description="页面已过期，请刷新后重试")
            return view(*args, **kwargs)

        wrapped.console_roles = allowed  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorate


def school_of(account: ConsoleAccount) -> School:
    """The school a school admin may see. Anything else of theirs is a 404, never a 403: another
    school's data does not even admit to existing."""
    if account.role != SCHOOL_ADMIN or account.school_id is None:
        abort(404)
    school = get_session().get(School, account.school_id)
    if school is None:
        abort(404)
    return school


# Query-string pages and ids are bounded: an offset or id past a 64-bit integer is a database
# error (a 500), and a huge page number an expensive scan.
MAX_PAGE = 10_000


def page_arg(name: str = "page") -> int:
    """The 1-based page number in the query string, clamped to [1, MAX_PAGE]."""
    return max(1, min(id_value(request.args.get(name)) or 1, MAX_PAGE))


def render_console(template: str, status: int = 200, **context: Any) -> Response:
    account = current_account()
    body = render_template(template, account=account, nav=nav_for(account) if account else [], **context)
    response = current_app.make_response((body, status))
    # Console pages show personal data: never cached, never framed.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = page_policy()
    return response
