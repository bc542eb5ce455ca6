"""Student sign-in: WeChat OAuth against the fake over real HTTP, the signed session, login_required."""
from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import delete, select

from database import get_database
from models import User
from tests.conftest import ARTIFACTS, count, make_test_app
from tests.factories import authorize, log_in, start_login
from web import auth
from wechat import oauth

STALE = "心委培训"  # the friendly page sends the student back to the menu entry


@pytest.fixture
def home() -> str:
    """The training home, where a signed-in student lands."""
    return "/h5/"


# -- helpers: the three hops of the loop ---------------------------------------------------


def logged_in_as(client) -> str | None:  # type: ignore[no-untyped-def]
    with client.session_transaction() as sess:
        return sess.get(auth.OPENID) if sess.get(auth.USER_ID) is not None else None


def exchanges(fake_wechat) -> int:  # type: ignore[no-untyped-def]
    return len(fake_wechat.requests(oauth.SNS_TOKEN_PATH))


# -- the loop ------------------------------------------------------------------------------

def test_full_login_flow(app, client, fake_wechat, db_session, home) -> None:  # type: ignore[no-untyped-def]
    first = client.get(home)
    assert first.status_code == 302
    assert first.headers["Location"] == f"/h5/login?next={home}"

    location = client.get(first.headers["Location"]).headers["Location"]
    parts = urlsplit(location)
    assert location.startswith(fake_wechat.base_url + "/connect/oauth2/authorize?appid=")
    assert parts.fragment == "wechat_redirect"
    # WeChat's documented parameter order, redirect_uri fully encoded.
    assert [kv.split("=")[0] for kv in parts.query.split("&")] == \
        ["appid", "redirect_uri", "response_type", "scope", "state"]
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fh5%2Foauth%2Fcallback&" in parts.query
    query = parse_qs(parts.query)
    assert query["appid"] == [app.config["WECHAT_APP_ID"]]
    assert query["scope"] == ["snsapi_base"] and query["response_type"] == ["code"]
    assert re.fullmatch(r"[0-9a-f]{32}", query["state"][0])

    callback = client.get(authorize(location, "o_student_flow_0001"))
    assert callback.status_code == 302
    assert callback.headers["Location"] == home
    assert callback.headers["Cache-Control"] == "no-store"

    page = client.get(home)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "心委培训" in text and "完善个人信息" in text
    assert "o_student_flow_0001" not in text  # the openid is never shown

    user = db_session.scalars(select(User).where(User.openid == "o_student_flow_0001")).one()
    with client.session_transaction() as sess:
        assert sess[auth.USER_ID] == user.id and sess[auth.OPENID] == "o_student_flow_0001"
        assert isinstance(sess[auth.LOGIN_AT], (int, float)) and sess.permanent
    [exchange] = fake_wechat.requests(oauth.SNS_TOKEN_PATH)
    assert exchange["query"]["grant_type"] == "authorization_code"
    assert exchange["query"]["secret"] == app.config["WECHAT_APP_SECRET"]


def test_returning_student_gets_the_same_user_and_next(client, fake_wechat, db_session) -> None:  # type: ignore[no-untyped-def]
    assert log_in(client, "o_student_again").status_code == 302
    client.post("/h5/logout", data={"csrf_token": _csrf(client)})
    resp = log_in(client, "o_student_again", "/h5/courses/1?tab=quiz&x=%E8%AF%BE")
    assert resp.headers["Location"] == "/h5/courses/1?tab=quiz&x=%E8%AF%BE"
    assert count(db_session, User) == 1


def test_two_pending_logins_both_work_once(client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    # Two taps on the menu: two pages, two states in one cookie.
    first = authorize(start_login(client, "/h5/a"), "o_two_taps")
    second = authorize(start_login(client, "/h5/b"), "o_two_taps")
    assert client.get(second).headers["Location"] == "/h5/b"
    # The login rotated the session, so the other pending state is gone too.
    assert client.get(first).status_code == 400


def test_oldest_pending_state_is_dropped_beyond_the_cap(client) -> None:  # type: ignore[no-untyped-def]
    for _ in range(auth.MAX_PENDING_STATES + 2):
        start_login(client)
    with client.session_transaction() as sess:
        assert len(sess[auth.PENDING]) == auth.MAX_PENDING_STATES


def test_login_rotates_the_session(client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    with client.session_transaction() as sess:
        sess["planted"] = "by someone else"
        sess[auth.USER_ID] = 999
    log_in(client, "o_rotated")
    with client.session_transaction() as sess:
        assert set(sess.keys()) - {"_permanent"} == {auth.USER_ID, auth.OPENID, auth.LOGIN_AT, auth.CSRF}
        assert sess[auth.USER_ID] != 999


# -- replays, forged and stale state -------------------------------------------------------

def test_replaying_the_callback_fails_without_a_second_login(client, fake_wechat, db_session) -> None:  # type: ignore[no-untyped-def]
    callback = authorize(start_login(client), "o_replay")
    assert client.get(callback).status_code == 302
    replay = client.get(callback)
    assert replay.status_code == 400
    assert STALE in replay.get_data(as_text=True)
    assert exchanges(fake_wechat) == 1  # the state was spent: WeChat is not even asked

    # Another browser with its own fresh state but the spent code: WeChat says 40163.
    other = client.application.test_client()
    state = parse_qs(urlsplit(start_login(other)).query)["state"][0]
    code = parse_qs(urlsplit(callback).query)["code"][0]
    resp = other.get("/h5/oauth/callback", query_string={"code": code, "state": state})
    assert resp.status_code == 400 and STALE in resp.get_data(as_text=True)
    assert exchanges(fake_wechat) == 2
    assert logged_in_as(other) is None
    assert count(db_session, User) == 1


@pytest.mark.parametrize("state", [None, "", "0" * 32, "x" * 600])
def test_missing_or_forged_state_is_refused(client, fake_wechat, db_session, state) -> None:  # type: ignore[no-untyped-def]
    callback = authorize(start_login(client), "o_forged")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    params = {"code": code} if state is None else {"code": code, "state": state}
    resp = client.get("/h5/oauth/callback", query_string=params)
    assert resp.status_code == 400
    body = resp.get_data(as_text=True)
    assert "登录已失效" in body and STALE in body
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert exchanges(fake_wechat) == 0
    assert logged_in_as(client) is None
    assert count(db_session, User) == 0


def test_state_from_another_browser_is_refused(client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    # Login CSRF: an attacker's own callback URL opened in the victim's browser.
    attacker = client.application.test_client()
    callback = authorize(start_login(attacker), "o_attacker")
    assert client.get(callback).status_code == 400
    assert logged_in_as(client) is None
    assert exchanges(fake_wechat) == 0


def test_expired_state_is_refused(client, fake_wechat, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    callback = authorize(start_login(client, "/h5/later"), "o_slow")
    real_now = auth._now()
    monkeypatch.setattr(auth, "_now", lambda: real_now + auth.STATE_TTL_SECONDS + 1)
    resp = client.get(callback)
    assert resp.status_code == 400
    assert 'href="/h5/later"' in resp.get_data(as_text=True)  # the retry keeps where they were going
    assert logged_in_as(client) is None
    assert exchanges(fake_wechat) == 0


def test_callback_without_code_is_refused(client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    state = parse_qs(urlsplit(start_login(client)).query)["state"][0]
    assert client.get("/h5/oauth/callback", query_string={"state": state}).status_code == 400
    assert exchanges(fake_wechat) == 0


# -- WeChat's answers -------------------------------------------------------------------------

def test_snapshot_user_is_never_bound(client, fake_wechat, db_session, home) -> None:  # type: ignore[no-untyped-def]
    fake_wechat.set_user("o_snapshot_visitor", snapshot=True)
    resp = log_in(client, "o_snapshot_visitor")
    assert resp.status_code == 403
    assert "请点击右下角「使用完整服务」后重试" in resp.get_data(as_text=True)
    assert count(db_session, User) == 0
    assert logged_in_as(client) is None
    assert client.get(home).status_code == 302


@pytest.mark.parametrize("errcode,status", [(40029, 400), (40163, 400), (45011, 503), (-1, 503), (40125, 503)])
def test_wechat_errcodes_give_a_friendly_page(client, fake_wechat, db_session, errcode, status) -> None:  # type: ignore[no-untyped-def]
    fake_wechat.fail(oauth.SNS_TOKEN_PATH, errcode=errcode)
    resp = log_in(client, "o_errcode")
    assert resp.status_code == status
    body = resp.get_data(as_text=True)
    assert "weui-msg__title" in body and "Traceback" not in body
    assert count(db_session, User) == 0
    assert logged_in_as(client) is None


def test_dropped_connection_gives_503(client, fake_wechat, db_session) -> None:  # type: ignore[no-untyped-def]
    fake_wechat.fail(oauth.SNS_TOKEN_PATH, drop=True)
    resp = log_in(client, "o_dropped")
    assert resp.status_code == 503
    assert "微信暂时无法确认你的身份" in resp.get_data(as_text=True)
    assert count(db_session, User) == 0
    assert logged_in_as(client) is None


def test_slow_wechat_times_out_with_503(app, client, fake_wechat, db_session) -> None:  # type: ignore[no-untyped-def]
    app.config["WECHAT_HTTP_TIMEOUT"] = 0.3
    fake_wechat.fail(oauth.SNS_TOKEN_PATH, delay=1.0)
    assert log_in(client, "o_slow_wechat").status_code == 503
    assert count(db_session, User) == 0


def test_nothing_secret_reaches_the_logs(client, fake_wechat, caplog) -> None:  # type: ignore[no-untyped-def]
    # INFO, as LOG_LEVEL defaults to: at DEBUG, urllib3 itself logs every request line, query included.
    caplog.set_level(logging.INFO)
    callback = authorize(start_login(client), "o_log_secret_1")
    client.get(callback)
    client.get(callback)  # a refused replay logs too
    fake_wechat.fail(oauth.SNS_TOKEN_PATH, drop=True)
    other = client.application.test_client()
    other_callback = authorize(start_login(other), "o_log_secret_2")
    other.get(other_callback)
    # werkzeug's lines are the fake WeChat's own access log (WeChat's side, not ours).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "werkzeug")
    for callback_url in (callback, other_callback):
        query = parse_qs(urlsplit(callback_url).query)
        assert query["code"][0] not in logged and query["state"][0] not in logged
    assert "o_log_secret" not in logged
    assert "errcode=None" in logged  # the failure itself is visible


# -- next: open redirects --------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    None, "", "//evil.com", "//evil.com/h5/", "https://evil.com/h5/", "http:/h5/", "javascript:alert(1)",
    "/\\evil.com", "/h5\\..\\evil", "\\\\evil.com", "/h5/\\evil.com", "/admin", "/h5", " /h5/",
    "/h5/\r\nSet-Cookie: x=1", "/h5/\nx", "/h5/../admin", "/h5/%2e%2e/admin", "/h5/%2E%2E/%2e%2e/x",
    "/h5/./x", "/h5/<script>alert(1)</script>", '/h5/"onmouseover=1', "/h5/#frag", "/h5/\tx",
    "/h5/" + "a" * 600, "/h5/课程",
])
def test_unsafe_next_falls_back_to_home(bad) -> None:  # type: ignore[no-untyped-def]
    assert auth.safe_next(bad) == "/h5/"


@pytest.mark.parametrize("good", ["/h5/", "/h5/courses/1", "/h5/q?a=1&b=%E8%AF%BE", "/h5/a/b.c~d"])
def test_safe_next_is_kept(good) -> None:  # type: ignore[no-untyped-def]
    assert auth.safe_next(good) == good


@pytest.mark.parametrize("bad", ["//evil.com", "https://evil.com/", "/\\evil.com", "/h5/\r\nLocation: //evil.com"])
def test_open_redirect_attempts_end_on_home(client, fake_wechat, bad) -> None:  # type: ignore[no-untyped-def]
    resp = log_in(client, "o_redirect", bad)
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/h5/"


# -- login_required and the session ---------------------------------------------------------

def test_login_required_redirects_with_path_and_query(client, home) -> None:  # type: ignore[no-untyped-def]
    resp = client.get(home + "?tab=2&q=%E8%AF%BE")
    assert resp.status_code == 302
    location = urlsplit(resp.headers["Location"])
    assert location.path == "/h5/login"
    assert parse_qs(location.query)["next"] == [home + "?tab=2&q=%E8%AF%BE"]
    # Raw UTF-8 in the query (some clients send it unencoded) comes back percent-encoded.
    raw = client.get(home, environ_overrides={"QUERY_STRING": "q=课".encode().decode("latin-1")})
    assert parse_qs(urlsplit(raw.headers["Location"]).query)["next"] == [home + "?q=%E8%AF%BE"]


def test_login_required_answers_401_to_other_methods(app, client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    @app.post("/h5/_probe")
    @auth.login_required
    def probe():  # type: ignore[no-untyped-def]
        return {"user_id": auth.current_user_id(), "openid": auth.current_user().openid}

    resp = client.post("/h5/_probe")
    assert resp.status_code == 401 and resp.get_json()["error"] == "login_required"
    log_in(client, "o_probe")
    assert client.post("/h5/_probe").get_json()["openid"] == "o_probe"


def test_deleted_user_is_sent_to_login(app, client, fake_wechat, home) -> None:  # type: ignore[no-untyped-def]
    app.config["H5_USER_CHECK_SECONDS"] = 0  # check on every request
    log_in(client, "o_deleted")
    assert client.get(home).status_code == 200
    with get_database(app).sessions() as s:
        s.execute(delete(User))
        s.commit()
    resp = client.get(home)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/h5/login")
    assert logged_in_as(client) is None


def test_the_user_check_is_cached_for_a_while(app, client, fake_wechat, home) -> None:  # type: ignore[no-untyped-def]
    log_in(client, "o_cached")
    assert client.get(home).status_code == 200
    with get_database(app).sessions() as s:
        s.execute(delete(User))
        s.commit()
    # Within H5_USER_CHECK_SECONDS the session is trusted without asking the database again...
    assert client.get("/h5/profile").status_code == 200
    app.config["H5_USER_CHECK_SECONDS"] = 0
    # ...after it, the removed user is signed out.
    assert client.get(home).status_code == 302


def test_session_for_another_openid_is_refused(app, client, fake_wechat, home) -> None:  # type: ignore[no-untyped-def]
    log_in(client, "o_real_owner")
    assert client.get(home).status_code == 200
    with client.session_transaction() as sess:
        sess[auth.OPENID] = "o_someone_else"  # e.g. ids reused after a table was emptied
    assert client.get(home).status_code == 302


def test_login_expires_after_its_lifetime(client, fake_wechat, monkeypatch, home) -> None:  # type: ignore[no-untyped-def]
    log_in(client, "o_old_login")
    real_now = auth._now()
    monkeypatch.setattr(auth, "_now", lambda: real_now + 6 * 24 * 3600)
    assert client.get(home).status_code == 200
    monkeypatch.setattr(auth, "_now", lambda: real_now + 7 * 24 * 3600 + 5)
    assert client.get(home).status_code == 302


def test_session_cookie_flags(client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    resp = log_in(client, "o_cookie")
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Expires=" in cookie  # permanent, with a lifetime
    assert "Secure" not in cookie  # PUBLIC_URL is http in tests


def test_session_cookie_is_secure_behind_https(database_url) -> None:  # type: ignore[no-untyped-def]
    app = make_test_app(database_url, PUBLIC_URL="https://xinwei.example.edu.cn")
    if "auth" not in app.blueprints:
        auth.init_app(app)
    try:
        resp = app.test_client().get("/h5/login")
        assert "Secure" in resp.headers["Set-Cookie"]
        assert "redirect_uri=https%3A%2F%2Fxinwei.example.edu.cn%2Fh5%2Foauth%2Fcallback" in resp.headers["Location"]
    finally:
        get_database(app).dispose()


# -- logout ------------------------------------------------------------------------------------

def _csrf(client) -> str:  # type: ignore[no-untyped-def]
    with client.session_transaction() as sess:
        return sess[auth.CSRF]


def test_logout_needs_the_csrf_token(client, fake_wechat, home) -> None:  # type: ignore[no-untyped-def]
    log_in(client, "o_logout")
    assert client.post("/h5/logout").status_code == 400
    assert client.post("/h5/logout", data={"csrf_token": "0" * 32}).status_code == 400
    assert logged_in_as(client) == "o_logout"

    resp = client.post("/h5/logout", headers={"X-CSRF-Token": _csrf(client)})
    assert resp.status_code == 303 and resp.headers["Location"] == "/h5/logged-out"
    assert logged_in_as(client) is None
    assert "你已退出登录" in client.get("/h5/logged-out").get_data(as_text=True)
    assert client.get(home).status_code == 302


def test_home_page_logout_form_carries_the_token(client, fake_wechat, home) -> None:  # type: ignore[no-untyped-def]
    log_in(client, "o_form")
    page = client.get(home).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([0-9a-f]{32})"', page).group(1)  # type: ignore[union-attr]
    assert client.post("/h5/logout", data={"csrf_token": token}).status_code == 303


# -- escaping ----------------------------------------------------------------------------------

def test_script_in_openid_is_refused_and_never_rendered(client, fake_wechat, db_session) -> None:  # type: ignore[no-untyped-def]
    resp = log_in(client, "<script>alert(1)</script>")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 503
    assert "<script" not in body
    assert count(db_session, User) == 0


def test_script_in_next_is_never_rendered(client, fake_wechat, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    evil = '/h5/"><script>alert(1)</script>'
    callback = authorize(start_login(client, evil), "o_xss_next")
    real_now = auth._now()
    monkeypatch.setattr(auth, "_now", lambda: real_now + auth.STATE_TTL_SECONDS + 1)
    body = client.get(callback).get_data(as_text=True)  # the page with a retry link
    assert "<script" not in body and 'href="/h5/"' in body
    monkeypatch.undo()
    assert log_in(client, "o_xss_next", evil).headers["Location"] == "/h5/"


def test_problem_page_escapes_what_it_is_given(app) -> None:
    with app.test_request_context():
        resp = auth._problem(400, "<b>t</b>", "<script>x</script>", retry='/h5/"><script>')
    body = resp.get_data(as_text=True)
    assert "<script>" not in body and "&lt;script&gt;" in body and "<b>t</b>" not in body


# -- a real browser ----------------------------------------------------------------------------

def test_browser_login_loop(app, live_server, phone, db_session, home) -> None:  # type: ignore[no-untyped-def]
    app.config["PUBLIC_URL"] = live_server.url
    phone.goto(f"{live_server.url}{home}")
    # No WeChat user on this phone yet: the fake asks which one to act as (real WeChat would not).
    phone.get_by_placeholder("openid").fill("o_browser_student_7788")
    phone.get_by_role("button", name="授权").click()
    phone.get_by_text("第一步：完善个人信息").wait_for()
    assert urlsplit(phone.url).path == home
    cookies = {c["name"]: c for c in phone.context.cookies(live_server.url)}
    assert cookies["session"]["httpOnly"] and cookies["session"]["sameSite"] == "Lax"
    ARTIFACTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(ARTIFACTS / "h5-login.png"), full_page=True)
    assert db_session.scalars(select(User).where(User.openid == "o_browser_student_7788")).one()

    # Inside WeChat there is no 退出登录 (WeChat's own sign-in would only sign in again); the
    # form is there in other browsers. Sign out as that form does, then back in: the fake
    # remembers the phone's WeChat user, so no form is needed.
    assert phone.get_by_role("button", name="退出登录").count() == 0
    phone.evaluate("""() => { const f = document.createElement('form'); f.method = 'post'; f.action = '/h5/logout';
        const t = document.createElement('input'); t.name = 'csrf_token';
        t.value = document.querySelector('meta[name="csrf-token"]').content; f.appendChild(t);
        document.body.appendChild(f); f.submit(); }""")
    phone.get_by_text("你已退出登录").wait_for()
    phone.get_by_role("link", name="重新进入").click()
    # Back through OAuth to /h5/, whichever home serves it, without the fake's form.
    def landed(url: str) -> bool:
        return url.startswith(live_server.url + "/h5/") and not urlsplit(url).path.startswith(
            ("/h5/login", "/h5/oauth/", "/h5/logged-out"))

    phone.wait_for_url(landed)
    assert phone.get_by_placeholder("openid").count() == 0


def test_a_cookie_copied_before_logout_is_worthless_after(app, client, fake_wechat, home) -> None:  # type: ignore[no-untyped-def]
    log_in(client, "o_copied")
    cookie = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    copy = app.test_client()
    copy.set_cookie(cookie.key, cookie.value)
    assert copy.get(home).status_code == 200
    assert client.post("/h5/logout", data={"csrf_token": _csrf(client)}).status_code == 303
    # The other host's cache of checked users lives H5_USER_CHECK_SECONDS; this host forgot at once.
    assert copy.get(home).status_code == 302
    # A new sign-in works again.
    log_in(client, "o_copied")
    assert client.get(home).status_code == 200
