"""The console's frame: sign-in, rate limits, CSRF, session expiry, roles, invites, TOTP, the audit log."""
from __future__ import annotations

import pyotp
import pytest
from sqlalchemy import select

from database import get_database
from handlers.accounts.console import create_invite
from handlers.audit import Actor
from models import AuditEntry, ConsoleAccount, SignInAttempt
from models.base import utcnow
from models.console import SCHOOL_ADMIN, STAFF
from tests.conftest import count
from tests.console_helpers import (
    PASSWORD,
    csrf,
    csrf_of,
    make_account,
    make_school,
    make_school_admin,
    make_staff,
    sign_in,
)
from tests.factories import PROD_ENV
from web import clock
from web.console import console_required


def _form(client, path="/console/sign-in"):  # type: ignore[no-untyped-def]
    return csrf_of(client.get(path).get_data(as_text=True))


def _username(app, account_id):  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        return session.get(ConsoleAccount, account_id).username


def test_sign_in_lands_on_the_console_home(app, client):
    staff = make_staff(app)
    sign_in(client, app, staff)
    page = client.get("/console/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "平台工作人员" in html and "退出" in html
    assert page.headers["Cache-Control"] == "no-store" and page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


def test_anonymous_visitors_are_sent_to_sign_in_with_their_page_kept(client):
    response = client.get("/console/account?tab=1")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/sign-in?next=/console/account")
    assert client.post("/console/account").status_code == 401


def test_sign_in_returns_to_next_but_never_off_site(app, client):
    staff = make_staff(app)
    name = _username(app, staff)
    for target, expected in (("/console/account", "/console/account"), ("https://evil.example/", "/console/"),
                             ("//evil.example/console/", "/console/"), ("/console/../h5/", "/console/"),
                             ("/h5/", "/console/")):
        client.post("/console/sign-out", data={"csrf_token": csrf(client)} if _signed_in(client) else {})
        response = client.post("/console/sign-in", data={"username": name, "password": PASSWORD, "next": target,
                                                          "csrf_token": _form(client)})
        assert response.status_code == 302 and response.headers["Location"] == expected, target


def _signed_in(client) -> bool:  # type: ignore[no-untyped-def]
    with client.session_transaction() as session:
        return "console_account" in session


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(app, client, db_session):
    staff = make_staff(app)
    wrong = client.post("/console/sign-in", data={"username": _username(app, staff), "password": "nope-nope-nope",
                                                   "csrf_token": _form(client)})
    unknown = client.post("/console/sign-in", data={"username": "nobody", "password": "nope-nope-nope",
                                                     "csrf_token": _form(client)})
    assert wrong.status_code == unknown.status_code == 401
    assert "用户名或密码不正确" in wrong.get_data(as_text=True) and "用户名或密码不正确" in unknown.get_data(
        as_text=True
    )
    assert count(db_session, SignInAttempt) == 2


def test_five_failures_lock_the_name_for_fifteen_minutes_even_with_the_right_password(app, client):
    staff = make_staff(app)
    name = _username(app, staff)
    for _ in range(5):
        assert client.post("/console/sign-in", data={"username": name, "password": "wrong-password-1",
                                                      "csrf_token": _form(client)}).status_code == 401
    locked = client.post("/console/sign-in", data={"username": name.upper(), "password": PASSWORD,
                                                    "csrf_token": _form(client)})
    assert locked.status_code == 429 and "尝试次数过多" in locked.get_data(as_text=True)
    clock.advance(app, 15 * 60 + 1)
    assert client.post("/console/sign-in", data={"username": name, "password": PASSWORD,
                                                  "csrf_token": _form(client)}).status_code == 302


def test_sign_in_without_the_csrf_token_is_refused(app, client):
    staff = make_staff(app)
    client.get("/console/sign-in")
    response = client.post("/console/sign-in", data={"username": _username(app, staff), "password": PASSWORD})
    assert response.status_code == 400 and not _signed_in(client)


def test_every_console_write_needs_the_csrf_token(app, client):
    sign_in(client, app, make_staff(app))
    assert client.post("/console/account", data={"action": "password"}).status_code == 400
    assert client.post("/console/account", data={"action": "password", "csrf_token": "0" * 32}).status_code == 400
    # The token is rotated at sign-in: one seen before signing in is worthless after.
    assert client.post("/console/sign-out").status_code == 400 and _signed_in(client)


def test_an_idle_session_expires_after_thirty_minutes(app, client):
    sign_in(client, app, make_staff(app))
    clock.advance(app, 29 * 60)
    assert client.get("/console/").status_code == 200
    clock.advance(app, 29 * 60)  # still active: the last page refreshed the idle clock
    assert client.get("/console/").status_code == 200
    clock.advance(app, 31 * 60)
    assert client.get("/console/").status_code == 302


def test_a_session_ends_after_twelve_hours_however_active(app, client):
    sign_in(client, app, make_staff(app))
    for _ in range(26):
        clock.advance(app, 28 * 60)
        if client.get("/console/").status_code != 200:
            break
    assert client.get("/console/").status_code == 302


def test_changing_the_password_ends_every_other_session(app):
    staff = make_staff(app)
    first, second = app.test_client(), app.test_client()
    token = sign_in(first, app, staff)
    sign_in(second, app, staff)
    response = first.post("/console/account", data={"action": "password", "old": PASSWORD, "new": "a-new-passw0rd!",
                                                     "new2": "a-new-passw0rd!", "csrf_token": token})
    assert "密码已修改" in response.get_data(as_text=True)
    assert first.get("/console/").status_code == 200
    assert second.get("/console/").status_code == 302


def test_a_disabled_account_is_signed_out_at_once(app, client):
    staff = make_staff(app)
    sign_in(client, app, staff)
    with get_database(app).sessions() as session:
        session.get(ConsoleAccount, staff).disabled = True
        session.commit()
    assert client.get("/console/").status_code == 302


@pytest.mark.parametrize("weak", ["short1!", "aaaaaaaaaaaaaa", "teacher-li-2026"])
def test_weak_passwords_are_refused(app, client, weak):
    sign_in(client, app, make_account(app, STAFF, username="teacher-li"))
    response = client.post("/console/account", data={"action": "password", "old": PASSWORD, "new": weak, "new2": weak,
                                                      "csrf_token": csrf(client)})
    assert "密码" in response.get_data(as_text=True) and "已修改" not in response.get_data(as_text=True)


def test_roles_gate_views_with_403(app, client):
    app.add_url_rule("/console/staff-only", "staff_only", console_required("platform_admin", "staff")(lambda: "ok"))
    school = make_school(app)
    sign_in(client, app, make_school_admin(app, school))
    assert client.get("/console/staff-only").status_code == 403
    assert "没有权限" in client.get("/console/staff-only").get_data(as_text=True)
    other = app.test_client()
    sign_in(other, app, make_staff(app))
    assert other.get("/console/staff-only").get_data(as_text=True) == "ok"


def test_an_invite_opens_an_account_once(app, client, db_session):
    school = make_school(app)
    staff = make_staff(app)
    with get_database(app).sessions() as session:
        _, token = create_invite(session, Actor(staff, "staff"), role=SCHOOL_ADMIN, display_name="<b>王老师</b>",
                                 school_id=school, now=utcnow())
        session.commit()
    page = client.get(f"/console/invite/{token}")
    assert page.status_code == 200 and "&lt;b&gt;王老师&lt;/b&gt;" in page.get_data(as_text=True)
    form = {"username": "wang", "password": "laoshi-密码-2026", "password2": "laoshi-密码-2026",
            "csrf_token": csrf_of(page.get_data(as_text=True))}
    mismatch = client.post(f"/console/invite/{token}", data={**form, "password2": "other-password-9"})
    assert "不一致" in mismatch.get_data(as_text=True)
    assert client.post(f"/console/invite/{token}", data=form).status_code == 302
    assert client.get("/console/").status_code == 200
    account = db_session.scalar(select(ConsoleAccount).where(ConsoleAccount.username == "wang"))
    assert account.role == SCHOOL_ADMIN and account.school_id == school
    again = app.test_client()
    assert again.get(f"/console/invite/{token}").status_code == 404
    assert again.get("/console/invite/not-a-token").status_code == 404
    actions = db_session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["invite.create", "account.create"]


def test_an_invite_expires_after_seven_days(app, client):
    with get_database(app).sessions() as session:
        _, token = create_invite(session, Actor(None, "system"), role=STAFF, display_name="新同事", school_id=None,
                                 now=utcnow())
        session.commit()
    clock.advance(app, 7 * 86400 + 1)
    assert client.get(f"/console/invite/{token}").status_code == 404


def test_totp_once_enabled_is_asked_at_sign_in(app, client, db_session):
    admin = make_account(app, "platform_admin")
    sign_in(client, app, admin)
    page = client.get("/console/account").get_data(as_text=True)
    secret = page.split("<code>")[1].split("</code>")[0]
    wrong = client.post("/console/account", data={"action": "totp", "secret": secret, "code": "000000",
                                                  "csrf_token": csrf(client)})
    assert "动态码不正确" in wrong.get_data(as_text=True)
    code = pyotp.TOTP(secret).at(utcnow())
    assert "已开启两步验证" in client.post("/console/account", data={
        "action": "totp", "secret": secret, "code": code, "csrf_token": csrf(client)}).get_data(as_text=True)
    other = app.test_client()
    name = _username(app, admin)
    asked = other.post("/console/sign-in", data={"username": name, "password": PASSWORD, "csrf_token": _form(other)})
    assert "动态码" in asked.get_data(as_text=True) and not _signed_in(other)
    ok = other.post("/console/sign-in", data={"username": name, "password": PASSWORD, "totp": pyotp.TOTP(secret).now(),
                                              "csrf_token": _form(other)})
    assert ok.status_code == 302 and _signed_in(other)


def test_script_in_a_display_name_is_rendered_as_text(app, client):
    account = make_account(app, STAFF, display_name="<script>alert(1)</script>")
    sign_in(client, app, account)
    html = client.get("/console/").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_cli_creates_the_first_platform_admin(app, runner, db_session):
    result = runner.invoke(args=["console", "create-account", "root-admin", "--role", "platform_admin"],
                           env={"XINWEI_NEW_PASSWORD": "a-long-enough-pw"})
    assert result.exit_code == 0, result.output
    weak = runner.invoke(args=["console", "create-account", "second", "--role", "staff"],
                         env={"XINWEI_NEW_PASSWORD": "short"})
    assert weak.exit_code != 0 and "密码" in weak.output
    assert (
        db_session.scalar(select(ConsoleAccount.role).where(ConsoleAccount.username == "root-admin"))
        == "platform_admin"
    )


def test_demo_load_adds_demo_console_accounts_once(app, runner, db_session):
    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    roles = dict(db_session.execute(select(ConsoleAccount.username, ConsoleAccount.role)).all())
    assert roles == {"admin": "platform_admin", "staff": "staff", "school": "school_admin"}


def test_the_audit_log_is_append_only_in_the_database(app) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import delete, update
    from sqlalchemy.exc import DBAPIError

    from handlers.audit import record_audit

    with get_database(app).sessions() as session:
        entry = record_audit(session, Actor(None, "staff:wang"), "certificate.revoke", "certificate", 7,
                             before={"status": "valid"}, after={"status": "revoked"})
        session.commit()
        entry_id = entry.id
    engine = get_database(app).engine
    with pytest.raises(DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(update(AuditEntry).where(AuditEntry.id == entry_id).values(actor="someone-else"))
    if engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(delete(AuditEntry).where(AuditEntry.id == entry_id))
    with get_database(app).sessions() as session:
        assert session.get(AuditEntry, entry_id).actor == "staff:wang"


def test_a_console_cookie_copied_before_sign_out_is_worthless_after(app, client) -> None:  # type: ignore[no-untyped-def]
    from tests.console_helpers import make_staff, sign_in

    token = sign_in(client, app, make_staff(app))
    cookie = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    copy = app.test_client()
    copy.set_cookie(cookie.key, cookie.value)
    assert copy.get("/console/").status_code == 200
    assert client.post("/console/sign-out", data={"csrf_token": token}).status_code == 302
    assert copy.get("/console/").status_code == 302  # to sign-in


def test_one_address_spraying_names_cannot_lock_out_an_admin(app, client):  # type: ignore[no-untyped-def]
    staff = make_staff(app)
    name = _username(app, staff)
    for i in range(31):  # 31 failures with random names from one address
        client.post("/console/sign-in", data={"username": f"nobody{i}", "password": "wrong-password-1",
                                              "csrf_token": _form(client)})
    # The sprayer is stopped on names it keeps trying…
    for _ in range(2):
        client.post("/console/sign-in", data={"username": "nobody0", "password": "x-wrong-password",
                                              "csrf_token": _form(client)})
    assert client.post("/console/sign-in", data={"username": "nobody0", "password": "x-wrong-password",
                                                  "csrf_token": _form(client)}).status_code == 429
    # …but the admin, with no failures of their own, still signs in from the same address.
    assert client.post("/console/sign-in", data={"username": name, "password": PASSWORD,
                                                  "csrf_token": _form(client)}).status_code == 302


def test_behind_a_trusted_proxy_the_client_address_is_the_forwarded_one(database_url):  # type: ignore[no-untyped-def]
    from tests.conftest import make_test_app

    app = make_test_app(database_url, TRUSTED_PROXY_HOPS=1)
    seen = []

    @app.get("/_test/addr")
    def addr():  # type: ignore[no-untyped-def]
        from flask import request

        seen.append(request.remote_addr)
        return "ok"

    client = app.test_client()
    client.get("/_test/addr", headers={"X-Forwarded-For": "203.0.113.7"}, environ_base={"REMOTE_ADDR": "10.0.0.2"})
    plain = make_test_app(database_url).test_client()
    assert seen == ["203.0.113.7"]
    assert plain  # without TRUSTED_PROXY_HOPS the header is not believed (werkzeug's default)
    get_database(app).dispose()


def test_absolute_links_come_from_public_url_not_the_host_header(app, client):  # type: ignore[no-untyped-def]
    from web import links

    with app.test_request_context("/", headers={"Host": "evil.example"}):
        assert links.absolute("console.invite", token="t").startswith(app.config["PUBLIC_URL"])


def test_production_refuses_unknown_hosts(database_url):  # type: ignore[no-untyped-def]
    from tests.conftest import make_test_app

    app = make_test_app(database_url, **{**PROD_ENV, "DATABASE_URL": database_url})
    client = app.test_client()
    assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/healthz", headers={"Host": "xinwei.example.cn"}).status_code == 200
    get_database(app).dispose()
