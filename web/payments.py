"""Paying for paper certificates: the student's pay call and order page, and WeChat Pay's notification endpoint."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, current_app, jsonify, make_response, render_template, request
from sqlalchemy import select

from config import paper_prices
from database import get_session
from handlers import china_time, ratelimit
from handlers.errors import Refused
from handlers.payments import notifications, orders, refunds
from models import Certificate, CertificateOrder
from web import links
from web.auth import csrf_ok, current_user_id, login_required
from web.boundary import commit_early
from web.clock import now
from wechat.pay import BadNotification, PayError, get_wechat_pay, jssdk_config
from wechat.services import get_wechat_client

bp = Blueprint("payments", __name__, template_folder="templates")
log = logging.getLogger(__name__)

CHINA = china_time.CHINA
NOTIFY_MAX_BODY = 64 * 1024


def merchant() -> orders.Merchant:
    return orders.Merchant(current_app.config["WECHAT_APP_ID"], current_app.config["WECHAT_PAY_MCHID"])


def _own_order(order_id: int) -> CertificateOrder:
    order = get_session().scalar(select(CertificateOrder).where(
        CertificateOrder.id == order_id, CertificateOrder.user_id == current_user_id()))
    if order is None:
        abort(404)  # another student's order does not exist, as far as this one knows
    return order


def _refusal(refusal: Refused, status: int = 409) -> Response:
    return make_response(jsonify(error=refusal.code, message=refusal.message), status)


@bp.post("/h5/certificates/<int:certificate_id>/pay")
@login_required
def pay(certificate_id: int) -> Response:
    """Open (or reuse) the order, have WeChat Pay create it, and hand the page what
    WeixinJSBridge needs. Asked twice, it is the same order and the same prepay_id."""
    if not csrf_ok():
        abort(400, "页面已过期，请刷新后重试。")
    session, cfg = get_session(), current_app.config
    try:
        order = orders.open_order(session, current_user_id(), certificate_id, paper_prices(cfg),  # type: ignore[arg-type]
                                  now(), int(cfg["PAY_ORDER_TIMEOUT_SECONDS"]), phone=request.form.get("phone"))
    except Refused as refusal:
        return _refusal(refusal)  # answered, not raised: an expired order's query job is kept
    commit_early()
    wechat_pay = get_wechat_pay(current_app._get_current_object())  # type: ignore[attr-defined]
    prepay_id = order.prepay_id
    if prepay_id is None:
        try:
            # Outside any transaction: no lock is held while WeChat Pay answers.
            prepay_id = wechat_pay.create_jsapi_order(
                out_trade_no=order.out_trade_no, description=order.description, total_fen=order.total_fen,
                openid=order.payer_openid, time_expire=order.expires_at.astimezone(CHINA).isoformat(timespec="seconds"))
        except PayError as exc:
            log.warning("jsapi order %s refused: %s", order.out_trade_no, exc)
            return make_response(jsonify(error="pay_unavailable", message="微信支付暂时不可用，请稍后再试。"), 503)
        try:
            orders.record_prepay(session, order.id, prepay_id, f"student:{current_user_id()}", now(),
                                 int(cfg["PAY_QUERY_AFTER_SECONDS"]))
        except Refused as refusal:
            return _refusal(refusal)  # answered, not raised: the job closing it at WeChat Pay is kept
    order_url = links.absolute("payments.order_page", order_id=order.id)
    body: dict[str, Any] = {"order_id": order.id, "order_url": order_url, "total": orders.yuan(order.total_fen),
                            "params": wechat_pay.jsapi_params(prepay_id)}
    try:
        # wx.config is signed for the page's own URL (the page sends it: no Referer is sent).
        page = request.form.get("page_url", "")
        if not links.is_public(page):
            page = links.absolute("certificates.show", certificate_id=certificate_id)
        ticket = get_wechat_client(current_app._get_current_object()).jsapi_ticket()  # type: ignore[attr-defined]
        body["config"] = jssdk_config(cfg["WECHAT_APP_ID"], ticket, page)
    except Exception as exc:  # noqa: BLE001 - WeixinJSBridge pays without wx.config
        log.warning("no jsapi ticket for wx.config: %s", type(exc).__name__)
    if cfg["SIMULATOR_ENABLED"]:
        # Development: a browser has no WeixinJSBridge, so the page goes to the fake's cashier.
        body["cashier_url"] = cfg["WECHAT_PAY_API_BASE"].rstrip("/") + "/_fake/pay/cashier?" + urlencode(
            {"prepay_id": prepay_id, "return_url": order_url})
    return jsonify(body)


@bp.get("/h5/orders/<int:order_id>")
@login_required
def order_page(order_id: int) -> str:
    order = _own_order(order_id)
    session = get_session()
    certificate = session.get(Certificate, order.certificate_id)
    return render_template("h5/order.html", order=order, certificate=certificate, yuan=orders.yuan,
                           labels=orders.STATUS_LABELS, events=orders.events_of(session, order.id),
                           unpaid=order.status in orders.UNPAID, china=CHINA)


REFRESH_LIMIT = 6
REFRESH_WINDOW = timedelta(minutes=1)


@bp.post("/h5/orders/<int:order_id>/refresh")
@login_required
def refresh(order_id: int) -> Response:
    """The student's "query order": ask WeChat Pay now. It races the notification on
    purpose and safely: both go through the same locked transition."""
    if not csrf_ok():
        abort(400, "页面已过期，请刷新后重试。")
    order = _own_order(order_id)
    session = get_session()
    if order.status in orders.UNPAID and order.prepay_id:
        # Each refresh is a call to WeChat Pay: a few a minute per order is plenty (the
        # notification and the query job settle it anyway); past that the stored state answers.
        if not ratelimit.allow(session, "pay_refresh", ratelimit.key_of(order.id), now(), REFRESH_LIMIT,
                               REFRESH_WINDOW):
            session.rollback()  # a refused refresh is not counted again
            return jsonify(status=order.status, label=orders.STATUS_LABELS[order.status], limited=True)
        out_trade_no = order.out_trade_no
        commit_early()
        try:
            transaction = get_wechat_pay(current_app._get_current_object()).query_order(out_trade_no)  # type: ignore[attr-defined]
        except PayError as exc:
            log.warning("query %s failed: %s", out_trade_no, exc)
            transaction = None
        if transaction is not None:
            notifications.apply_transaction(session, transaction, merchant(), f"student:{current_user_id()}", now())
        order = _own_order(order_id)
    return jsonify(status=order.status, label=orders.STATUS_LABELS[order.status])


def _verified_notification() -> Any:
    """The notification in this request, verified on the raw body and decrypted; or the 4xx
    answer (a refused one is flagged for staff, never logged with its body)."""
    # Refused before reading: a declared length over the cap, or (chunked, no length) more
    # than the cap once read up to it plus one byte.
    if (request.content_length or 0) > NOTIFY_MAX_BODY:
        return _fail(413, "body too large")
    body = request.stream.read(NOTIFY_MAX_BODY + 1)
    if len(body) > NOTIFY_MAX_BODY:
        return _fail(413, "body too large")
    session = get_session()
    try:
        return get_wechat_pay(current_app._get_current_object()).verify_notification(  # type: ignore[attr-defined]
            request.headers, body, now().timestamp())
    except BadNotification as exc:
        # Never the body: it may be a forgery, and is a payer's data if genuine.
        log.warning("payment notification refused: %s (serial %s)", exc, request.headers.get("Wechatpay-Serial", "-"))
        notifications.flag_refused_notification(
            session,
            f"notify_{exc.reason}"[:32],
            {
                "reason": exc.reason,
                "detail": exc.detail[:200],
                "serial": request.headers.get("Wechatpay-Serial", "-")[:64],
                "remote": request.remote_addr,
            },
            now(),
        )
        return _fail(401, exc.reason)  # the boundary commits the flag with this answer


@bp.post("/pay/refund-notify")
def refund_notify() -> Response:
    """WeChat Pay's refund notification (REFUND.SUCCESS, .ABNORMAL, .CLOSED): the refund's end,
    recorded once on its order (the payments.check_refund job asks too, as a fallback)."""
    notification = _verified_notification()
    if isinstance(notification, Response):
        return notification
    if not notification.event_type.startswith("REFUND."):
        return Response(status=204)
    resource = notification.resource
    session = get_session()
    order = session.scalar(select(CertificateOrder).where(
        CertificateOrder.out_trade_no == str(resource.get("out_trade_no", "")),
        CertificateOrder.out_refund_no == str(resource.get("out_refund_no", ""))))
    if order is None:
        log.warning("refund notification for an unknown refund %s", resource.get("out_refund_no"))
        return Response(status=204)  # nothing of ours: retrying would not help
    refunds.refund_outcome(session, order.id, {"status": resource.get("refund_status"),
                                                "refund_id": resource.get("refund_id"),
                                               "amount": resource.get("amount")}, now())
    return Response(status=204)  # after the boundary's commit: WeChat Pay retries until then


@bp.post("/pay/notify")
def notify() -> Response:
    """WeChat Pay's payment notification. Verified on the raw body, decrypted, checked, and
    applied once; answered 204 (WeChat Pay's "received") or 4xx/5xx with code FAIL."""
    notification = _verified_notification()
    if isinstance(notification, Response):
        return notification
    session = get_session()
    if notification.event_type != "TRANSACTION.SUCCESS":
        log.info("payment notification %s ignored", notification.event_type)
        return Response(status=204)
    outcome = notifications.apply_transaction(session, notification.resource, merchant(), "wechatpay:notify", now())
    log.info("payment notification for %s: %s", notification.resource.get("out_trade_no"), outcome)
    return Response(status=204)


def _fail(status: int, message: str) -> Response:
    return make_response(jsonify(code="FAIL", message=message), status)
