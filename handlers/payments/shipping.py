"""Paper certificates out of the door: batches by school, printing, shipping, delivery and the notice."""
from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from blobstore import BlobStore
from handlers.audit import Actor, record_audit
from handlers.errors import Refused
from handlers.outbox import record_job
from handlers.payments.orders import NOTIFY_SHIPPED_JOB, locked_order, move
from models import CertificateFile, School
from models.order import CertificateOrder
from models.status import OrderStatus


# -- paper shipments ----------------------------------------------------------------
@dataclass(frozen=True)
class SchoolBatch:
    school: School
    orders: list[CertificateOrder]


def paper_orders_by_school(session: Session, statuses: Iterable[str] = (OrderStatus.PAID, OrderStatus.PRINTING)
                           ) -> list[SchoolBatch]:
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
        if order is not None and order.status == OrderStatus.PAID:
            move(session, order, OrderStatus.PRINTING, actor, now)
        if order is not None and order.status == OrderStatus.PRINTING:
            moved.append(order)
    session.flush()
    return moved


def print_batch(session: Session, actor: Actor, order_ids: Iterable[int], now: datetime, *, blobs: BlobStore
                ) -> tuple[list[CertificateOrder], bytes]:
    """Staff print: the chosen paid orders move to printing (audited), and their certificates come
    back as one PDF. Nothing printable: ([], b"")."""
    printing = start_printing(session, order_ids, f"staff:{actor.name}", now)
    if not printing:
        return [], b""
    record_audit(session, actor, "payments.print", "certificate_orders", ",".join(str(o.id) for o in printing)[:64],
                 after={"orders": [o.out_trade_no for o in printing]})
    return printing, batch_pdf(session, [o.id for o in printing], blobs=blobs)


def batch_pdf(session: Session, order_ids: Iterable[int], *, blobs: BlobStore) -> bytes:
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
            source = pdfium.PdfDocument(blobs.get(stored.blob_key))
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
    move(session, order, OrderStatus.SHIPPED, actor, now, {"carrier": carrier, "tracking_number": tracking_number})
    record_job(session, NOTIFY_SHIPPED_JOB, {"order_id": order.id}, dedup_key=f"pay-shipped:{order.id}")
    session.flush()
    return order


def ship(session: Session, actor: Actor, order_id: int, carrier: str, tracking_number: str,
         now: datetime) -> CertificateOrder:
    """Staff record the mailing (see mark_shipped); audited."""
    order = mark_shipped(session, order_id, carrier, tracking_number, f"staff:{actor.name}", now)
    record_audit(session, actor, "payments.ship", "certificate_order", order.id,
                 after={"carrier": order.carrier, "tracking_number": order.tracking_number})
    return order


def deliver(session: Session, actor: Actor, order_id: int, now: datetime) -> CertificateOrder:
    """Staff record the delivery; audited."""
    order = mark_delivered(session, order_id, f"staff:{actor.name}", now)
    record_audit(session, actor, "payments.delivered", "certificate_order", order_id)
    return order


def mark_delivered(session: Session, order_id: int, actor: str, now: datetime) -> CertificateOrder:
    order = locked_order(session, order_id)
    if order is None:
        raise Refused("no_order", "订单不存在。")
    order.delivered_at = now
    move(session, order, OrderStatus.DELIVERED, actor, now)
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
    if order is None or order.status not in (OrderStatus.SHIPPED, OrderStatus.DELIVERED):
        return None
    return ShippedNotice(order.payer_openid, f"你的纸质证书已寄出：{order.carrier}，运单号 {order.tracking_number}。"
                                             f"证书寄到学校，请留意学校通知。", order.carrier or "",
                         order.tracking_number or "", order.id)
