"""Payment flags: what staff must look at (paid after close, a second payment) and how it is settled."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from handlers.audit import Actor, record_audit
from handlers.errors import Refused
from models.order import PaymentFlag

# WeChat Pay's refund call, as the caller hands it in: (out_trade_no, out_refund_no, total_fen,
# refund_fen, reason) → its answer. It raises Refused when WeChat Pay does not accept the refund.
RefundCall = Callable[[str, str, int, int, str], Mapping[str, Any]]


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


def resolve(session: Session, actor: Actor, flag_id: int, note: str | None, now: datetime) -> PaymentFlag:
    """Staff mark a flag settled (looked at, nothing to give back); audited."""
    if session.get(PaymentFlag, flag_id) is None:
        raise Refused("not_found", "异常记录不存在。")
    flag = resolve_flag(session, flag_id, f"staff:{actor.name}", now)
    record_audit(session, actor, "payments.flag_resolved", "payment_flag", flag_id, note=note or None,
                 after={"reason": flag.reason if flag else None})
    return flag  # type: ignore[return-value]


def refund(session: Session, call: RefundCall, actor: Actor, flag_id: int, now: datetime) -> None:
    """Give back money WeChat Pay took for an order already closed (paid at the last second):
    asked of WeChat Pay with no transaction open, then the flag is settled and audited."""
    out_trade_no, number, total = flag_refund_plan(session, flag_id)
    session.rollback()
    result = call(out_trade_no, number, total, total, "订单已关闭，原路退回")
    resolve_flag(session, flag_id, f"staff:{actor.name}", now)
    record_audit(session, actor, "payments.flag_refund", "payment_flag", flag_id,
                 after={"out_trade_no": out_trade_no, "refund_id": result.get("refund_id"), "total_fen": total})


def open_flags(session: Session) -> list[PaymentFlag]:
    return list(session.scalars(select(PaymentFlag).where(PaymentFlag.resolved_at.is_(None))
                                .order_by(PaymentFlag.id.desc()).limit(200)))
