"""Certificate orders: the state machine (a function per transition, under a row lock), prices, each order's story."""
from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.accounts.identity import PHONE, clean
from handlers.errors import Refused
from handlers.outbox import record_job
from handlers.payments.flags import record_flag
from models import Certificate, Course, School, StudentProfile, User
from models.order import CertificateOrder, OrderEvent
from models.status import CertificateStatus, OrderStatus, PaperStatus

# Which transitions exist; every change of `status` goes through `move`, which checks this.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.CREATED: frozenset({OrderStatus.PAYING, OrderStatus.PAID, OrderStatus.CLOSED}),
    OrderStatus.PAYING: frozenset({OrderStatus.PAID, OrderStatus.CLOSED}),
    OrderStatus.PAID: frozenset({OrderStatus.PRINTING, OrderStatus.SHIPPED, OrderStatus.REFUNDED}),
    OrderStatus.PRINTING: frozenset({OrderStatus.SHIPPED, OrderStatus.REFUNDED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.DELIVERED, OrderStatus.REFUNDED}),
    OrderStatus.DELIVERED: frozenset({OrderStatus.REFUNDED}),
    OrderStatus.CLOSED: frozenset(),
    OrderStatus.REFUNDED: frozenset(),
}
UNPAID = (OrderStatus.CREATED, OrderStatus.PAYING)
PAID = (OrderStatus.PAID, OrderStatus.PRINTING, OrderStatus.SHIPPED, OrderStatus.DELIVERED)
# Final states: such an order no longer holds its certificate (models.order.OPEN says the same in SQL).
FINAL = (OrderStatus.CLOSED, OrderStatus.REFUNDED)
STATUS_LABELS = {OrderStatus.CREATED: "已下单", OrderStatus.PAYING: "待支付", OrderStatus.PAID: "已支付，等待打印",
                 OrderStatus.PRINTING: "打印中", OrderStatus.SHIPPED: "已寄出", OrderStatus.DELIVERED: "已送达",
                 OrderStatus.CLOSED: "已关闭（未支付）", OrderStatus.REFUNDED: "已退款"}
PAPER_CHANNELS = ("paper", "both")
STAFF_PATH = "请在公众号留言联系工作人员"

QUERY_JOB = "payments.query_order"
RECONCILE_JOB = "payments.reconcile"
CLOSE_REMOTE_JOB = "payments.close_remote"
NOTIFY_SHIPPED_JOB = "payments.notify_shipped"
REFUND_CHECK_JOB = "payments.check_refund"


@dataclass(frozen=True)
class Merchant:
    """Who a transaction must name to be ours (handlers read no config; the boundary passes it)."""

    appid: str
    mchid: str


def price_for(prices: Mapping[str, tuple[int, int]], course_code: str) -> tuple[int, int]:
    """(fee, postage) in fen for a course; "*" covers every course without its own price."""
    fee, postage = prices.get(course_code) or prices["*"]
    if type(fee) is not int or type(postage) is not int:
        raise TypeError("prices are whole fen")
    return fee, postage


def yuan(fen: int) -> str:
    """30 yuan shown from 3000 fen, with integer arithmetic only."""
    return f"{fen // 100}.{fen % 100:02d}"


def new_out_trade_no(now: datetime) -> str:
    # 6-32 characters of [0-9A-Za-z_-|*]: a readable date, then randomness (never guessable).
    return "XW" + now.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S") + secrets.token_hex(6).upper()


def move(session: Session, order: CertificateOrder, to: OrderStatus, actor: str, now: datetime,
          detail: dict[str, Any] | None = None) -> None:
    if to not in TRANSITIONS[order.status]:
        raise Refused(
            "bad_transition", f"订单状态为「{STATUS_LABELS[order.status]}」，不能变为「{STATUS_LABELS[to]}」。"
        )
    session.add(OrderEvent(order_id=order.id, from_status=order.status, to_status=to, actor=actor[:100],
                           detail=detail, at=now))
    order.status, order.updated_at = to, now


def locked_order(session: Session, order_id: int) -> CertificateOrder | None:
    # FOR UPDATE on PostgreSQL; SQLite's write transactions (BEGIN IMMEDIATE) are serialised anyway.
    # populate_existing: an order read before the lock is re-read, never decided on stale values.
    return session.scalar(select(CertificateOrder).where(CertificateOrder.id == order_id).with_for_update()
                          .execution_options(populate_existing=True))


def _lock_certificate(session: Session, certificate_id: int) -> Certificate | None:
    return session.scalar(select(Certificate).where(Certificate.id == certificate_id).with_for_update()
                          .execution_options(populate_existing=True))


def locked_with_certificate(session: Session, order_id: int, certificate_id: int
                             ) -> tuple[CertificateOrder | None, Certificate | None]:
    """Lock the certificate, then its order: the order every flow that takes both locks them in
    (a type change holds the certificate first), so two flows never wait on each other in a circle."""
    certificate = _lock_certificate(session, certificate_id)
    order = locked_order(session, order_id)
    if order is not None and certificate is not None and order.certificate_id != certificate.id:
        # A correction moved the order to the new version while we waited: that one is paid for.
        certificate = _lock_certificate(session, order.certificate_id)
    return order, certificate


def follow_correction(session: Session, old_id: int, new_id: int, actor: str, now: datetime,
                      holder_name: str | None = None) -> None:
    """A correction issued version n+1 of a certificate: its open or paid order goes with it (the
    paper copy printed and mailed is the corrected one, and the new version is the one paid for),
    addressed to the corrected name. The caller holds the old certificate's lock; closed and
    refunded orders stay as history. The order's log records the move as an event of its own
    (from_status None), not as a step from a state to the same state."""
    for order in session.scalars(select(CertificateOrder).where(
            CertificateOrder.certificate_id == old_id, CertificateOrder.status.notin_(FINAL))
            .with_for_update()):
        order.certificate_id, order.updated_at = new_id, now
        detail: dict[str, Any] = {"certificate_id": new_id, "from_certificate_id": old_id, "reason": "correction"}
        if holder_name and holder_name != order.recipient_name:
            detail["recipient_name"] = {"before": order.recipient_name, "after": holder_name}
            order.recipient_name = holder_name[:50]
        session.add(OrderEvent(order_id=order.id, from_status=None, to_status=order.status, actor=actor[:100],
                               detail=detail, at=now))
    session.flush()


def open_order_of(session: Session, certificate_id: int) -> CertificateOrder | None:
    return session.scalar(select(CertificateOrder).where(
        CertificateOrder.certificate_id == certificate_id, CertificateOrder.status.notin_(FINAL)))


def courier_phone(raw: str | None, profile_phone: str | None) -> str:
    """The phone the courier calls: the one the student types at the order (asked only here), else
    one an older profile holds; refused when neither is a mobile number."""
    phone = clean(raw or "").replace(" ", "").replace("-", "").removeprefix("+86") or (profile_phone or "")
    if not PHONE.match(phone):
        raise Refused("no_phone", "请填写 11 位手机号：快递员送达学校时联系你，仅用于本次邮寄。")
    return phone


def open_order(session: Session, user_id: int, certificate_id: int, prices: Mapping[str, tuple[int, int]],
               now: datetime, timeout_seconds: int, phone: str | None = None) -> CertificateOrder:
    """The student's order for the paper copy: the open one if there is one (a double tap
    pays once), else a new one at the course's price, addressed to the school. `phone` is the
    courier's number, typed at the order (an unpaid open order takes the newest one)."""
    certificate = session.scalar(select(Certificate).where(
        Certificate.id == certificate_id, Certificate.user_id == user_id, Certificate.status == CertificateStatus.VALID)
        .with_for_update())
    if certificate is None:
        raise Refused("no_certificate", "证书不存在。")
    if certificate.channel not in PAPER_CHANNELS:
        raise Refused("electronic", "电子版证书由学校支付，无需付款。")
    profile = session.scalar(select(StudentProfile).where(StudentProfile.user_id == user_id))
    recipient_phone = courier_phone(phone, profile.phone if profile is not None else None)
    existing = open_order_of(session, certificate.id)
    if existing is not None:
        if existing.status in PAID:
            raise Refused("paid", "纸质证书已支付。")
        existing.recipient_phone = recipient_phone
        if existing.expires_at <= now:
            # Whether it was paid at the last second is WeChat Pay's to say: the query job
            # answers within a minute, then a new order can open.
            record_job(session, QUERY_JOB, {"order_id": existing.id},
                       dedup_key=f"pay-query:{existing.id}:expired")
            raise Refused("expired", "上一笔订单已超时，正在向微信支付确认结果，请一分钟后再试。")
        return existing
    if certificate.paper_status != PaperStatus.AWAITING_PAYMENT:
        raise Refused("paid", f"纸质证书已支付，如需更改，{STAFF_PATH}。")
    user = session.get(User, user_id)
    course = session.get(Course, certificate.course_id)
    if user is None or profile is None or course is None:
        raise Refused("no_profile", "请先完善个人信息。")
    school = session.get(School, profile.school_id)
    assert school is not None
    fee, postage = price_for(prices, course.code)
    order = CertificateOrder(
        out_trade_no=new_out_trade_no(now), certificate_id=certificate.id, user_id=user_id, school_id=school.id,
        status=OrderStatus.CREATED, fee_fen=fee, postage_fen=postage, total_fen=fee + postage,
        description=f"纸质证书 {certificate.serial}"[:120], payer_openid=user.openid,
        expires_at=now + timedelta(seconds=timeout_seconds), recipient_name=profile.real_name,
        recipient_phone=recipient_phone, mail_address=school.address, paper_status_before=certificate.paper_status,
        created_at=now, updated_at=now,
    )
    session.add(order)
    session.flush()
    session.add(OrderEvent(order_id=order.id, from_status=None, to_status=OrderStatus.CREATED,
                           actor=f"student:{user_id}", detail={"fee_fen": fee, "postage_fen": postage}, at=now))
    session.flush()
    return order


def record_prepay(session: Session, order_id: int, prepay_id: str, actor: str, now: datetime,
                  query_after_seconds: int) -> CertificateOrder:
    """WeChat Pay accepted the order: created → paying, and a query is scheduled in case no
    notification ever arrives. An order that closed while WeChat Pay was creating it (the
    student chose electronic, or it timed out) is refused, and closed at WeChat Pay by a job:
    its payment page must never reach the student (the caller commits before answering)."""
    order = locked_order(session, order_id)
    if order is None:
        raise Refused("no_order", "订单不存在。")
    if order.status == OrderStatus.CREATED:
        order.prepay_id = prepay_id
        move(session, order, OrderStatus.PAYING, actor, now, {"prepay_id": prepay_id})
        record_job(session, QUERY_JOB, {"order_id": order.id}, dedup_key=f"pay-query:{order.id}:first",
                   run_after=now + timedelta(seconds=query_after_seconds))
    elif order.status == OrderStatus.CLOSED:
        record_job(session, CLOSE_REMOTE_JOB, {"order_id": order.id}, dedup_key=f"pay-close:{order.id}")
        raise Refused("closed", "订单已关闭（证书类型已更改或订单已超时），请刷新页面。")
    elif order.status not in UNPAID:
        raise Refused("paid", "纸质证书已支付。")
    session.flush()
    return order


def close(session: Session, order_id: int, actor: str, now: datetime, reason: str) -> bool:
    """created/paying → closed (timeout, or the student chose electronic). False when the
    order had moved on meanwhile (a payment won the race)."""
    order = locked_order(session, order_id)
    if order is None or order.status not in UNPAID:
        return False
    order.closed_at = now
    move(session, order, OrderStatus.CLOSED, actor, now, {"reason": reason})
    session.flush()
    return True


def close_for_channel_change(session: Session, certificate_id: int, user_id: int, now: datetime) -> None:
    """The student chose electronic before paying: the open order closes here, and at WeChat
    Pay by a job (so the old payment page cannot be paid any more)."""
    order = open_order_of(session, certificate_id)
    if order is None:
        return
    if order.status in PAID:
        raise Refused("paid", f"证书费用已支付，如需更改或增加证书类型，{STAFF_PATH}。")
    close(session, order.id, f"student:{user_id}", now, "channel_changed")
    if order.prepay_id:
        record_job(session, CLOSE_REMOTE_JOB, {"order_id": order.id}, dedup_key=f"pay-close:{order.id}")


def close_for_revocation(session: Session, certificate_id: int, actor: str, now: datetime) -> None:
    """Staff revoked the certificate (the caller holds its lock): an unpaid order closes here and at
    WeChat Pay (a revoked certificate is not printed, so it must not be paid for); a paid one is
    flagged for staff to refund from the order page."""
    order = open_order_of(session, certificate_id)
    if order is None:
        return
    if order.status in PAID:
        record_flag(session, "revoked_paid", out_trade_no=order.out_trade_no, transaction_id=order.transaction_id,
              order_id=order.id, detail={"order_status": order.status, "total_fen": order.total_fen})
        return
    close(session, order.id, actor, now, "certificate_revoked")
    if order.prepay_id:
        record_job(session, CLOSE_REMOTE_JOB, {"order_id": order.id}, dedup_key=f"pay-close:{order.id}")


def orders_of(session: Session, user_id: int, certificate_id: int) -> list[CertificateOrder]:
    return list(session.scalars(select(CertificateOrder).where(
        CertificateOrder.user_id == user_id, CertificateOrder.certificate_id == certificate_id)
        .order_by(CertificateOrder.id.desc())))


def events_of(session: Session, order_id: int) -> list[OrderEvent]:
    return list(session.scalars(select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)))
