"""Tests for the fake WeChat server: WeChat's token, OAuth, message and menu rules, and its controls."""
from __future__ import annotations

import time

import pytest
import requests

from wechat.fake import FakeWeChatServer

APP_ID = "wxfaketest000001"
SECRET = "fake0secret0for0tests00000000000"


@pytest.fixture(scope="module")
def server():
    with FakeWeChatServer(APP_ID, SECRET) as srv:
        yield srv


@pytest.fixture
def fake(server):
    server.reset()
    yield server
    server.reset()


def get(fake, path, **params):
    return requests.get(fake.base_url + path, params=params, timeout=5).json()


def post(fake, path, body=None, **params):
    return requests.post(fake.base_url + path, params=params, json=body, timeout=5).json()


def fetch_token(fake, appid=APP_ID, secret=SECRET):
    return get(fake, "/cgi-bin/token", grant_type="client_credential", appid=appid, secret=secret)


def menu_get(fake, token):
    return get(fake, "/cgi-bin/menu/get", access_token=token)


# -- access tokens ---------------------------------------------------------------------------

def test_token_fetch_and_credential_errors(fake):
    body = fetch_token(fake)
    assert body["expires_in"] == 7200 and len(body["access_token"]) >= 32
    assert fetch_token(fake, appid="wxwrong")["errcode"] == 40013
    assert fetch_token(fake, secret="wrong")["errcode"] == 40125
    assert get(fake, "/cgi-bin/token", grant_type="password", appid=APP_ID, secret=SECRET)["errcode"] == 40002
    assert fake.token_fetch_count == 1


def test_each_fetch_issues_new_token_and_old_one_lives_five_minutes(fake):
    old = fetch_token(fake)["access_token"]
    new = fetch_token(fake)["access_token"]
    assert old != new
    assert menu_get(fake, old)["errcode"] == 46003  # still accepted (no menu yet)
    fake.advance(299)
    assert menu_get(fake, old)["errcode"] == 46003
    fake.advance(2)
    assert menu_get(fake, old)["errcode"] == 40001
    assert menu_get(fake, new)["errcode"] == 46003


def test_token_expiry_unknown_malformed_missing(fake):
    token = fetch_token(fake)["access_token"]
    assert menu_get(fake, "A" * 40)["errcode"] == 40001
    assert menu_get(fake, "bad token!")["errcode"] == 40014
    assert get(fake, "/cgi-bin/menu/get")["errcode"] == 41001
    fake.advance(7200)
    assert menu_get(fake, token)["errcode"] == 42001


def test_expire_tokens_control(fake):
    token = fetch_token(fake)["access_token"]
    assert post(fake, "/_fake/tokens/expire", {"invalidate": True})["count"] == 1
    assert menu_get(fake, token)["errcode"] == 40001
    token = fetch_token(fake)["access_token"]
    fake.expire_tokens()
    assert menu_get(fake, token)["errcode"] == 42001


def test_daily_quota():
    with FakeWeChatServer(APP_ID, SECRET, daily_token_quota=3) as small:
        assert all("access_token" in fetch_token(small) for _ in range(3))
        assert fetch_token(small)["errcode"] == 45009
        small.advance(86400)
        assert "access_token" in fetch_token(small)


def test_stable_token(fake):
    body = {"grant_type": "client_credential", "appid": APP_ID, "secret": SECRET}
    first = post(fake, "/cgi-bin/stable_token", body)["access_token"]
    assert post(fake, "/cgi-bin/stable_token", body)["access_token"] == first
    forced = post(fake, "/cgi-bin/stable_token", {**body, "force_refresh": True})["access_token"]
    assert forced != first
    assert menu_get(fake, forced)["errcode"] == 46003
    assert post(fake, "/cgi-bin/stable_token", {**body, "secret": "nope"})["errcode"] == 40125


def test_jsapi_ticket(fake):
    token = fetch_token(fake)["access_token"]
    body = get(fake, "/cgi-bin/ticket/getticket", access_token=token, type="jsapi")
    assert body["errcode"] == 0 and body["errmsg"] == "ok" and body["expires_in"] == 7200 and body["ticket"]
    assert get(fake, "/cgi-bin/ticket/getticket", access_token="x" * 40, type="jsapi")["errcode"] == 40001


# -- menu --------------------------------------------------------------------------------------

def test_menu_create_get_delete(fake):
    token = fetch_token(fake)["access_token"]
    menu = {"button": [{"name": "我的", "sub_button": [{"type": "click", "name": "显示证书", "key": "K"}]}]}
    assert post(fake, "/cgi-bin/menu/create", menu, access_token=token)["errcode"] == 0
    assert menu_get(fake, token) == {"menu": menu}
    assert get(fake, "/cgi-bin/menu/delete", access_token=token)["errcode"] == 0
    assert menu_get(fake, token)["errcode"] == 46003


@pytest.mark.parametrize("menu, errcode", [
    ({"button": []}, 40016),
    ({"button": [{"type": "click", "name": "a", "key": "k"}] * 4}, 40016),
    ({"button": [{"type": "click", "name": "一二三四五六", "key": "k"}]}, 40018),
    ({"button": [{"type": "bogus", "name": "a", "key": "k"}]}, 40017),
    ({"button": [{"type": "click", "name": "a", "key": "k" * 129}]}, 40019),
    ({"button": [{"type": "view", "name": "a", "url": "http://x/" + "u" * 1020}]}, 40020),
    ({"button": [{"name": "a", "sub_button": [{"type": "click", "name": "b", "key": "k"}] * 6}]}, 40023),
    ({"button": [{"name": "a", "sub_button": [{"type": "nope", "name": "b", "key": "k"}]}]}, 40024),
    ({"button": [{"name": "a", "sub_button": [{"type": "click", "name": "长" * 21, "key": "k"}]}]}, 40025),
])
def test_menu_create_limits(fake, menu, errcode):
    token = fetch_token(fake)["access_token"]
    assert post(fake, "/cgi-bin/menu/create", menu, access_token=token)["errcode"] == errcode
    assert fake.menu is None


# -- messages ------------------------------------------------------------------------------------

def text_message(openid, content="你好"):
    return {"touser": openid, "msgtype": "text", "text": {"content": content}}


def test_custom_send_window_rules(fake):
    token = fetch_token(fake)["access_token"]
    def send(openid):  # type: ignore[no-untyped-def]
        return post(fake, "/cgi-bin/message/custom/send", text_message(openid), access_token=token)
    # Unknown to the test: not enforced.
    assert all(send("o_free")["errcode"] == 0 for _ in range(7))
    fake.set_user("o_in", in_window=True)
    assert [send("o_in")["errcode"] for _ in range(6)] == [0, 0, 0, 0, 0, 45047]
    post(fake, "/_fake/users", {"openid": "o_out", "in_window": False})
    assert send("o_out")["errcode"] == 45015
    fake.set_user("o_late", in_window=True)
    fake.advance(48 * 3600 + 1)
    token = fetch_token(fake)["access_token"]  # the old one expired with the clock jump
    assert send("o_late")["errcode"] == 45015
    bad = post(fake, "/cgi-bin/message/custom/send", {"touser": "o", "msgtype": "text"}, access_token=token)
    assert bad["errcode"] == 40008


def test_template_send_dedup_and_follow(fake):
    token = fetch_token(fake)["access_token"]

    def send(openid, client_msg_id=None):
        body = {"touser": openid, "template_id": "TPL", "data": {"thing1": {"value": "进度"}}}
        if client_msg_id:
            body["client_msg_id"] = client_msg_id
        return post(fake, "/cgi-bin/message/template/send", body, access_token=token)

    first = send("o_admin", "push-1")
    assert first["errcode"] == 0 and isinstance(first["msgid"], int)
    assert send("o_admin", "push-1")["msgid"] == first["msgid"]
    assert send("o_admin", "push-2")["msgid"] != first["msgid"]
    assert send("o_admin")["msgid"] != send("o_admin")["msgid"]
    fake.advance(601)
    assert send("o_admin", "push-1")["msgid"] != first["msgid"]
    fake.set_user("o_gone", following=False)
    assert send("o_gone")["errcode"] == 43004
    assert len([m for m in fake.sent_messages if m["kind"] == "template"]) == 5


def test_media_upload(fake):
    token = fetch_token(fake)["access_token"]
    url = fake.base_url + "/cgi-bin/media/upload"
    res = requests.post(url, params={"access_token": token, "type": "image"},
                        files={"media": ("cert.png", b"\x89PNG fake")}, timeout=5).json()
    assert res["type"] == "image" and res["media_id"] and isinstance(res["created_at"], int)
    missing = requests.post(url, params={"access_token": token, "type": "image"}, timeout=5).json()
    assert missing["errcode"] == 41005
    wrong = requests.post(url, params={"access_token": token, "type": "pdf"},
                          files={"media": ("a.pdf", b"x")}, timeout=5).json()
    assert wrong["errcode"] == 40004
    assert fake.requests("/cgi-bin/media/upload")[0]["files"] == {"media": "cert.png"}


# -- OAuth -----------------------------------------------------------------------------------------

def authorize(fake, **extra):
    params = {"appid": APP_ID, "redirect_uri": "http://127.0.0.1:5000/wechat/oauth?next=%2Fme",
              "response_type": "code", "scope": "snsapi_base", "state": "xyz", **extra}
    return requests.get(fake.base_url + "/connect/oauth2/authorize", params=params,
                        allow_redirects=False, timeout=5)


def code_from(res):
    from urllib.parse import parse_qs, urlsplit
    query = parse_qs(urlsplit(res.headers["Location"]).query)
    assert query["state"] == ["xyz"] and query["next"] == ["/me"]
    return query["code"][0]


def exchange(fake, code):
    return get(fake, "/sns/oauth2/access_token", appid=APP_ID, secret=SECRET, code=code,
               grant_type="authorization_code")


def test_oauth_code_single_use(fake):
    res = authorize(fake, fake_openid="o_student")
    assert res.status_code == 302
    code = code_from(res)
    body = exchange(fake, code)
    assert body["openid"] == "o_student" and body["scope"] == "snsapi_base"
    assert body["access_token"] and body["refresh_token"] and body["expires_in"] == 7200
    assert "is_snapshotuser" not in body
    assert exchange(fake, code)["errcode"] == 40163
    assert exchange(fake, "nosuchcode")["errcode"] == 40029


def test_oauth_code_expires_after_five_minutes(fake):
    code = code_from(authorize(fake, fake_openid="o_student"))
    fake.advance(301)
    assert exchange(fake, code)["errcode"] == 40029


def test_oauth_openid_from_cookie_and_snapshot(fake):
    session = requests.Session()
    session.cookies.set("fake_wechat_openid", "o_cookie")
    fake.set_user("o_cookie", snapshot=True)
    res = session.get(fake.base_url + "/connect/oauth2/authorize", allow_redirects=False, timeout=5, params={
        "appid": APP_ID, "redirect_uri": "http://127.0.0.1:5000/cb?next=%2Fme", "response_type": "code",
        "scope": "snsapi_base", "state": "xyz"})
    body = exchange(fake, code_from(res))
    assert body["openid"] == "o_cookie" and body["is_snapshotuser"] == 1


def test_oauth_without_user_asks_and_bad_appid_rejected(fake):
    res = authorize(fake)
    assert res.status_code == 200 and "fake_openid" in res.text
    assert authorize(fake, appid="wxother", fake_openid="o").status_code == 400


# -- controls ------------------------------------------------------------------------------------

def test_requests_are_recorded_and_filtered(fake):
    token = fetch_token(fake)["access_token"]
    post(fake, "/cgi-bin/message/custom/send", text_message("o1"), access_token=token)
    recorded = requests.get(fake.base_url + "/_fake/requests", params={"path": "/cgi-bin/message/custom/send"},
                            timeout=5).json()["requests"]
    assert len(recorded) == 1
    assert recorded[0]["method"] == "POST" and recorded[0]["json"]["touser"] == "o1"
    assert recorded[0]["query"]["access_token"] == token
    assert [r["path"] for r in fake.requests()] == ["/cgi-bin/token", "/cgi-bin/message/custom/send"]
    post(fake, "/_fake/reset")
    assert fake.requests() == [] and fake.token_fetch_count == 0


def test_fail_applies_exactly_times(fake):
    token = fetch_token(fake)["access_token"]
    assert post(fake, "/_fake/fail", {"path": "/cgi-bin/menu/get", "errcode": 45009, "times": 2})["ok"]
    assert [menu_get(fake, token)["errcode"] for _ in range(3)] == [45009, 45009, 46003]
    # Rules for one path queue in order.
    fake.fail("/cgi-bin/menu/get", errcode=-1)
    fake.fail("/cgi-bin/menu/get", errcode=40001)
    assert [menu_get(fake, token)["errcode"] for _ in range(3)] == [-1, 40001, 46003]
    assert requests.post(fake.base_url + "/_fake/fail", json={"path": "/x", "times": 0}, timeout=5).status_code == 400


def test_fail_delay_and_drop(fake):
    token = fetch_token(fake)["access_token"]
    fake.fail("/cgi-bin/menu/get", delay=0.3)
    started = time.monotonic()
    assert menu_get(fake, token)["errcode"] == 46003  # delayed, then answered normally
    assert time.monotonic() - started >= 0.3
    fake.fail("/cgi-bin/menu/get", drop=True)
    with pytest.raises(requests.ConnectionError):
        menu_get(fake, token)
    assert menu_get(fake, token)["errcode"] == 46003


def test_clock_control_endpoint(fake):
    code = code_from(authorize(fake, fake_openid="o"))
    post(fake, "/_fake/clock", {"advance": 400})
    assert exchange(fake, code)["errcode"] == 40029
