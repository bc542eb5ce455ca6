"""The WeChat simulator (development only): a phone-sized account view that sends real signed events."""
from __future__ import annotations

import re
import time

import requests
from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request, url_for

from wechat.menu import load_menu
from wechat.simulate import WeChatSide

bp = Blueprint("simulator", __name__, template_folder="templates")

KINDS = {"click", "view", "subscribe", "unsubscribe", "text"}
OPENID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _wechat_side() -> WeChatSide:
    cfg = current_app.config
    return WeChatSide(cfg["WECHAT_TOKEN"], cfg["WECHAT_ENCODING_AES_KEY"], cfg["WECHAT_APP_ID"])


@bp.get("/simulator")
def page() -> str:
    openid = request.args.get("openid", "o_sim_student_1")
    if not OPENID.match(openid):
        abort(400, "openid: letters, digits, _ and - only")
    return render_template("simulator.html", menu=load_menu()["button"], openid=openid)


@bp.post("/simulator/send")
def send() -> Response:
    """Build the delivery WeChat would make for a tap or a message, POST it to /wechat over
    real HTTP (the same code path as production), and return the opened reply."""
    data = request.get_json(silent=True)  # JSON only: a cross-site form cannot post here
    if not isinstance(data, dict):
        abort(400, "JSON body expected")
    openid, kind = str(data.get("openid", "")), str(data.get("kind", ""))
    mode = str(data.get("mode", "safe"))
    if not OPENID.match(openid) or kind not in KINDS or mode not in {"plain", "safe", "compatible"}:
        abort(400, "bad openid, kind or mode")
    side = _wechat_side()
    if kind == "text":
        content = str(data.get("content", ""))[:2048]
        if not content.strip():
            abort(400, "empty message")
        xml = side.text(openid, content)
    elif kind in ("click", "view"):
        xml = side.event(openid, kind.upper(), str(data.get("key", ""))[:1024])
    else:
        xml = side.event(openid, kind)
    delivery = side.deliver(xml, mode=mode)
    started = time.monotonic()
    resp = requests.post(url_for("wechat.receive", _external=True) + "?" + delivery.query,
                         data=delivery.body, headers={"Content-Type": "text/xml"}, timeout=10)
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    reply = side.open_reply(resp.content) if resp.status_code == 200 else None
    if kind == "text" and resp.status_code == 200:
        _open_service_window(openid)
    return jsonify(status=resp.status_code, elapsed_ms=elapsed_ms, sealed=b"<Encrypt>" in resp.content,
                   reply=reply, error=None if resp.status_code == 200 else resp.text[:200])


def _fake_wechat(path: str) -> str:
    return current_app.config["WECHAT_API_BASE"].rstrip("/") + path


def _open_service_window(openid: str) -> None:
    """Real WeChat opens the 48-hour customer-service window when a user writes; tell the fake
    WeChat server the same, so staff replies meet the same rules here as in production."""
    try:
        requests.post(_fake_wechat("/_fake/users"), json={"openid": openid, "in_window": True}, timeout=2)
    except requests.RequestException:
        pass  # no fake WeChat server behind this app: nothing to keep in step


@bp.get("/simulator/inbox")
def inbox() -> Response:
    """Messages the account sent this user later, through the API (staff replies as customer-service
    messages, template notices), as the fake WeChat server recorded them: the phone polls this."""
    openid = request.args.get("openid", "")
    if not OPENID.match(openid):
        abort(400, "openid: letters, digits, _ and - only")
    try:
        resp = requests.get(_fake_wechat("/_fake/state"), timeout=2)
        sent = resp.json().get("sent_messages", []) if resp.ok else []
    except (requests.RequestException, ValueError):
        return jsonify(messages=[], error="fake WeChat server unreachable")
    messages = []
    for message in sent:
        if message.get("touser") != openid:
            continue
        if message.get("kind") == "custom" and message.get("msgtype") == "text":
            messages.append({"kind": "custom", "text": str(message.get("text", {}).get("content", ""))})
        elif message.get("kind") == "template":
            data = message.get("data") or {}
            lines = [str((data.get(k) or {}).get("value", "")) for k in ("first", "keyword1", "keyword2", "remark")]
            messages.append({"kind": "template", "text": "\n".join(line for line in lines if line)})
        else:
            messages.append({"kind": str(message.get("kind")), "text": f"[{message.get('msgtype', '消息')}]"})
    return jsonify(messages=messages, error=None)
