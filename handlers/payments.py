"""Certificate orders: the state machine (one function per transition, each under a row lock), applying
WeChat Pay's word exactly once, refunds, paper shipments, and school billing for electronic certificates."""
from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from handlers import certificate_notices
from handlers.learning import Refused
from handlers.outbox import record_job
from models import Certificate, CertificateEvent, CertificateFile, Course, School, StudentProfile, User
from models.order import CertificateOrder, OrderEvent, PaymentFlag

# Which transitions exist; every change of `status` goes through `move`, which checks this.
TRANSITIONS: dict[str, frozenset[str]] = {
    "created": frozenset({"paying", "paid", "closed"}),
    "paying": frozenset({"paid", "closed"}),
    "paid": frozenset({"printing", "shipped", "refunded"}),
    "printing": frozenset({"shipped", "refunded"}),
    "shipped": frozenset({"delivered", "refunded"}),
    "delivered": frozenset({"refunded"}),
    "closed": frozenset(),
    "refunded": frozenset(),
}
UNPAID = ("created", "paying")
PAID = ("paid", "printing", "shipped", "delivered")
STATUS_LABELS = {"created": "已下单", "paying": "待支付", "paid": "已支付，等待打印", "printing": "打印中",
                 "shipped": "已寄出", "delivered": "已送达", "closed": "已关闭（未支付）", "refunded": "已退款"}
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


def move(session: Session, order: CertificateOrder, to: str, actor: str, now: datetime,
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
            CertificateOrder.certificate_id == old_id, CertificateOrder.status.notin_(("closed", "refunded")))
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
        CertificateOrder.certificate_id == certificate_id, CertificateOrder.status.notin_(("closed", "refunded"))))


def open_order(session: Session, user_id: int, certificate_id: int, prices: Mapping[str, tuple[int, int]],
               now: datetime, timeout_seconds: int) -> CertificateOrder:
    """The student's order for the paper copy: the open one if there is one (a double tap
    pays once), else a new one at the course's price, addressed to the school."""
    certificate = session.scalar(select(Certificate).where(
        Certificate.id == certificate_id, Certificate.user_id == user_id, Certificate.status == "valid")
        .with_for_update())
    if certificate is None:
        raise Refused("no_certificate", "证书不存在。")
    if certificate.channel not in PAPER_CHANNELS:
        raise Refused("electronic", "电子版证书由学校支付，无需付款。")
    existing = open_order_of(session, certificate.id)
    if existing is not None:
        if existing.status in PAID:
            raise Refused("paid", "纸质证书已支付。")
        if existing.expires_at <= now:
            # Whether it was paid at the last second is WeChat Pay's to say: the query job
            # answers within a minute, then a new order can open.
            record_job(session, QUERY_JOB, {"order_id": existing.id},
                       dedup_key=f"pay-query:{existing.id}:expired")
            raise Refused("expired", "上一笔订单已超时，正在向微信支付确认结果，请一分钟后再试。")
        return existing
    if certificate.paper_status != "awaiting_payment":
        raise Refused("paid", f"纸质证书已支付，如需更改，{STAFF_PATH}。")
    user = session.get(User, user_id)
    profile = session.scalar(select(StudentProfile).where(StudentProfile.user_id == user_id))
    course = session.get(Course, certificate.course_id)
    if user is None or profile is None or course is None:
        raise Refused("no_profile", "请先完善个人信息。")
    school = session.get(School, profile.school_id)
    assert school is not None
    fee, postage = price_for(prices, course.code)
    order = CertificateOrder(
        out_trade_no=new_out_trade_no(now), certificate_id=certificate.id, user_id=user_id, school_id=school.id,
        status="created", fee_fen=fee, postage_fen=postage, total_fen=fee + postage,
        description=f"纸质证书 {certificate.serial}"[:120], payer_openid=user.openid,
        expires_at=now + timedelta(seconds=timeout_seconds), recipient_name=profile.real_name,
        recipient_phone=profile.phone, mail_address=school.address, paper_status_before=certificate.paper_status,
        created_at=now, updated_at=now,
    )
    session.add(order)
    session.flush()
    session.add(OrderEvent(order_id=order.id, from_status=None, to_status="created", actor=f"student:{user_id}",
                           detail={"fee_fen": fee, "postage_fen": postage}, at=now))
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
    if order.status == "created":
        order.prepay_id = prepay_id
        move(session, order, "paying", actor, now, {"prepay_id": prepay_id})
        record_job(session, QUERY_JOB, {"order_id": order.id}, dedup_key=f"pay-query:{order.id}:first",
                   run_after=now + timedelta(seconds=query_after_seconds))
    elif order.status == "closed":
        record_job(session, CLOSE_REMOTE_JOB, {"order_id": order.id}, dedup_key=f"pay-close:{order.id}")
        raise Refused("closed", "订单已关闭（证书类型已更改或订单已超时），请刷新页面。")
    elif order.status not in UNPAID:
        raise Refused("paid", "纸质证书已支付。")
    session.flush()
    return order


def record_flag(session: Session, reason: str, *, out_trade_no: str | None, transaction_id: str | None,
          order_id: int | None, detail: dict[str, Any]) -> None:
    """Keep a problem for staff once (WeChat Pay retries a notification for a day): the
    second sighting only counts."""
    key = f"{reason}:{transaction_id or out_trade_no or '-'}"[:120]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(PaymentFlag).values(
        reason=reason, key=key, out_trade_no=(out_trade_no or "")[:64] or None,
        transaction_id=(transaction_id or "")[:64] or None, order_id=order_id, detail=detail, seen_count=1,
    ).on_conflict_do_update(index_elements=["key"], set_={"seen_count": PaymentFlag.seen_count + 1}))


def _parse_time(value: Any, default: datetime) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return default
    return parsed.astimezone(timezone.utc) if parsed.tzinfo else default


def apply_transaction(session: Session, transaction: Mapping[str, Any], merchant: Merchant, actor: str,
                      now: datetime) -> str:
    """Apply WeChat Pay's account of a transaction (a notification's resource or a query's
    answer), exactly once. The order row is locked first, so duplicate and concurrent
    notifications and the student's own query queue here and only the first one pays.

    Returns "paid", "duplicate", "unpaid" (nothing to do yet) or "flagged:<reason>"; a flag
    is kept for staff and nothing is paid."""
    out_trade_no = str(transaction.get("out_trade_no") or "")
    transaction_id = str(transaction.get("transaction_id") or "") or None
    summary = {"out_trade_no": out_trade_no, "transaction_id": transaction_id,
               "trade_state": transaction.get("trade_state"), "amount": transaction.get("amount"), "via": actor}
    if transaction.get("appid") != merchant.appid or transaction.get("mchid") != merchant.mchid:
        record_flag(session, "not_ours", out_trade_no=out_trade_no, transaction_id=transaction_id, order_id=None,
              detail=summary)
        return "flagged:not_ours"
    found = session.execute(select(CertificateOrder.id, CertificateOrder.certificate_id).where(
        CertificateOrder.out_trade_no == out_trade_no)).first()
    if found is None:
        record_flag(session, "unknown_order", out_trade_no=out_trade_no, transaction_id=transaction_id, order_id=None,
              detail=summary)
        return "flagged:unknown_order"
    order, certificate = locked_with_certificate(session, found.id, found.certificate_id)
    assert order is not None and certificate is not None
    if transaction.get("trade_state") != "SUCCESS":
        return "unpaid"
    amount = transaction.get("amount") or {}
    total = amount.get("total")
    # Exact: an integer number of fen equal to what the order asked, in yuan renminbi.
    if type(total) is not int or total != order.total_fen or amount.get("currency", "CNY") != "CNY":
        record_flag(session, "wrong_amount", out_trade_no=out_trade_no, transaction_id=transaction_id, order_id=order.id,
              detail={**summary, "expected_fen": order.total_fen})
        return "flagged:wrong_amount"
    if not transaction_id:
        record_flag(session, "no_transaction_id", out_trade_no=out_trade_no, transaction_id=None, order_id=order.id,
              detail=summary)
        return "flagged:no_transaction_id"
    if order.status in UNPAID:
        order.transaction_id = transaction_id
        order.paid_at = _parse_time(transaction.get("success_time"), now)
        move(session, order, "paid", actor, now, {"transaction_id": transaction_id, "total_fen": total})
        certificate.paper_status = "paid"
        session.add(CertificateEvent(certificate_id=certificate.id, action="paper_paid", actor=actor[:100],
                                     details={"order": order.out_trade_no, "total_fen": total}, at=now))
        certificate_notices.queue_notice(session, certificate.id, "paid")
        session.flush()
        return "paid"
    if order.transaction_id == transaction_id:
        return "duplicate"  # a retry, a duplicate, the query after the notification, a replay
    reason = "paid_after_close" if order.status == "closed" else "second_payment"
    # Money was taken for an order we no longer hold open: staff refund it by hand.
    record_flag(session, reason, out_trade_no=out_trade_no, transaction_id=transaction_id, order_id=order.id,
          detail={**summary, "order_status": order.status})
    return f"flagged:{reason}"


def flag_refused_notification(session: Session, reason: str, detail: dict[str, Any], now: datetime) -> None:
    """A notification that failed its checks (a forged signature, a stale timestamp, ...):
    kept for staff without the body, counted once per reason and day. The key holds nothing the
    sender chose (not the serial header): otherwise each forged request would add a row, and a few
    hundred would push the real flags (money to refund) off the staff page."""
    day = now.astimezone(timezone.utc).strftime("%Y-%m-%d")
    record_flag(session, reason, out_trade_no=None, transaction_id=day, order_id=None, detail=detail)


def close(session: Session, order_id: int, actor: str, now: datetime, reason: str) -> bool:
    """created/paying → closed (timeout, or the student chose electronic). False when the
    order had moved on meanwhile (a payment won the race)."""
    order = locked_order(session, order_id)
    if order is None or order.status not in UNPAID:
        return False
    order.closed_at = now
    move(session, order, "closed", actor, now, {"reason": reason})
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


def due_for_query(session: Session, now: datetime, query_after_seconds: int) -> list[int]:
    """Unpaid orders that should have heard from WeChat Pay by now, or have expired."""
    # A created order never reached WeChat Pay (nothing to ask) until it expires and closes.
    return list(
        session.scalars(
            select(CertificateOrder.id)
            .where(
                CertificateOrder.status.in_(UNPAID),
                (
                    (CertificateOrder.status == "paying")
                    & (CertificateOrder.updated_at <= now - timedelta(seconds=query_after_seconds))
                )
                | (CertificateOrder.expires_at <= now),
            )
            .order_by(CertificateOrder.id)
            .limit(500)
        )
    )


# How often an unsettled order is asked about, by how long ago it expired: WeChat Pay being down, or
# refusing one order's query for good, must not mean a failing job every minute forever.
QUERY_EVERY = ((timedelta(hours=1), "%Y-%m-%dT%H:%M"), (timedelta(days=1), "%Y-%m-%dT%H"))
QUERY_DAILY = "%Y-%m-%d"


def has_unsettled_orders(session: Session) -> bool:
    """Whether any order still waits on WeChat Pay (what payments.reconcile looks at)."""
    return session.scalar(select(CertificateOrder.id).where(CertificateOrder.status.in_(UNPAID)).limit(1)) is not None


def schedule_queries(session: Session, now: datetime, query_after_seconds: int) -> int:
    """Record a query job for each order due for one (see `due_for_query`): every minute while it
    is open and for an hour after it expired, then hourly, then daily, each daily one also flagged
    for staff ("unsettled"); the query never stops, so the order settles once WeChat Pay answers.
    Returns the number of jobs recorded."""
    ids = due_for_query(session, now, query_after_seconds)
    if not ids:
        return 0
    recorded = 0
    rows = session.execute(select(CertificateOrder.id, CertificateOrder.out_trade_no, CertificateOrder.expires_at,
                                  CertificateOrder.status).where(CertificateOrder.id.in_(ids))).all()
    for order_id, out_trade_no, expires_at, status in rows:
        late = now - expires_at
        stamp = next((fmt for limit, fmt in QUERY_EVERY if late < limit), QUERY_DAILY)
        job = record_job(session, QUERY_JOB, {"order_id": order_id},
                         dedup_key=f"pay-query:{order_id}:{now.strftime(stamp)}", max_attempts=3)
        recorded += job is not None
        if job is not None and stamp == QUERY_DAILY:
            record_flag(
                session,
                "unsettled",
                out_trade_no=out_trade_no,
                transaction_id=None,
                order_id=order_id,
                detail={"status": status, "expired_at": expires_at.isoformat(), "note": "微信支付超过一天未能确认结果"},
            )
    session.flush()
    return recorded


# -- refunds ----------------------------------------------------------------------
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
    if order.status == "refunded":
        return False
    refund = result.get("amount", {}).get("refund")
    if type(refund) is not int or refund != order.total_fen:
        raise Refused("refund_amount", "退款金额与订单金额不一致，请联系技术人员核对。")
    order.out_refund_no, order.refund_id = refund_number(order), str(result.get("refund_id", ""))[:32]
    order.refund_reason, order.refunded_at = reason[:500], now
    move(session, order, "refunded", actor, now, {"refund_id": order.refund_id, "status": result.get("status"),
                                                   "reason": reason[:200]})
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


# -- paper shipments ----------------------------------------------------------------
@dataclass(frozen=True)
class SchoolBatch:
    school: School
    orders: list[CertificateOrder]


def paper_orders_by_school(session: Session, statuses: Iterable[str] = ("paid", "printing")) -> list[SchoolBatch]:
    """Paid paper orders grouped by the school they are mailed to, oldest payment first."""
    rows = session.execute(select(CertificateOrder, School).join(School, School.id == CertificateOrder.school_id)
                           .where(CertificateOrder.status.in_(tuple(statuses)))
                           .order_by(School.name, CertificateOrder.paid_at, CertificateOrder.id)).all()
    batches: dict[int, SchoolBatch] = {}
    for order, school in rows:
        batches.setdefault(school.id, SchoolBatch(school, [])).orders.append(order)
    return list(batches.values())


def start_printing(session: Session, order_ids: Iterable[int], actor: str, now: datetime) -> list[CertificateOrder]:
    """paid → printing for each order (already printing stays); others are skipped."""
    moved = []
    for order_id in sorted(set(order_ids)):
        order = locked_order(session, order_id)
        if order is not None and order.status == "paid":
            move(session, order, "printing", actor, now)
        if order is not None and order.status == "printing":
            moved.append(order)
    session.flush()
    return moved


def batch_pdf(session: Session, order_ids: Iterable[int]) -> bytes:
    """The certificates of these orders, one stored PDF after another, in one file."""
    import pypdfium2 as pdfium  # the renderer's dependency; only staff printing needs it here

    out = pdfium.PdfDocument.new()
    try:
        for order_id in sorted(set(order_ids)):
            order = session.get(CertificateOrder, order_id)
            if order is None:
                continue
            stored = session.scalar(select(CertificateFile).where(
                CertificateFile.certificate_id == order.certificate_id, CertificateFile.kind == "pdf"))
            if stored is None:
                continue
            source = pdfium.PdfDocument(stored.content)
            try:
                out.import_pages(source)
            finally:
                source.close()
        buffer = io.BytesIO()
        out.save(buffer)
        return buffer.getvalue()
    finally:
        out.close()


def mark_shipped(session: Session, order_id: int, carrier: str, tracking_number: str, actor: str,
                 now: datetime) -> CertificateOrder:
    """Mailed: carrier and tracking number recorded, and the student is told (a job)."""
    carrier, tracking_number = " ".join(carrier.split())[:40], "".join(tracking_number.split())[:40]
    if not carrier or not tracking_number:
        raise Refused("no_tracking", "请填写快递公司和运单号。")
    order = locked_order(session, order_id)
    if order is None:
        raise Refused("no_order", "订单不存在。")
    order.carrier, order.tracking_number, order.shipped_at = carrier, tracking_number, now
    school = session.get(School, order.school_id)
    if school is not None and school.address:
        order.mail_address = school.address  # where it actually went: the address staff keep current
    move(session, order, "shipped", actor, now, {"carrier": carrier, "tracking_number": tracking_number})
    record_job(session, NOTIFY_SHIPPED_JOB, {"order_id": order.id}, dedup_key=f"pay-shipped:{order.id}")
    session.flush()
    return order


def mark_delivered(session: Session, order_id: int, actor: str, now: datetime) -> CertificateOrder:
    order = locked_order(session, order_id)
    if order is None:
        raise Refused("no_order", "订单不存在。")
    order.delivered_at = now
    move(session, order, "delivered", actor, now)
    session.flush()
    return order


@dataclass(frozen=True)
class ShippedNotice:
    openid: str
    text: str
    carrier: str
    tracking_number: str
    order_id: int


def shipped_notice(session: Session, order_id: int) -> ShippedNotice | None:
    """What tells the student their certificate is on its way; None if it is not shipped."""
    order = session.get(CertificateOrder, order_id)
    if order is None or order.status not in ("shipped", "delivered"):
        return None
    return ShippedNotice(order.payer_openid, f"你的纸质证书已寄出：{order.carrier}，运单号 {order.tracking_number}。"
                                             f"证书寄到学校，请留意学校通知。", order.carrier or "",
                         order.tracking_number or "", order.id)


def orders_of(session: Session, user_id: int, certificate_id: int) -> list[CertificateOrder]:
    return list(session.scalars(select(CertificateOrder).where(
        CertificateOrder.user_id == user_id, CertificateOrder.certificate_id == certificate_id)
        .order_by(CertificateOrder.id.desc())))


def events_of(session: Session, order_id: int) -> list[OrderEvent]:
    return list(session.scalars(select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)))


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


REFUNDABLE_FLAGS = ("paid_after_close", "second_payment")


def flag_refund_plan(session: Session, flag_id: int) -> tuple[str, str, int]:
    """(out_trade_no, out_refund_no, fen) to give back money WeChat Pay took for an order we had
    closed: the amount is the one the transaction reported, the refund number fixed per flag."""
    flag = session.get(PaymentFlag, flag_id)
    if flag is None or flag.reason not in REFUNDABLE_FLAGS or flag.resolved_at is not None:
        raise Refused("not_refundable", "这条异常不能在这里退款。")
    total = ((flag.detail or {}).get("amount") or {}).get("total")
    if type(total) is not int or total <= 0 or not flag.out_trade_no or not flag.transaction_id:
        raise Refused("not_refundable", "异常记录中没有可退的金额。")
    return flag.out_trade_no, f"RF{flag.id}-{flag.transaction_id}"[:64], total


def resolve_flag(session: Session, flag_id: int, actor: str, now: datetime) -> PaymentFlag | None:
    flag = session.scalar(select(PaymentFlag).where(PaymentFlag.id == flag_id).with_for_update())
    if flag is not None and flag.resolved_at is None:
        flag.resolved_at, flag.resolved_by = now, actor[:100]
        session.flush()
    return flag


def open_flags(session: Session) -> list[PaymentFlag]:
    return list(session.scalars(select(PaymentFlag).where(PaymentFlag.resolved_at.is_(None))
                                .order_by(PaymentFlag.id.desc()).limit(200)))


# -- school billing (electronic certificates are paid by the school) ------------------
@dataclass(frozen=True)
class BillingRow:
    school: str
    count: int


def school_billing(session: Session, start: date, end: date) -> list[BillingRow]:
    """Electronic certificates issued per school in [start, end]: first versions only (a
    correction is not a new certificate), revoked ones included (they were issued)."""
    if end < start:
        raise Refused("bad_period", "结束日期不能早于开始日期。")
    rows = session.execute(select(Certificate.school_name, func.count()).where(
        Certificate.version == 1, Certificate.channel.in_(("electronic", "both")),
        Certificate.issued_on >= start, Certificate.issued_on <= end)
        .group_by(Certificate.school_name).order_by(Certificate.school_name)).all()
    return [BillingRow(name, int(n)) for name, n in rows]


def billing_csv(rows: list[BillingRow], start: date, end: date) -> str:
    """The billing counts as CSV (UTF-8 with BOM, so spreadsheet programs read the Chinese)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["学校", "电子证书数量", "开始日期", "结束日期"])
    for row in rows:
        # A name starting with =, +, - or @ (or a tab or CR, which spreadsheets skip first) would be a formula.
        name = "'" + row.school if row.school[:1] in ("=", "+", "-", "@", "\t", "\r") else row.school
        writer.writerow([name, row.count, start.isoformat(), end.isoformat()])
    return "\ufeff" + buffer.getvalue()
