"""WeChat Pay's word on an order: applying a payment exactly once, and querying orders it has not reported."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers import notices
from handlers.outbox import record_job
from handlers.payments.flags import record_flag
from handlers.payments.orders import QUERY_JOB, UNPAID, Merchant, locked_with_certificate, move
from models import CertificateEvent
from models.order import CertificateOrder
from models.status import OrderStatus, PaperStatus


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
        record_flag(session, "wrong_amount", out_trade_no=out_trade_no, transaction_id=transaction_id,
                    order_id=order.id, detail={**summary, "expected_fen": order.total_fen})
        return "flagged:wrong_amount"
    if not transaction_id:
        record_flag(session, "no_transaction_id", out_trade_no=out_trade_no, transaction_id=None, order_id=order.id,
              detail=summary)
        return "flagged:no_transaction_id"
    if order.status in UNPAID:
        order.transaction_id = transaction_id
        order.paid_at = _parse_time(transaction.get("success_time"), now)
        move(session, order, OrderStatus.PAID, actor, now, {"transaction_id": transaction_id, "total_fen": total})
        certificate.paper_status = PaperStatus.PAID
        session.add(CertificateEvent(certificate_id=certificate.id, action="paper_paid", actor=actor[:100],
                                     details={"order": order.out_trade_no, "total_fen": total}, at=now))
        notices.queue_notice(session, certificate.id, "paid")
        session.flush()
        return "paid"
    if order.transaction_id == transaction_id:
        return "duplicate"  # a retry, a duplicate, the query after the notification, a replay
    reason = "paid_after_close" if order.status == OrderStatus.CLOSED else "second_payment"
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


def due_for_query(session: Session, now: datetime, query_after_seconds: int) -> list[int]:
    """Unpaid orders that should have heard from WeChat Pay by now, or have expired."""
    # A created order never reached WeChat Pay (nothing to ask) until it expires and closes.
    return list(
        session.scalars(
            select(CertificateOrder.id)
            .where(
                CertificateOrder.status.in_(UNPAID),
                (
                    (CertificateOrder.status == OrderStatus.PAYING)
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
