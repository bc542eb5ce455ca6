"""The WeChat Pay (API v3, JSAPI) adapter: wechatpayv3 on a configurable base URL, and notification checks."""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from flask import Flask
from wechatpayv3 import WeChatPay, WeChatPayType

logger = logging.getLogger(__name__)

EXTENSION = "xinwei.wechat_pay"
_lock = threading.Lock()


class PayError(RuntimeError):
    """WeChat Pay refused a call, or did not answer (transport), or answered unsigned."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class BadNotification(ValueError):
    """A notification we will not act on: forged, stale, undecryptable or not ours. `reason` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Notification:
    """A verified and decrypted payment notification."""

    id: str
    event_type: str  # TRANSACTION.SUCCESS, REFUND.SUCCESS, ...
    resource: dict[str, Any]  # the decrypted transaction


class XinweiWeChatPay(WeChatPay):
    """wechatpayv3's JSAPI client, talking to `api_base` (the real host or the fake).

    The library fixes its gateway in `Core.__init__` (`_gate_way = 'https://api.mch.weixin.qq.com'`)
    and offers no parameter for it, so the one attribute is set after construction; signing,
    response verification and AES-GCM stay the library's. The platform *public key* mode
    (public_key + public_key_id) is used: it needs no certificate download at start-up.
    """

    def __init__(self, *, appid: str, mchid: str, private_key: str, cert_serial_no: str, apiv3_key: str,
                 public_key: str, public_key_id: str, notify_url: str, api_base: str, timeout: float,
                 notify_window: int = 300, refund_notify_url: str | None = None) -> None:
        super().__init__(wechatpay_type=WeChatPayType.JSAPI, mchid=mchid, private_key=private_key,
                         cert_serial_no=cert_serial_no, appid=appid, apiv3_key=apiv3_key, notify_url=notify_url,
                         timeout=(min(timeout, 3.0), timeout), public_key=public_key, public_key_id=public_key_id)
        self._core._gate_way = api_base.rstrip("/")
        self.appid, self.mchid, self.notify_window = appid, mchid, notify_window
        self.public_key_id = public_key_id
        self.refund_notify_url = refund_notify_url

    # -- calls ---------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        try:
            code, body = fn(*args, **kwargs)
        except requests.RequestException as exc:
            raise PayError(f"{what}: no answer from WeChat Pay ({type(exc).__name__})") from exc
        except Exception as exc:  # the library raises bare Exception for an unverifiable answer
            raise PayError(f"{what}: {exc}") from exc
        return code, body

    @staticmethod
    def _json(body: Any) -> dict[str, Any]:
        if not body:
            return {}
        try:
            value = json.loads(body)
        except (TypeError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def create_jsapi_order(self, *, out_trade_no: str, description: str, total_fen: int, openid: str,
                           time_expire: str) -> str:
        """The prepay_id of a JSAPI order (WeChat Pay answers the same for the same out_trade_no)."""
        if type(total_fen) is not int:
            raise TypeError("amounts are whole fen")
        code, body = self._call("jsapi", self.pay, description=description, out_trade_no=out_trade_no,
                                amount={"total": total_fen, "currency": "CNY"}, payer={"openid": openid},
                                time_expire=time_expire)
        data = self._json(body)
        if code != 200 or not data.get("prepay_id"):
            raise PayError(f"jsapi order refused: {data.get('message', '')}", status=code, code=data.get("code"))
        return str(data["prepay_id"])

    def query_order(self, out_trade_no: str) -> dict[str, Any] | None:
        """The transaction as WeChat Pay sees it; None when it does not know the order."""
        code, body = self._call("query", self.query, out_trade_no=out_trade_no)
        data = self._json(body)
        if code == 404 or data.get("code") == "ORDER_NOT_EXIST":
            return None
        if code != 200:
            raise PayError(f"query refused: {data.get('message', '')}", status=code, code=data.get("code"))
        return data

    def close_order(self, out_trade_no: str) -> None:
        code, body = self._call("close", self.close, out_trade_no=out_trade_no)
        if code not in (200, 204):
            data = self._json(body)
            raise PayError(f"close refused: {data.get('message', '')}", status=code, code=data.get("code"))

    def refund_order(self, *, out_trade_no: str, out_refund_no: str, total_fen: int, refund_fen: int,
                     reason: str) -> dict[str, Any]:
        """Ask for a refund; WeChat Pay treats a repeated out_refund_no as the same refund."""
        if type(total_fen) is not int or type(refund_fen) is not int:
            raise TypeError("amounts are whole fen")
        code, body = self._call("refund", self.refund, out_refund_no=out_refund_no, out_trade_no=out_trade_no,
                                amount={"refund": refund_fen, "total": total_fen, "currency": "CNY"},
                                reason=reason[:80] or None, notify_url=self.refund_notify_url)
        data = self._json(body)
        if code != 200:
            raise PayError(f"refund refused: {data.get('message', '')}", status=code, code=data.get("code"))
        return data

    def refund_status(self, out_refund_no: str) -> dict[str, Any]:
        """The refund as WeChat Pay reports it now (status SUCCESS, PROCESSING, ABNORMAL, CLOSED)."""
        code, body = self._call("refund query", self.query_refund, out_refund_no=out_refund_no)
        data = self._json(body)
        if code != 200:
            raise PayError(f"refund query refused: {data.get('message', '')}", status=code, code=data.get("code"))
        return data

    # -- the H5 page ---------------------------------------------------------------
    def jsapi_params(self, prepay_id: str) -> dict[str, str]:
        """What WeixinJSBridge's getBrandWCPayRequest (or wx.chooseWXPay) needs, signed with our key."""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        return {"appId": self.appid, "timeStamp": timestamp, "nonceStr": nonce, "package": package,
                "signType": "RSA", "paySign": self.sign([self.appid, timestamp, nonce, package])}

    # -- notifications -------------------------------------------------------------
    def verify_notification(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> Notification:
        """Check a notification's age, signature (over the raw body) and decrypt its resource;
        then that it is for our appid and mchid. Anything else raises BadNotification."""
        now = time.time() if now is None else now
        try:
            sent_at = int(headers.get("Wechatpay-Timestamp", ""))
        except ValueError:
            raise BadNotification("no_timestamp") from None
        if abs(now - sent_at) > self.notify_window:
            raise BadNotification("stale", f"sent {int(now - sent_at)} s ago")
        if headers.get("Wechatpay-Serial", "") != self.public_key_id:
            # Checked before the library sees it: for a serial it does not know, the library
            # would fetch WeChat Pay's certificates, one outbound call per forged request.
            raise BadNotification("unknown_serial", str(headers.get("Wechatpay-Serial", ""))[:64])
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadNotification("not_utf8") from None
        try:
            envelope = self.callback(headers, text)
        except Exception as exc:  # unsupported signature type or algorithm, malformed JSON
            raise BadNotification("unverifiable", type(exc).__name__) from None
        if not envelope or not isinstance(envelope.get("resource"), dict):
            # The library answers None for a signature that fails and for a resource that
            # does not decrypt with our API v3 key: either way, not from WeChat Pay for us.
            raise BadNotification("bad_signature")
        resource = envelope["resource"]
        # A refund's resource names the merchant only (WeChat Pay sends no appid with it).
        refund = str(envelope.get("event_type", "")).startswith("REFUND.")
        if resource.get("mchid") != self.mchid or (not refund and resource.get("appid") != self.appid):
            raise BadNotification("not_ours", f"appid/mchid {resource.get('appid')}/{resource.get('mchid')}")
        return Notification(id=str(envelope.get("id", "")), event_type=str(envelope.get("event_type", "")),
                            resource=resource)


def jssdk_config(appid: str, ticket: str, url: str) -> dict[str, Any]:
    """wx.config's signature: sha1 over the jsapi ticket, a nonce, a timestamp and the page URL."""
    nonce, timestamp = secrets.token_hex(8), int(time.time())
    url = url.split("#", 1)[0]
    raw = f"jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={url}"
    return {"appId": appid, "timestamp": timestamp, "nonceStr": nonce,
            "signature": hashlib.sha1(raw.encode()).hexdigest(), "jsApiList": ["chooseWXPay"]}


def make_wechat_pay(config: Mapping[str, Any]) -> XinweiWeChatPay:
    return XinweiWeChatPay(
        appid=config["WECHAT_APP_ID"], mchid=config["WECHAT_PAY_MCHID"],
        private_key=config["WECHAT_PAY_PRIVATE_KEY"], cert_serial_no=config["WECHAT_PAY_CERT_SERIAL"],
        apiv3_key=config["WECHAT_PAY_API_V3_KEY"], public_key=config["WECHAT_PAY_PUBLIC_KEY"],
        public_key_id=config["WECHAT_PAY_PUBLIC_KEY_ID"], notify_url=config["WECHAT_PAY_NOTIFY_URL"],
        api_base=config["WECHAT_PAY_API_BASE"], timeout=float(config["WECHAT_HTTP_TIMEOUT"]),
        notify_window=int(config["PAY_NOTIFY_WINDOW"]), refund_notify_url=config.get("WECHAT_PAY_REFUND_NOTIFY_URL"),
    )


def get_wechat_pay(app: Flask) -> XinweiWeChatPay:
    """The app's Pay client, built on first use (parsing keys is not create_app's business)."""
    client = app.extensions.get(EXTENSION)
    if client is None:
        with _lock:
            client = app.extensions.get(EXTENSION)
            if client is None:
                client = make_wechat_pay(app.config)
                app.extensions[EXTENSION] = client
    return client
