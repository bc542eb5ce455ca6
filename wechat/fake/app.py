"""The fake WeChat HTTP API: a Flask app serving api.weixin.qq.com and open.weixin.qq.com paths."""
from __future__ import annotations

import functools
import html
import re
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Flask, Response, jsonify, make_response, redirect, request

from wechat.fake.pay import FakePayState, register_pay
from wechat.fake.state import FakeState, OAuthCode, error

OPENID_COOKIE = "fake_wechat_openid"
OPENID_PARAM = "fake_openid"

MENU_TYPES = {
    "click", "view", "miniprogram", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
    "pic_photo_or_album", "pic_weixin", "location_select", "media_id", "view_limited",
    "article_id", "article_view_limited",
}
KEYED_TYPES = {"click", "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album",
               "pic_weixin", "location_select"}
MEDIA_LIMITS = {"image": 10 * 1024 * 1024, "voice": 2 * 1024 * 1024, "video": 10 * 1024 * 1024,
                "thumb": 64 * 1024}


def _nbytes(value: Any) -> int:
    return len(str(value).encode("utf-8"))


def validate_menu(body: Any) -> dict[str, Any] | None:
    """WeChat's errcode for the first problem in a menu/create body, or None."""
    if not isinstance(body, dict):
        return error(47001)
    buttons = body.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return error(40016)
    for top in buttons:
        if not isinstance(top, dict):
            return error(47001)
        if not top.get("name") or _nbytes(top["name"]) > 16:
            return error(40018)
        subs = top.get("sub_button")
        if subs:
            if not isinstance(subs, list) or len(subs) > 5:
                return error(40023)
            for sub in subs:
                problem = _check_leaf(sub, sub_level=True)
                if problem:
                    return problem
        else:
            problem = _check_leaf(top, sub_level=False)
            if problem:
                return problem
    return None


def _check_leaf(button: Any, *, sub_level: bool) -> dict[str, Any] | None:
    codes = (40024, 40025, 40026, 40027) if sub_level else (40017, 40018, 40019, 40020)
    type_code, name_code, key_code, url_code = codes
    if not isinstance(button, dict):
        return error(47001)
    if not button.get("name") or _nbytes(button["name"]) > (60 if sub_level else 16):
        return error(name_code)
    kind = button.get("type")
    if kind not in MENU_TYPES:
        return error(type_code)
    if kind in KEYED_TYPES and (not button.get("key") or _nbytes(button["key"]) > 128):
        return error(key_code)
    if kind in {"view", "miniprogram"} and (not button.get("url") or _nbytes(button["url"]) > 1024):
        return error(url_code)
    return None


def create_fake_wechat(app_id: str, app_secret: str, *, token_ttl: int = 7200,
                       daily_token_quota: int = 2000,
                       clock: Callable[[], float] | None = None) -> Flask:
    """A Flask app that behaves like WeChat's API for one official account.

    The shared state is at ``app.extensions["fake_wechat"]`` (a FakeState).
    """
    app = Flask(__name__)
    state = FakeState(app_id, app_secret, token_ttl=token_ttl, daily_token_quota=daily_token_quota,
                      clock=clock or time.time)
    app.extensions["fake_wechat"] = state
    pay_state = FakePayState(app_id)
    app.extensions["fake_wechat_pay"] = pay_state
    app.json.ensure_ascii = False  # type: ignore[attr-defined]

    def body_json() -> Any:
        return request.get_json(force=True, silent=True)

    @app.before_request
    def record_and_inject() -> Response | None:
        if request.path.startswith("/_fake/"):
            return None
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": request.args.to_dict(),
            "json": body_json() if request.method == "POST" and not request.files else None,
        }
        if request.files:
            entry["files"] = {name: f.filename for name, f in request.files.items()}
        state.record(entry)
        rule = state.take_failure(request.path)
        if rule is None:
            return None
        if rule.delay:
            time.sleep(rule.delay)
        if rule.drop:
            sock = request.environ.get("werkzeug.socket")
            if sock is not None:
                # Close both directions without a byte of response: the client sees
                # the connection reset / remote end closed, as on a network failure.
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return make_response("", 500)
        if rule.errcode is not None:
            return jsonify(error(rule.errcode, "fake failure injected"))
        return None

    def needs_token(view: Callable[[], Response]) -> Callable[[], Response]:
        """Answer 40001/40014/42001 as WeChat does when the access_token is not valid."""
        @functools.wraps(view)
        def guarded() -> Response:
            problem = state.check_token(request.args.get("access_token"))
            return jsonify(problem) if problem else view()
        return guarded

    def json_body(send: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
        body = body_json()
        if not isinstance(body, dict):
            return jsonify(error(47001))
        return jsonify(send(body))

    # -- access tokens ---------------------------------------------------------
    @app.get("/cgi-bin/token")
    def token() -> Response:
        if request.args.get("grant_type") != "client_credential":
            return jsonify(error(40002))
        problem = state.check_credentials(request.args.get("appid"), request.args.get("secret"))
        return jsonify(problem or state.issue_token())

    @app.post("/cgi-bin/stable_token")
    def stable_token() -> Response:
        body = body_json()
        if not isinstance(body, dict):
            return jsonify(error(47001))
        if body.get("grant_type") != "client_credential":
            return jsonify(error(40002))
        problem = state.check_credentials(body.get("appid"), body.get("secret"))
        return jsonify(problem or state.issue_stable_token(bool(body.get("force_refresh"))))

    @app.get("/cgi-bin/ticket/getticket")
    @needs_token
    def getticket() -> Response:
        kind = request.args.get("type", "jsapi")
        if kind not in {"jsapi", "wx_card"}:
            return jsonify(error(40097))
        return jsonify({**error(0), "ticket": secrets.token_urlsafe(60), "expires_in": 7200})

    # -- menu --------------------------------------------------------------------
    @app.post("/cgi-bin/menu/create")
    @needs_token
    def menu_create() -> Response:
        if not request.get_data():
            return jsonify(error(44002))
        body = body_json()
        problem = validate_menu(body)
        if problem:
            return jsonify(problem)
        with state.lock:
            state.menu = {"button": body["button"]}
        return jsonify(error(0))

    @app.get("/cgi-bin/menu/get")
    @needs_token
    def menu_get() -> Response:
        with state.lock:
            menu = state.menu
        if menu is None:
            return jsonify(error(46003))
        return jsonify({"menu": menu})

    @app.get("/cgi-bin/user/info")
    @needs_token
    def user_info() -> Response:
        openid = request.args.get("openid", "")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", openid):
            return jsonify(error(40003))
        return jsonify(state.user_info(openid))

    @app.get("/cgi-bin/menu/delete")
    @needs_token
    def menu_delete() -> Response:
        with state.lock:
            state.menu = None
        return jsonify(error(0))

    # -- messages ------------------------------------------------------------------
    @app.post("/cgi-bin/message/custom/send")
    @needs_token
    def custom_send() -> Response:
        return json_body(state.send_custom)

    @app.post("/cgi-bin/message/template/send")
    @needs_token
    def template_send() -> Response:
        return json_body(state.send_template)

    # -- media ---------------------------------------------------------------------
    @app.post("/cgi-bin/media/upload")
    @needs_token
    def media_upload() -> Response:
        media_type = request.args.get("type", "")
        if media_type not in MEDIA_LIMITS:
            return jsonify(error(40004))
        upload = request.files.get("media")
        if upload is None:
            return jsonify(error(41005))
        data = upload.read()
        if not data:
            return jsonify(error(41005))
        if len(data) > MEDIA_LIMITS[media_type]:
            return jsonify(error(40006))
        return jsonify(state.store_media(media_type, upload.filename or "media", data))

    # -- OAuth (open.weixin.qq.com + api.weixin.qq.com/sns) ---------------------------
    @app.get("/connect/oauth2/authorize")
    def oauth_authorize() -> Response:
        appid = request.args.get("appid")
        redirect_uri = request.args.get("redirect_uri")
        scope = request.args.get("scope")
        if appid != state.app_id or not redirect_uri or request.args.get("response_type") != "code" \
                or scope not in {"snsapi_base", "snsapi_userinfo"}:
            return Response("参数错误：appid、redirect_uri、response_type=code 或 scope 不正确", 400,
                            content_type="text/plain; charset=utf-8")
        openid = request.args.get(OPENID_PARAM) or request.cookies.get(OPENID_COOKIE)
        if not openid:
            return _choose_openid_page()
        code = state.issue_code(openid, appid, scope)
        target = _add_query(redirect_uri, code=code, state=request.args.get("state", ""))
        response = redirect(target, code=302)
        # Remember the chosen dev user, like a phone that stays logged in to WeChat.
        response.set_cookie(OPENID_COOKIE, openid, httponly=True, samesite="Lax")
        return response

    @app.get("/sns/oauth2/access_token")
    def oauth_access_token() -> Response:
        if request.args.get("grant_type") != "authorization_code":
            return jsonify(error(40002))
        appid = request.args.get("appid")
        problem = state.check_credentials(appid, request.args.get("secret"))
        if problem:
            return jsonify(problem)
        grant = state.redeem_code(request.args.get("code"), appid or "")
        if not isinstance(grant, OAuthCode):
            return jsonify(grant)
        body: dict[str, Any] = {
            "access_token": "FAKESNS_" + secrets.token_urlsafe(48),
            "expires_in": 7200,
            "refresh_token": "FAKESNSR_" + secrets.token_urlsafe(48),
            "openid": grant.openid,
            "scope": grant.scope,
        }
        if state.user(grant.openid).snapshot:
            # WeChat adds the field only for 快照页 (snapshot) visitors.
            body["is_snapshotuser"] = 1
        return jsonify(body)

    # -- control endpoints for tests and dev ---------------------------------------
    @app.get("/_fake/requests")
    def control_requests() -> Response:
        return jsonify({"requests": state.recorded(request.args.get("path"))})

    @app.post("/_fake/reset")
    def control_reset() -> Response:
        state.reset()
        pay_state.reset()
        return jsonify({"ok": True})

    @app.post("/_fake/fail")
    def control_fail() -> Response:
        body = body_json() or {}
        try:
            state.add_failure(str(body["path"]), errcode=body.get("errcode"), delay=body.get("delay"),
                              drop=bool(body.get("drop", False)), times=int(body.get("times", 1)))
        except (KeyError, ValueError, TypeError) as exc:
            return make_response(jsonify({"ok": False, "error": str(exc)}), 400)
        return jsonify({"ok": True})

    @app.post("/_fake/users")
    def control_users() -> Response:
        body = body_json() or {}
        if not body.get("openid"):
            return make_response(jsonify({"ok": False, "error": "openid required"}), 400)
        state.set_user(body["openid"], following=body.get("following"), in_window=body.get("in_window"),
                       snapshot=body.get("snapshot"))
        return jsonify({"ok": True})

    @app.post("/_fake/tokens/expire")
    def control_expire() -> Response:
        body = body_json() or {}
        count = state.expire_tokens(invalidate=bool(body.get("invalidate", False)))
        return jsonify({"ok": True, "count": count})

    @app.post("/_fake/clock")
    def control_clock() -> Response:
        body = body_json() or {}
        state.advance(float(body.get("advance", 0)))
        return jsonify({"ok": True, "now": state.now()})

    @app.get("/_fake/state")
    def control_state() -> Response:
        with state.lock:
            return jsonify({
                "token_fetch_count": state.token_fetch_count,
                "stable_fetch_count": state.stable_fetch_count,
                "menu": state.menu,
                "sent_messages": list(state.sent_messages),
            })

    register_pay(app, pay_state)
    return app


def _add_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _choose_openid_page() -> Response:
    """Dev only: no logged-in fake user yet, so ask which openid to act as."""
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in request.args.items(multi=True)
    )
    page = (
        "<!doctype html><meta charset='utf-8'><title>模拟微信登录</title>"
        "<h1>模拟微信授权</h1><p>请选择要模拟的微信用户（openid）。"
        f"也可以设置 Cookie <code>{OPENID_COOKIE}</code> 或在链接中加上 <code>{OPENID_PARAM}</code> 参数。</p>"
        f"<form method='get'>{hidden}<input name='{OPENID_PARAM}' placeholder='openid' required>"
        "<button type='submit'>授权</button></form>"
    )
    return Response(page, 200, content_type="text/html; charset=utf-8")
