"""Certificate orders: the paper copy's payment and shipment, every transition, and notifications flagged for staff."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from models.status import OrderStatus

# An order that still holds its certificate: at most one per certificate.
OPEN = "status NOT IN ('closed', 'refunded')"


class CertificateOrder(Base):
    """One payment for a certificate's paper copy (20 yuan + postage, mailed to the school).

    Amounts are whole fen (integers), copied from the course's price when the order opens, so a
    price change never alters an order already shown to the student."""

    __tablename__ = "certificate_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True)  # ours, sent to WeChat Pay
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    # Changed only by handlers.payments.orders.move, which checks TRANSITIONS and logs an OrderEvent.
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.CREATED)
    fee_fen: Mapped[int]
    postage_fen: Mapped[int]
    total_fen: Mapped[int]
    description: Mapped[str] = mapped_column(String(120))
    payer_openid: Mapped[str] = mapped_column(String(64))
    prepay_id: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    transaction_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    paid_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    # The envelope: the school's address, the student's name and phone (staff call it if needed).
    recipient_name: Mapped[str] = mapped_column(String(50))
    recipient_phone: Mapped[str] = mapped_column(String(20))
    mail_address: Mapped[str | None] = mapped_column(String(300))
    carrier: Mapped[str | None] = mapped_column(String(40))
    tracking_number: Mapped[str | None] = mapped_column(String(40))
    shipped_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    # What the certificate's paper_status was when the order opened; a refund restores it.
    paper_status_before: Mapped[str | None] = mapped_column(String(24))
    out_refund_no: Mapped[str | None] = mapped_column(String(64), unique=True)
    refund_id: Mapped[str | None] = mapped_column(String(32))
    refund_reason: Mapped[str | None] = mapped_column(Text)
    refunded_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("uq_certificate_orders_certificate_open", "certificate_id", unique=True,
              postgresql_where=text(OPEN), sqlite_where=text(OPEN)),
        Index("ix_certificate_orders_status", "status"),
        Index("ix_certificate_orders_user_id", "user_id"),
    )


class OrderEvent(Base):
    """Append-only: every transition of an order, with its time and actor."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("certificate_orders.id"))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(100))  # "student:12", "wechatpay:notify", "job:query", "staff:wang"
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_order_events_order_id", "order_id"),)


class PaymentFlag(Base):
    """A payment notification or query result we did not act on (wrong amount, unknown or
    closed order, ...): kept for staff, never applied. One row per kind of problem per
    transaction, however often WeChat Pay retries."""

    __tablename__ = "payment_flags"

    id: Mapped[int] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))  # wrong_amount, unknown_order, paid_after_close, ...
    key: Mapped[str] = mapped_column(String(120), unique=True)  # reason + transaction: one flag per problem
    out_trade_no: Mapped[str | None] = mapped_column(String(64))
    transaction_id: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("certificate_orders.id"))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    seen_count: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(100))
