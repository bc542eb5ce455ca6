"""The /wechat webhook: verification, the three modes, replies, and hostile input."""
from __future__ import annotations

import base64
import time

import pytest
import requests
from sqlalchemy import select

from handlers.accounts.followers import WELCOME
from handlers.inbox.student import ACKNOWLEDGEMENT
from models import InboundEvent, InboxMessage, User
from tests.conftest import count
from wechat.crypto import sign
from wechat.simulate import WeChatSide


def post(client, delivery):  # type: ignore[no-untyped-def]
    return client.post("/wechat?" + delivery.query, data=delivery.body, content_type="text/xml")




# --- GET: the URL check WeChat does when the callback is configured -----------------

def test_get_echoes_echostr_when_signature_holds(client, wechat: WeChatSide) -> None:
    ts, nonce = str(int(time.time())), "n0nce"
    resp = client.get("/wechat", query_string={
        "signature": sign(wechat.token, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "4567"})
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == "4567"


@pytest.mark.parametrize("signature", ["", "0" * 40, "not-hex", "é"])
def test_get_refuses_bad_signature(client, wechat: WeChatSide, signature: str) -> None:
    ts = str(int(time.time()))
    resp = client.get("/wechat", query_string={"signature": signature, "timestamp": ts, "nonce": "n", "echostr": "x"})
    assert resp.status_code == 403
    assert "x" not in resp.get_data(as_text=True)


def test_get_refuses_stale_timestamp(client, wechat: WeChatSide) -> None:
    ts, nonce = str(int(time.time()) - 3600), "n"
    resp = client.get("/wechat", query_string={
        "signature": sign(wechat.token, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "x"})
    assert resp.status_code == 403


# --- POST in the three modes -----------------------------------------------------

@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
def test_subscribe_gets_the_welcome_in_every_mode(client, wechat: WeChatSide, db_session, mode: str) -> None:
    resp = post(client, wechat.deliver(wechat.event("o_student_1", "subscribe"), mode=mode))
    assert resp.status_code == 200
    body = resp.get_data()
    if mode == "plain":
        assert b"<Encrypt>" not in body
    else:
        assert b"<Encrypt>" in body and "欢迎".encode() not in body  # sealed, not readable
    reply = wechat.open_reply(body)
    assert reply is not None
    assert reply["MsgType"] == "text"
    assert reply["Content"] == WELCOME
    assert reply["ToUserName"] == "o_student_1"
    assert reply["FromUserName"] == wechat.account
    user = db_session.scalars(select(User).where(User.openid == "o_student_1")).one()
    assert user.subscribed is True


def test_unsubscribe_is_recorded_and_answers_success(client, wechat: WeChatSide, db_session) -> None:
    post(client, wechat.deliver(wechat.event("o_u", "subscribe", created=1_000)))
    resp = post(client, wechat.deliver(wechat.event("o_u", "unsubscribe")))
    assert resp.get_data(as_text=True) == "success"
    user = db_session.scalars(select(User).where(User.openid == "o_u")).one()
    assert user.subscribed is False and user.unsubscribed_at is not None


def test_text_is_stored_for_staff_and_acknowledged(client, wechat: WeChatSide, db_session) -> None:
    content = "我的证书学号填错了 <script>alert(1)</script> ]]> &amp;"
    resp = post(client, wechat.deliver(wechat.text("o_t", content, msg_id=42), mode="safe"))
    assert wechat.open_reply(resp.get_data())["Content"] == ACKNOWLEDGEMENT
    message = db_session.scalars(select(InboxMessage)).one()
    # Stored exactly as sent; rendering it harmlessly is the console's job (autoescape).
    assert message.content == content
    assert message.direction == "in" and message.wechat_msg_id == "42"


@pytest.mark.parametrize(
    "key,expect", [("MY_CERTIFICATE", "还没有你的学习记录"), ("FAQ", "常见问题"), ("FAQ", "/h5/privacy\">《隐私政策》"),
                   ("GUIDE", "操作指南")]
)
def test_menu_clicks_answer(client, wechat: WeChatSide, key: str, expect: str) -> None:
    resp = post(client, wechat.deliver(wechat.event("o_c", "CLICK", key)))
    assert expect in wechat.open_reply(resp.get_data())["Content"]


@pytest.mark.parametrize("xml", [
    "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>event</MsgType><Event>CLICK</Event><EventKey>NO_SUCH_KEY</EventKey></xml>",
    "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event></xml>",
    "<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
    "<MsgType>miniprogrampage</MsgType><MsgId>9</MsgId></xml>",
])
def test_unhandled_input_answers_success_and_is_logged(client, wechat: WeChatSide, db_session, xml: str) -> None:
    resp = post(client, wechat.deliver(xml))
    assert resp.status_code == 200 and resp.get_data(as_text=True) == "success"
    assert count(db_session, InboundEvent) == 1


@pytest.mark.parametrize(
    "key,path", [("TRAINING", "/h5/"), ("MY_PROGRESS", "/h5/progress"), ("MY_PROFILE", "/h5/profile")]
)
def test_h5_menu_keys_answer_with_one_article(app, client, wechat: WeChatSide, key: str, path: str) -> None:
    resp = post(client, wechat.deliver(wechat.event("o_c", "CLICK", key), mode="safe"))
    reply = wechat.open_reply(resp.get_data())
    assert reply["MsgType"] == "news" and reply["ArticleCount"] == "1"
    assert reply["Articles"]["item"]["Url"] == app.config["PUBLIC_URL"].rstrip("/") + path


def test_reply_content_cannot_break_out_of_cdata(app, wechat: WeChatSide) -> None:
    from datetime import datetime, timezone

    from handlers.messages import Inbound, TextReply
    from wechat.replies import render

    inbound = Inbound("o", "gh", datetime.now(timezone.utc), "text")
    xml = render(TextReply("a]]><MsgType>image</MsgType>b"), inbound)
    assert wechat.open_reply(xml)["Content"] == "a]]><MsgType>image</MsgType>b"
    assert wechat.open_reply(xml)["MsgType"] == "text"


# --- Hostile and broken input: a clear 4xx, never a 500, nothing written ------------

XXE = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       "<xml><ToUserName>gh</ToUserName><FromUserName>&xxe;</FromUserName><CreateTime>1</CreateTime>"
       "<MsgType>text</MsgType><Content>x</Content><MsgId>1</MsgId></xml>")
LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
          + "]><xml><Content>&lol9;</Content></xml>")


@pytest.mark.parametrize("body,status", [
    ("<xml><ToUserName>gh", 400),  # truncated
    ("not xml at all", 400),
    ("", 400),
    (XXE, 400),
    (LAUGHS, 400),
    ("<html><body/></html>", 400),  # wrong root
    ("<xml><ToUserName>gh</ToUserName><MsgType>text</MsgType></xml>", 400),  # missing fields
    ("<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>soon</CreateTime>"
     "<MsgType>text</MsgType></xml>", 400),
    ("<xml><ToUserName>gh</ToUserName><FromUserName><a>nested</a></FromUserName><CreateTime>1</CreateTime>"
     "<MsgType>text</MsgType></xml>", 400),
    ("\xff\xfe garbage bytes", 400),
])
@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_hostile_bodies_are_refused(client, wechat: WeChatSide, db_session, body: str, status: int, mode: str) -> None:
    if mode == "safe":
        delivery = wechat.deliver(body, mode="safe")
    else:
        delivery = wechat.deliver(body)
    resp = client.post(
        "/wechat?" + delivery.query, data=delivery.body if mode == "safe" else body.encode("utf-8", "surrogateescape")
    )
    assert resp.status_code == status
    assert count(db_session, InboundEvent) == 0


@pytest.mark.parametrize("encrypt_field", [
    "!!!not base64!!!",
    base64.b64encode(b"short").decode(),
    base64.b64encode(b"\x00" * 32).decode(),  # whole blocks, junk padding
    "",
])
def test_garbage_ciphertext_is_refused(client, wechat: WeChatSide, db_session, encrypt_field: str) -> None:
    ts, nonce = str(int(time.time())), "abc"
    query = (f"signature={sign(wechat.token, ts, nonce)}&timestamp={ts}&nonce={nonce}&encrypt_type=aes"
             f"&msg_signature={sign(wechat.token, ts, nonce, encrypt_field)}")
    body = f"<xml><ToUserName>gh</ToUserName><Encrypt><![CDATA[{encrypt_field}]]></Encrypt></xml>"
    resp = client.post("/wechat?" + query, data=body)
    assert resp.status_code == 400
    assert count(db_session, InboundEvent) == 0


def test_ciphertext_for_another_app_id_is_refused(client, wechat: WeChatSide, db_session) -> None:
    other = WeChatSide(wechat.token, "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx_someone_else")
    resp = post(client, other.deliver(wechat.event("o", "subscribe"), mode="safe"))
    assert resp.status_code == 400
    assert "AppId" in resp.get_data(as_text=True)
    assert count(db_session, InboundEvent) == 0


def test_ciphertext_under_another_key_is_refused(client, wechat: WeChatSide, db_session) -> None:
    other = WeChatSide(wechat.token, "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut", wechat.app_id)
    resp = post(client, other.deliver(wechat.event("o", "subscribe"), mode="safe"))
    assert resp.status_code == 400
    assert count(db_session, InboundEvent) == 0


def test_forged_signatures_are_refused(client, wechat: WeChatSide, db_session) -> None:
    forger = WeChatSide("guessed-token", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", wechat.app_id)
    for mode in ("plain", "safe"):
        assert post(client, forger.deliver(wechat.event("o", "subscribe"), mode=mode)).status_code == 403
    # A right plain signature but a msg_signature that does not cover this Encrypt.
    good = wechat.deliver(wechat.event("o", "subscribe"), mode="safe")
    tampered = good.body.replace(b"<Encrypt><![CDATA[", b"<Encrypt><![CDATA[A")
    assert client.post("/wechat?" + good.query, data=tampered).status_code == 403
    assert count(db_session, InboundEvent) == 0


def test_replayed_old_delivery_is_refused(client, wechat: WeChatSide, db_session) -> None:
    old = wechat.deliver(wechat.event("o", "subscribe"), timestamp=int(time.time()) - 86400)
    assert post(client, old).status_code == 403
    future = wechat.deliver(wechat.event("o", "subscribe"), timestamp=int(time.time()) + 3600)
    assert post(client, future).status_code == 403
    assert count(db_session, InboundEvent) == 0


def test_oversized_body_is_refused(app, client, wechat: WeChatSide, db_session, live_server) -> None:
    huge = wechat.text("o", "心" * app.config["WECHAT_MAX_BODY"])
    assert post(client, wechat.deliver(huge)).status_code == 413
    # Without a Content-Length (chunked transfer over real HTTP), the cap still holds.
    delivery = wechat.deliver(huge)

    def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(delivery.body), 4096):
            yield delivery.body[i:i + 4096]

    resp = requests.post(f"{live_server.url}/wechat?{delivery.query}", data=chunks(), timeout=10)
    assert resp.status_code == 413
    assert count(db_session, InboundEvent) == 0


def test_overlong_text_field_is_refused(client, wechat: WeChatSide) -> None:
    resp = post(client, wechat.deliver(wechat.text("o", "x" * 9000)))
    assert resp.status_code == 400


def test_logs_carry_no_secrets_or_message_content(app, client, wechat: WeChatSide, caplog) -> None:
    caplog.set_level("DEBUG")
    secret_text = "我的手机号13800138000"
    post(client, wechat.deliver(wechat.text("o_log", secret_text), mode="safe"))
    post(client, wechat.deliver(wechat.text("o_log", secret_text)).__class__(
        "signature=bad&timestamp=1&nonce=n", wechat.text("o_log", secret_text).encode()))
    bad = wechat.deliver(wechat.text("o_log", secret_text), mode="safe")
    client.post("/wechat?" + bad.query, data=bad.body.replace(b"<Encrypt><![CDATA[", b"<Encrypt><![CDATA[%%"))
    logged = caplog.text
    assert "13800138000" not in logged
    for secret in (app.config["WECHAT_TOKEN"], app.config["WECHAT_ENCODING_AES_KEY"], app.config["WECHAT_APP_SECRET"]):
        assert secret not in logged
    assert "refused" in logged  # the refusals themselves are logged
