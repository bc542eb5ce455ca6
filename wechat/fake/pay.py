"""The fake WeChat Pay (api.mch.weixin.qq.com, API v3): JSAPI orders, query, close, refund, a
cashier page the simulator "pays" on, and signed, encrypted notifications (duplicates and delays on request)."""
from __future__ import annotations

import base64
import html
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from flask import Flask, Response, jsonify, redirect, request

from wechat.fake import paykeys

CHINA = timezone(timedelta(hours=8))
AUTH = re.compile(r'^WECHATPAY2-SHA256-RSA2048 (.+)$')
OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")


@dataclass
class FakePayOrder:
    out_trade_no: str
    prepay_id: str
    appid: str
    mchid: str
    description: str
    total: int
    openid: str
    notify_url: str
    trade_state: str = "NOTPAY"  # NOTPAY, SUCCESS, CLOSED, REFUND
    transaction_id: str | None = None
    success_time: str | None = None
    refunded: int = 0


@dataclass
class FakePayState:
    """WeChat Pay's side for one merchant: orders, refunds, and what was sent to the notify URL."""

    appid: str
    mchid: str = paykeys.MCHID
    apiv3_key: str = paykeys.API_V3_KEY
    merchant_public_key: str = paykeys.MERCHANT_PUBLIC_KEY
    platform_private_key: str = paykeys.PLATFORM_PRIVATE_KEY
    platform_key_id: str = paykeys.PLATFORM_PUBLIC_KEY_ID
    orders: dict[str, FakePayOrder] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    refund_notify_urls: dict[str, str] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)  # every notification delivery and its answer
    notify_delay: float = 0.0  # the cashier's notification waits this long (a slow WeChat)
    notify_duplicates: int = 1
    refund_outcome: str = "SUCCESS"  # what a new refund becomes: SUCCESS, PROCESSING, ABNORMAL, CLOSED
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.orders.clear()
            self.refunds.clear()
            self.refund_notify_urls.clear()
            self.sent.clear()
            self.notify_delay, self.notify_duplicates = 0.0, 1
            self.refund_outcome = "SUCCESS"

    # -- signatures ----------------------------------------------------------------
    def sign(self, timestamp: str, nonce: str, body: str) -> str:
        key = load_pem_private_key(self.platform_private_key.encode(), password=None)
        message = f"{timestamp}\n{nonce}\n{body}\n".encode()
        return base64.b64encode(key.sign(message, PKCS1v15(), SHA256())).decode()  # type: ignore[union-attr,call-arg]

    def signed_headers(self, body: str, timestamp: int | None = None) -> dict[str, str]:
        ts, nonce = str(int(time.time()) if timestamp is None else timestamp), secrets.token_hex(16)
        return {"Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce, "Wechatpay-Serial": self.platform_key_id,
                "Wechatpay-Signature": self.sign(ts, nonce, body),
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}

    def check_authorization(self, method: str, path: str, body: str, header: str) -> str | None:
        """None when the merchant signed this request; else what is wrong."""
        match = AUTH.match(header or "")
        if not match:
            return "no WECHATPAY2-SHA256-RSA2048 Authorization"
        fields = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if fields.get("mchid") != self.mchid:
            return "mchid does not match"
        message = f"{method}\n{path}\n{fields.get('timestamp')}\n{fields.get('nonce_str')}\n{body}\n".encode()
        try:
            key = load_pem_public_key(self.merchant_public_key.encode())
            key.verify(base64.b64decode(fields.get("signature", "")), message, PKCS1v15(), SHA256())  # type: ignore[union-attr,call-arg]
        except (InvalidSignature, ValueError):
            return "signature does not verify"
        if abs(time.time() - int(fields.get("timestamp") or 0)) > 300:
            return "timestamp too old"
        return None

    # -- orders --------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        amount, payer = body.get("amount") or {}, body.get("payer") or {}
        total = amount.get("total")
        if body.get("appid") != self.appid or body.get("mchid") != self.mchid:
            return 400, {"code": "APPID_MCHID_NOT_MATCH", "message": "appid和mch_id不匹配"}
        if type(total) is not int or total <= 0 or amount.get("currency", "CNY") != "CNY":
            return 400, {"code": "PARAM_ERROR", "message": "amount.total 必须是正整数（分）"}
        if (
            not OUT_TRADE_NO.match(str(body.get("out_trade_no", "")))
            or not payer.get("openid")
            or not str(body.get("notify_url", "")).startswith(("http://", "https://"))
            or not body.get("description")
        ):
            return 400, {"code": "PARAM_ERROR", "message": "参数错误"}
        with self.lock:
            existing = self.orders.get(body["out_trade_no"])
            if existing is not None:
                if existing.total != total or existing.openid != payer["openid"]:
                    return 400, {"code": "INVALID_REQUEST", "message": "201 商户订单号重复"}
                if existing.trade_state == "SUCCESS":
                    return 400, {"code": "ORDERPAID", "message": "该订单已支付"}
                if existing.trade_state == "CLOSED":
                    return 400, {"code": "ORDERCLOSED", "message": "该订单已关闭"}
                return 200, {"prepay_id": existing.prepay_id}
            order = FakePayOrder(out_trade_no=body["out_trade_no"], prepay_id="wx" + secrets.token_hex(16),
                                 appid=body["appid"], mchid=body["mchid"], description=body["description"],
                                 total=total, openid=payer["openid"], notify_url=body["notify_url"])
            self.orders[order.out_trade_no] = order
        return 200, {"prepay_id": order.prepay_id}

    def find(self, out_trade_no: str | None = None, prepay_id: str | None = None) -> FakePayOrder | None:
        with self.lock:
            if out_trade_no:
                return self.orders.get(out_trade_no)
            return next((o for o in self.orders.values() if o.prepay_id == prepay_id), None)

    def transaction(self, order: FakePayOrder, *, amount: int | None = None) -> dict[str, Any]:
        """The transaction as query answers it and as a notification's resource carries it."""
        data: dict[str, Any] = {
            "appid": order.appid, "mchid": order.mchid, "out_trade_no": order.out_trade_no,
            "trade_type": "JSAPI", "trade_state": order.trade_state, "trade_state_desc": order.trade_state,
            "attach": "", "payer": {"openid": order.openid},
            "amount": {"total": order.total if amount is None else amount, "currency": "CNY"},
        }
        if order.transaction_id:
            total = data["amount"]["total"]
            data.update(transaction_id=order.transaction_id, success_time=order.success_time, bank_type="OTHERS")
            data["amount"].update(payer_total=total, payer_currency="CNY")
        return data

    def mark_paid(self, order: FakePayOrder) -> None:
        with self.lock:
            if order.trade_state == "NOTPAY":
                order.trade_state = "SUCCESS"
                order.transaction_id = "4200" + "".join(secrets.choice("0123456789") for _ in range(24))
                order.success_time = datetime.now(CHINA).replace(microsecond=0).isoformat()

    def close(self, out_trade_no: str) -> tuple[int, dict[str, Any] | None]:
        with self.lock:
            order = self.orders.get(out_trade_no)
            if order is None:
                return 404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}
            if order.trade_state in ("SUCCESS", "REFUND"):
                return 400, {"code": "ORDERPAID", "message": "该订单已支付"}
            order.trade_state = "CLOSED"
        return 204, None

    def refund(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        amount = body.get("amount") or {}
        with self.lock:
            done = self.refunds.get(str(body.get("out_refund_no")))
            if done is not None:
                return 200, done  # the same out_refund_no is the same refund
            order = self.orders.get(str(body.get("out_trade_no")))
            if order is None:
                return 404, {"code": "RESOURCE_NOT_EXISTS", "message": "订单不存在"}
            refund, total = amount.get("refund"), amount.get("total")
            if type(refund) is not int or type(total) is not int or total != order.total \
                    or refund <= 0 or refund > order.total - order.refunded:
                return 400, {"code": "PARAM_ERROR", "message": "退款金额错误"}
            if order.trade_state not in ("SUCCESS", "REFUND"):
                return 403, {"code": "NOT_ENOUGH", "message": "订单未支付"}
            order.refunded += refund
            order.trade_state = "REFUND"
            result = {"refund_id": "5030" + secrets.token_hex(12), "out_refund_no": body["out_refund_no"],
                      "transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no,
                      "channel": "ORIGINAL", "status": "PROCESSING" if self.refund_outcome != "SUCCESS" else "SUCCESS",
                      "create_time": datetime.now(CHINA).replace(microsecond=0).isoformat(),
                      "amount": {"total": order.total, "refund": refund, "payer_total": order.total,
                                 "payer_refund": refund, "currency": "CNY"}}
            self.refunds[str(body["out_refund_no"])] = result
            if str(body.get("notify_url", "")).startswith(("http://", "https://")):
                self.refund_notify_urls[str(body["out_refund_no"])] = str(body["notify_url"])
        return 200, dict(result)

    def refund_query(self, out_refund_no: str) -> tuple[int, dict[str, Any]]:
        """A refund as WeChat Pay reports it later: PROCESSING turns into the configured outcome."""
        with self.lock:
            result = self.refunds.get(out_refund_no)
            if result is None:
                return 404, {"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"}
            if result["status"] == "PROCESSING" and self.refund_outcome != "PROCESSING":
                result["status"] = self.refund_outcome
            return 200, dict(result)

    # -- notifications -------------------------------------------------------------
    def notification(self, order: FakePayOrder, *, amount: int | None = None, timestamp: int | None = None,
                     apiv3_key: str | None = None, tamper: bool = False,
                     resource: dict[str, Any] | None = None, event_type: str = "TRANSACTION.SUCCESS",
                     original_type: str = "transaction") -> tuple[dict[str, str], bytes]:
        """A TRANSACTION.SUCCESS notification as WeChat Pay sends it: the resource AES-256-GCM
        encrypted with the API v3 key, the body signed with the platform key. The keyword
        arguments make the wrong ones tests need (another amount, an old timestamp, ...)."""
        plain = json.dumps(resource or self.transaction(order, amount=amount), ensure_ascii=False)
        nonce, associated = secrets.token_hex(6), original_type
        ciphertext = AESGCM((apiv3_key or self.apiv3_key).encode()).encrypt(nonce.encode(), plain.encode(),
                                                                             associated.encode())
        envelope = {
            "id": secrets.token_hex(18), "create_time": datetime.now(CHINA).replace(microsecond=0).isoformat(),
            "resource_type": "encrypt-resource", "event_type": event_type,
            "summary": "支付成功" if event_type == "TRANSACTION.SUCCESS" else "退款状态变更",
            "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": base64.b64encode(ciphertext).decode(), "associated_data": associated,
                         "nonce": nonce},
        }
        body = json.dumps(envelope, ensure_ascii=False)
        headers = self.signed_headers(body, timestamp)
        headers["Content-Type"] = "application/json"
        if tamper:
            body = body.replace("支付成功", "支付成功!")  # signed bytes no longer match
        return headers, body.encode()

    def deliver_refund(self, out_refund_no: str, *, copies: int = 1) -> list[int]:
        """The refund settles (PROCESSING becomes the configured outcome) and WeChat Pay POSTs
        REFUND.<status> to the refund's notify URL `copies` times; returns the status codes."""
        _, result = self.refund_query(out_refund_no)
        url = self.refund_notify_urls.get(out_refund_no)
        if url is None:
            raise LookupError(f"refund {out_refund_no} was asked without a notify_url")
        resource = {"mchid": self.mchid, "out_trade_no": result["out_trade_no"],
                    "transaction_id": result["transaction_id"], "out_refund_no": out_refund_no,
                    "refund_id": result["refund_id"], "refund_status": result["status"],
                    "success_time": result["create_time"], "user_received_account": "支付用户零钱",
                    "amount": {"total": result["amount"]["total"], "refund": result["amount"]["refund"],
                               "payer_total": result["amount"]["payer_total"],
                               "payer_refund": result["amount"]["payer_refund"]}}
        statuses = []
        for _ in range(copies):
            headers, body = self.notification(None, resource=resource,  # type: ignore[arg-type]
                                              event_type=f"REFUND.{result['status']}", original_type="refund")
            statuses.append(requests.post(url, data=body, headers=headers, timeout=10).status_code)
        return statuses

    def deliver(self, order: FakePayOrder, *, copies: int = 1, concurrent: bool = False, delay: float = 0.0,
                amount: int | None = None) -> list[int]:
        """POST the notification to the order's notify URL `copies` times (at once, or one
        after another: WeChat's retries), after `delay` seconds; returns the status codes."""
        if delay:
            time.sleep(delay)
        statuses: list[int] = [0] * copies

        def post(i: int) -> None:
            headers, body = self.notification(order, amount=amount)
            try:
                resp = requests.post(order.notify_url, data=body, headers=headers, timeout=10)
                statuses[i] = resp.status_code
                answer = resp.text[:200]
            except requests.RequestException as exc:
                answer = type(exc).__name__
            with self.lock:
                self.sent.append({"out_trade_no": order.out_trade_no, "status": statuses[i], "answer": answer})

        if concurrent:
            threads = [threading.Thread(target=post, args=(i,)) for i in range(copies)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(15)
        else:
            for i in range(copies):
                post(i)
        return statuses

    def pay(self, order: FakePayOrder, *, copies: int | None = None, concurrent: bool = False,
            delay: float | None = None, amount: int | None = None, background: bool = False,
            notify: bool = True) -> list[int]:
        """The payer confirms: the order succeeds and WeChat Pay notifies the merchant."""
        self.mark_paid(order)
        if not notify:
            return []
        kwargs = dict(copies=copies or self.notify_duplicates, concurrent=concurrent,
                      delay=self.notify_delay if delay is None else delay, amount=amount)
        if background:
            threading.Thread(target=self.deliver, args=(order,), kwargs=kwargs, daemon=True).start()
            return []
        return self.deliver(order, **kwargs)  # type: ignore[arg-type]


def register_pay(app: Flask, state: FakePayState) -> None:
    """Add WeChat Pay's API v3 paths and the /_fake/pay/ controls to the fake app."""

    def answer(status: int, data: dict[str, Any] | None) -> Response:
        body = "" if data is None else json.dumps(data, ensure_ascii=False)
        response = Response(body, status, content_type="application/json")
        for name, value in state.signed_headers(body).items():
            response.headers[name] = value
        return response

    def authorized(view: Callable[..., Response]) -> Callable[..., Response]:
        def guarded(*args: Any, **kwargs: Any) -> Response:
            path = request.path + (("?" + request.query_string.decode()) if request.query_string else "")
            problem = state.check_authorization(request.method, path, request.get_data(as_text=True),
                                                request.headers.get("Authorization", ""))
            if problem:
                return answer(401, {"code": "SIGN_ERROR", "message": problem})
            return view(*args, **kwargs)
        guarded.__name__ = view.__name__
        return guarded

    def body() -> dict[str, Any]:
        data = request.get_json(force=True, silent=True)
        return data if isinstance(data, dict) else {}

    @app.post("/v3/pay/transactions/jsapi")
    @authorized
    def pay_jsapi() -> Response:
        return answer(*state.create(body()))

    @app.get("/v3/pay/transactions/out-trade-no/<out_trade_no>")
    @authorized
    def pay_query(out_trade_no: str) -> Response:
        order = state.find(out_trade_no)
        if order is None or request.args.get("mchid") != state.mchid:
            return answer(404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
        return answer(200, state.transaction(order))

    @app.post("/v3/pay/transactions/out-trade-no/<out_trade_no>/close")
    @authorized
    def pay_close(out_trade_no: str) -> Response:
        return answer(*state.close(out_trade_no))

    @app.post("/v3/refund/domestic/refunds")
    @authorized
    def pay_refund() -> Response:
        return answer(*state.refund(body()))

    @app.get("/v3/refund/domestic/refunds/<out_refund_no>")
    @authorized
    def pay_refund_query(out_refund_no: str) -> Response:
        return answer(*state.refund_query(out_refund_no))

    # -- the cashier (what WeChat shows the payer), for the simulator and browser tests --
    @app.get("/_fake/pay/cashier")
    def cashier() -> Response:
        order = state.find(prepay_id=request.args.get("prepay_id"))
        back = request.args.get("return_url", "")
        if order is None or urlsplit(back).scheme not in ("http", "https"):
            return Response("未找到订单", 404, content_type="text/plain; charset=utf-8")
        page = (
            "<!doctype html><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            "<title>微信支付</title><h1>微信支付（模拟）</h1>"
            f"<p>{html.escape(order.description)}</p><p id='amount'>¥{order.total // 100}.{order.total % 100:02d}</p>"
            "<form method='post'>"
            f"<input type='hidden' name='prepay_id' value='{html.escape(order.prepay_id)}'>"
            f"<input type='hidden' name='return_url' value='{html.escape(back)}'>"
            "<button type='submit' name='result' value='ok'>确认支付</button> "
            "<button type='submit' name='result' value='cancel'>取消</button></form>"
        )
        return Response(page, 200, content_type="text/html; charset=utf-8")

    @app.post("/_fake/pay/cashier")
    def cashier_pay() -> Response:
        order = state.find(prepay_id=request.form.get("prepay_id"))
        back = request.form.get("return_url", "")
        if order is None or urlsplit(back).scheme not in ("http", "https"):
            return Response("未找到订单", 404, content_type="text/plain; charset=utf-8")
        result = "cancel"
        if request.form.get("result") == "ok":
            state.pay(order, background=True)  # the notification travels on its own, like WeChat's
            result = "ok"
        return redirect(back + ("&" if "?" in back else "?") + "pay_result=" + result, code=303)

    # -- controls ------------------------------------------------------------------
    @app.post("/_fake/pay/pay")
    def control_pay() -> Response:
        data = body()
        order = state.find(data.get("out_trade_no"), data.get("prepay_id"))
        if order is None:
            return Response(json.dumps({"ok": False, "error": "no such order"}), 404, content_type="application/json")
        statuses = state.pay(order, copies=int(data.get("copies", 1)), concurrent=bool(data.get("concurrent")),
                             delay=float(data.get("delay", 0)), amount=data.get("amount"),
                             notify=bool(data.get("notify", True)))
        return jsonify({"ok": True, "statuses": statuses})

    @app.post("/_fake/pay/settings")
    def control_settings() -> Response:
        data = body()
        with state.lock:
            state.notify_delay = float(data.get("notify_delay", state.notify_delay))
            state.notify_duplicates = max(1, int(data.get("notify_duplicates", state.notify_duplicates)))
        return jsonify({"ok": True})

    @app.get("/_fake/pay/orders")
    def control_orders() -> Response:
        with state.lock:
            orders = [{"out_trade_no": o.out_trade_no, "trade_state": o.trade_state, "total": o.total,
                       "prepay_id": o.prepay_id} for o in state.orders.values()]
            return jsonify({"orders": orders, "sent": list(state.sent)})
