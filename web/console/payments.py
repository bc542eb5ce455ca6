"""Staff console for certificate orders: paper orders by school, batch printing, shipping, refunds, flags, billing."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    get_flashed_messages,
    redirect,
    request,
    url_for,
)
from sqlalchemy import select

from database import get_session
from handlers import china_time, payments
from handlers.console_accounts import record_audit
from handlers.learning import Refused
from models import Certificate, CertificateOrder, PaymentFlag, School
from models.console import PLATFORM_ADMIN, STAFF
from web.clock import now
from web.console import console_required, current_actor, id_value, register_nav, render_console
from wechat.pay import PayError, get_wechat_pay

bp = Blueprint("console_payments", __name__, url_prefix="/console/payments", template_folder="../templates")
STAFF_ONLY = (STAFF, PLATFORM_ADMIN)
CHINA = china_time.CHINA

register_nav("纸质证书订单", "console_payments.index", STAFF_ONLY, order=35)
register_nav("学校结算", "console_payments.billing", STAFF_ONLY, order=36)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _staff() -> str:
    return f"staff:{current_actor().name}"


def _back(target: str, text: str) -> Response:
    """Back to a page with a note on it. The note travels in the session (flash), never in the URL:
    a link anyone can send a staff member must not put words of its own on a console page."""
    flash(text, "payments")
    return redirect(target)


def _notes() -> list[str]:
    return list(get_flashed_messages(category_filter=["payments"]))


def _common() -> dict[str, Any]:
    return {"labels": payments.STATUS_LABELS, "yuan": payments.yuan, "china": CHINA}


@bp.get("/")
@console_required(*STAFF_ONLY)
def index() -> Response:
    session = get_session()
    batches = payments.paper_orders_by_school(session)
    status = request.args.get("status", "")
    query = select(CertificateOrder).order_by(CertificateOrder.id.desc()).limit(100)
    if status in payments.STATUS_LABELS:
        query = query.where(CertificateOrder.status == status)
    recent = list(session.scalars(query))
    flagged = len(payments.open_flags(session))
    return render_console("console/payments/index.html", batches=batches, recent=recent, status_filter=status,
                          flagged=flagged, notes=_notes(), **_common())


@bp.get("/orders/<int:order_id>")
@console_required(*STAFF_ONLY)
def order(order_id: int) -> Response:
    session = get_session()
    found = session.get(CertificateOrder, order_id)
    if found is None:
        abort(404)
    return render_console("console/payments/order.html", order=found, school=session.get(School, found.school_id),
                          certificate=session.get(Certificate, found.certificate_id),
                          events=payments.events_of(session, found.id), notes=_notes(),
                          **_common())


@bp.post("/print")
@console_required(*STAFF_ONLY)
def print_batch() -> Response:
    """Selected paid orders move to printing; their certificates come back as one PDF."""
    ids = [i for i in map(id_value, request.form.getlist("order_id")) if i is not None]
    if not ids:
        return _back(url_for(".index"), "请先选择要打印的订单")
    session = get_session()
    printing = payments.start_printing(session, ids, _staff(), now())
    if not printing:
        return _back(url_for(".index"), "所选订单都不在待打印状态")
    record_audit(
        session,
        current_actor(),
        "payments.print",
        "certificate_orders",
        ",".join(str(o.id) for o in printing)[:64],
        after={"orders": [o.out_trade_no for o in printing]},
    )
    pdf = payments.batch_pdf(session, [o.id for o in printing])
    session.commit()
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="paper-batch-{now():%Y%m%d-%H%M}.pdf"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/orders/<int:order_id>/ship")
@console_required(*STAFF_ONLY)
def ship(order_id: int) -> Response:
    session = get_session()
    try:
        shipped = payments.mark_shipped(session, order_id, request.form.get("carrier", ""),
                                        request.form.get("tracking_number", ""), _staff(), now())
    except Refused as refusal:
        session.rollback()
        return _back(url_for(".order", order_id=order_id), refusal.message)
    record_audit(session, current_actor(), "payments.ship", "certificate_order", shipped.id,
                 after={"carrier": shipped.carrier, "tracking_number": shipped.tracking_number})
    session.commit()
    return redirect(url_for(".order", order_id=order_id))


@bp.post("/orders/<int:order_id>/delivered")
@console_required(*STAFF_ONLY)
def delivered(order_id: int) -> Response:
    session = get_session()
    try:
        payments.mark_delivered(session, order_id, _staff(), now())
    except Refused as refusal:
        session.rollback()
        return _back(url_for(".order", order_id=order_id), refusal.message)
    record_audit(session, current_actor(), "payments.delivered", "certificate_order", order_id)
    session.commit()
    return redirect(url_for(".order", order_id=order_id))


@bp.post("/orders/<int:order_id>/refund")
@console_required(*STAFF_ONLY)
def refund(order_id: int) -> Response:
    """Refund through WeChat Pay (the same out_refund_no however often asked), then here."""
    reason = " ".join(request.form.get("reason", "").split())
    if not reason:
        return _back(url_for(".order", order_id=order_id), "请填写退款原因")
    session = get_session()
    try:
        plan = payments.refund_plan(session, order_id)
    except Refused as refusal:
        return _back(url_for(".order", order_id=order_id), refusal.message)
    out_trade_no, number, total, status = plan.out_trade_no, payments.refund_number(plan), plan.total_fen, plan.status
    session.rollback()  # no lock held while WeChat Pay answers
    try:
        result = get_wechat_pay(current_app._get_current_object()).refund_order(  # type: ignore[attr-defined]
            out_trade_no=out_trade_no, out_refund_no=number, total_fen=total, refund_fen=total, reason=reason)
    except PayError as exc:
        return _back(url_for(".order", order_id=order_id), f"微信支付未受理退款：{exc}"[:200])
    try:
        applied = payments.apply_refund(session, order_id, result, _staff(), reason, now())
    except Refused as refusal:
        session.rollback()
        return _back(url_for(".order", order_id=order_id), refusal.message)
    if not applied:  # the other click of a double click refunded it: one audit entry
        session.commit()
        return redirect(url_for(".order", order_id=order_id))
    record_audit(session, current_actor(), "payments.refund", "certificate_order", order_id, before={"status": status},
                 after={"status": "refunded", "refund_id": result.get("refund_id"), "total_fen": total}, note=reason)
    session.commit()
    return redirect(url_for(".order", order_id=order_id))


@bp.get("/flags")
@console_required(*STAFF_ONLY)
def flags() -> Response:
    return render_console("console/payments/flags.html", flags=payments.open_flags(get_session()),
                          refundable=payments.REFUNDABLE_FLAGS, notes=_notes(), **_common())


@bp.post("/flags/<int:flag_id>/resolve")
@console_required(*STAFF_ONLY)
def resolve_flag(flag_id: int) -> Response:
    session = get_session()
    if session.get(PaymentFlag, flag_id) is None:
        abort(404)
    flag = payments.resolve_flag(session, flag_id, _staff(), now())
    record_audit(session, current_actor(), "payments.flag_resolved", "payment_flag", flag_id,
                 note=request.form.get("note", "")[:500] or None, after={"reason": flag.reason if flag else None})
    session.commit()
    return redirect(url_for(".flags"))


@bp.post("/flags/<int:flag_id>/refund")
@console_required(*STAFF_ONLY)
def refund_flag(flag_id: int) -> Response:
    """Give back money taken for an order already closed (paid at the last second)."""
    session = get_session()
    try:
        out_trade_no, number, total = payments.flag_refund_plan(session, flag_id)
    except Refused as refusal:
        return _back(url_for(".flags"), refusal.message)
    session.rollback()
    try:
        result = get_wechat_pay(current_app._get_current_object()).refund_order(  # type: ignore[attr-defined]
            out_trade_no=out_trade_no,
            out_refund_no=number,
            total_fen=total,
            refund_fen=total,
            reason="订单已关闭，原路退回",
        )
    except PayError as exc:
        return _back(url_for(".flags"), f"微信支付未受理退款：{exc}"[:200])
    payments.resolve_flag(session, flag_id, _staff(), now())
    record_audit(session, current_actor(), "payments.flag_refund", "payment_flag", flag_id,
                 after={"out_trade_no": out_trade_no, "refund_id": result.get("refund_id"), "total_fen": total})
    session.commit()
    return redirect(url_for(".flags"))


def _period() -> tuple[date, date]:
    today = now().astimezone(CHINA).date()
    try:
        start = date.fromisoformat(request.args.get("start") or today.replace(day=1).isoformat())
        end = date.fromisoformat(request.args.get("end") or today.isoformat())
    except ValueError:
        abort(400, description="日期格式应为 YYYY-MM-DD")
    return start, end


@bp.get("/billing")
@console_required(*STAFF_ONLY)
def billing() -> Response:
    """Electronic certificates per school for a period (the school pays); CSV for invoicing."""
    start, end = _period()
    session = get_session()
    try:
        rows = payments.school_billing(session, start, end)
    except Refused as refusal:
        abort(400, description=refusal.message)
    if request.args.get("format") == "csv":
        record_audit(session, current_actor(), "payments.billing_export", None, None,
                     after={"start": start.isoformat(), "end": end.isoformat(), "schools": len(rows)})
        session.commit()
        response = Response(payments.billing_csv(rows, start, end), mimetype="text/csv")
        response.headers["Content-Disposition"] = f'attachment; filename="billing-{start}-{end}.csv"'
        response.headers["Cache-Control"] = "no-store"
        return response
    return render_console("console/payments/billing.html", rows=rows, start=start, end=end,
                          total=sum(r.count for r in rows))
