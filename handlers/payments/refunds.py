"""Refunds: what may be refunded, recording WeChat Pay's answer, and following it until it settles."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.audit import Actor, record_audit
from handlers.errors import Refused
from handlers.outbox import record_job
from handlers.payments.flags import RefundCall, record_flag
from handlers.payments.orders import (
    PAID,
    REFUND_CHECK_JOB,
    STATUS_LABELS,
    events_of,
    locked_with_certificate,
    move,
)
from models import CertificateEvent
from models.order import CertificateOrder, OrderEvent
from models.status import OrderStatus


def refund(session: Session, call: RefundCall, actor: Actor, order_id: int, reason: str, now: datetime) -> bool:
    """Staff refund a paid order in full: checked, asked of WeChat Pay (the same out_refund_no
    however often asked), then applied and audited. False when another click already refunded it
    (one audit entry). The check's read ends before WeChat Pay is called, so no lock is held
    while it answers: call this with nothing of the caller's unflushed or uncommitted."""
    reason = " ".join(reason.split())
    if not reason:
        raise Refused("no_reason", "请填写退款原因")
    plan = refund_plan(session, order_id)
    out_trade_no, number, total, status = plan.out_trade_no, refund_number(plan), plan.total_fen, plan.status
    session.rollback()
    result = call(out_trade_no, number, total, total, reason)
    if not apply_refund(session, order_id, result, f"staff:{actor.name}", reason, now):
        return False
    record_audit(session, actor, "payments.refund", "certificate_order", order_id, before={"status": status},
                 after={"status": OrderStatus.REFUNDED, "refund_id": result.get("refund_id"), "total_fen": total},
                 note=reason)
    return True


def refund_plan(session: Session, order_id: int) -> CertificateOrder:
    """Check a refund may go ahead (staff); the out_refund_no is fixed per order, so asking
    twice is one refund at WeChat Pay."""
    order = session.get(CertificateOrder, order_id)
    if order is None:
        raise Refused("no_order", "订单不存在。")
    if order.status not in PAID:
        raise Refused("not_paid", f"只能为已支付的订单退款（当前：{STATUS_LABELS[order.status]}）。")
    return order


def refund_number(order: CertificateOrder) -> str:
    return "R" + order.out_trade_no


def apply_refund(session: Session, order_id: int, result: Mapping[str, Any], actor: str, reason: str,
                 now: datetime) -> bool:
    """WeChat Pay accepted the refund: the order is refunded and the certificate's paper copy
    goes back to the state it had before the order (awaiting payment). False when it already was
    (a double click, a second tab): the caller records nothing more."""
    plain = session.get(CertificateOrder, order_id)
    if plain is None:
        raise Refused("no_order", "订单不存在。")
    order, certificate = locked_with_certificate(session, order_id, plain.certificate_id)
    assert order is not None
    if order.status == OrderStatus.REFUNDED:
        return False
    refund = result.get("amount", {}).get("refund")
    if type(refund) is not int or refund != order.total_fen:
        raise Refused("refund_amount", "退款金额与订单金额不一致，请联系技术人员核对。")
    order.out_refund_no, order.refund_id = refund_number(order), str(result.get("refund_id", ""))[:32]
    order.refund_reason, order.refunded_at = reason[:500], now
    move(session, order, OrderStatus.REFUNDED, actor, now, {"refund_id": order.refund_id,
                                                            "status": result.get("status"), "reason": reason[:200]})
    if result.get("status") != "SUCCESS":
        # Accepted but not yet done (WeChat Pay usually takes a while): a job follows it up.
        record_job(session, REFUND_CHECK_JOB, {"order_id": order.id}, dedup_key=f"pay-refund:{order.id}",
                   max_attempts=12)
    if certificate is not None:
        certificate.paper_status = order.paper_status_before
        session.add(CertificateEvent(certificate_id=certificate.id, action="paper_refunded", actor=actor[:100],
                                     reason=reason[:500], details={"order": order.out_trade_no}, at=now))
    session.flush()
    return True


def refund_outcome(session: Session, order_id: int, result: Mapping[str, Any], now: datetime) -> str:
    """What WeChat Pay finally said about a refund: SUCCESS is recorded on the order's history;
    ABNORMAL (e.g. the payer's card closed) or CLOSED is flagged for staff, who settle it by hand."""
    status = str(result.get("status", ""))
    order = session.scalar(select(CertificateOrder).where(CertificateOrder.id == order_id).with_for_update())
    if order is None:
        return status
    # The job and the notification (and its retries) may both report it: recorded once.
    told = any((e.detail or {}).get("refund_status") == status for e in events_of(session, order.id))
    if told:
        return status
    if status == "SUCCESS":
        session.add(OrderEvent(order_id=order.id, from_status=None, to_status=order.status,
                               actor="wechatpay:refund", detail={"refund_status": status,
                                                                 "refund_id": result.get("refund_id")}, at=now))
    elif status in ("ABNORMAL", "CLOSED"):
        session.add(OrderEvent(order_id=order.id, from_status=None, to_status=order.status,
                               actor="wechatpay:refund", detail={"refund_status": status,
                                                                 "refund_id": result.get("refund_id")}, at=now))
        record_flag(session, f"refund_{status.lower()}", out_trade_no=order.out_trade_no,
              transaction_id=str(result.get("refund_id") or order.out_refund_no or ""), order_id=order.id,
              detail={"out_refund_no": order.out_refund_no, "status": status, "amount": result.get("amount")})
    session.flush()
    return status
