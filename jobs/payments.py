"""Payment jobs: asking WeChat Pay about unreported orders, closing them there, following refunds, shipping notices."""
from __future__ import annotations

from typing import Any

from wechatpy.exceptions import WeChatClientException

from handlers.payments import notifications, orders, refunds, shipping
from jobs.context import JobContext, JobRegistry
from models import CertificateOrder, Job


def _merchant(ctx: JobContext) -> orders.Merchant:
    return orders.Merchant(ctx.config["WECHAT_APP_ID"], ctx.config["WECHAT_PAY_MCHID"])


def _query_order(ctx: JobContext, payload: dict[str, Any]) -> None:
    """No notification yet: ask WeChat Pay. Paid → apply (once, like a notification);
    expired and unpaid → close it there first, then here. WeChat Pay is asked before any
    write, so no lock is held while it answers."""
    order = ctx.session.get(CertificateOrder, int(payload["order_id"]))
    if order is None or order.status not in orders.UNPAID:
        return
    order_id, out_trade_no, expired = order.id, order.out_trade_no, order.expires_at <= ctx.now()
    pay = ctx.services["wechat_pay"]()
    ctx.session.rollback()  # end the read before calling out
    transaction = pay.query_order(out_trade_no)
    if transaction is not None and transaction.get("trade_state") == "SUCCESS":
        notifications.apply_transaction(ctx.session, transaction, _merchant(ctx), "job:query", ctx.now())
        return
    if not expired:
        return
    if transaction is not None:
        try:
            pay.close_order(out_trade_no)
        except Exception:
            # Paid in the meantime? Ask once more; otherwise retry the job later.
            transaction = pay.query_order(out_trade_no)
            if transaction is not None and transaction.get("trade_state") == "SUCCESS":
                notifications.apply_transaction(ctx.session, transaction, _merchant(ctx), "job:query", ctx.now())
                return
            raise
    orders.close(ctx.session, order_id, "job:timeout", ctx.now(), "timeout")


def _reconcile(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Every minute: a query job for each unpaid order that is overdue or expired (backing off)."""
    notifications.schedule_queries(ctx.session, ctx.now(), int(ctx.config["PAY_QUERY_AFTER_SECONDS"]))


def _close_remote(ctx: JobContext, payload: dict[str, Any]) -> None:
    """The order closed here (the student chose electronic): close it at WeChat Pay too, so
    its payment page cannot be paid. Paid in between: the payment is applied and flagged."""
    order = ctx.session.get(CertificateOrder, int(payload["order_id"]))
    if order is None:
        return
    out_trade_no = order.out_trade_no
    ctx.session.rollback()
    pay = ctx.services["wechat_pay"]()
    try:
        pay.close_order(out_trade_no)
    except Exception:
        transaction = pay.query_order(out_trade_no)
        if transaction is None or transaction.get("trade_state") != "SUCCESS":
            raise
        notifications.apply_transaction(ctx.session, transaction, _merchant(ctx), "job:close", ctx.now())


def _check_refund(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Follow a refund WeChat Pay accepted until it settles; retried (with backoff) while it processes."""
    order = ctx.session.get(CertificateOrder, int(payload["order_id"]))
    if order is None or not order.out_refund_no:
        return
    number = order.out_refund_no
    ctx.session.rollback()
    result = ctx.services["wechat_pay"]().refund_status(number)
    if result.get("status") == "PROCESSING":
        raise RuntimeError("refund still processing at WeChat Pay")  # the runner retries later
    refunds.refund_outcome(ctx.session, int(payload["order_id"]), result, ctx.now())


def _notify_shipped(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Tell the student: a customer-service message while WeChat's 48-hour window is open,
    else the shipping template message (if one is configured); the order page shows it anyway."""
    notice = shipping.shipped_notice(ctx.session, int(payload["order_id"]))
    if notice is None:
        return
    # A retry whose previous attempt recorded no error: that worker died mid-way, perhaps after
    # WeChat took the customer-service message (which has no dedup). Only the template, which
    # WeChat dedups by client_msg_id, may go out now: the student never gets the text twice.
    job = ctx.session.get(Job, ctx.job_id)
    maybe_sent = ctx.attempt > 1 and job is not None and job.last_error is None
    ctx.session.rollback()
    client = ctx.services["wechat_client"]()
    try:
        if not maybe_sent:
            client.message.send_text(notice.openid, notice.text)
            return
    except WeChatClientException as exc:
        if exc.errcode not in (45015, 45047):  # outside the window, or its 5 messages used
            raise
    template_id = ctx.config.get("WECHAT_TEMPLATE_SHIPPED")
    if not template_id:
        return
    public_url = str(ctx.config["PUBLIC_URL"]).rstrip("/")
    client.post("message/template/send", data={
        "touser": notice.openid, "template_id": template_id, "url": f"{public_url}/h5/orders/{notice.order_id}",
        "client_msg_id": f"shipped-{notice.order_id}",  # WeChat drops a repeat within 10 minutes
        "data": {"first": {"value": "你的纸质证书已寄出"}, "keyword1": {"value": notice.carrier},
                 "keyword2": {"value": notice.tracking_number}, "remark": {"value": "证书寄到学校，请留意学校通知。"}},
    })


def register(registry: JobRegistry) -> None:
    registry.register(orders.QUERY_JOB, _query_order)
    registry.register(orders.RECONCILE_JOB, _reconcile)
    registry.register(orders.CLOSE_REMOTE_JOB, _close_remote)
    registry.register(orders.NOTIFY_SHIPPED_JOB, _notify_shipped)
    registry.register(orders.REFUND_CHECK_JOB, _check_refund)
