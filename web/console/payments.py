"""Staff console for certificate orders: paper orders by school, batch printing, shipping, refunds, flags, billing.

Recipients' phones are masked on every page; an order's page shows its phone in full on an audited POST."""

from __future__ import annotations

from collections.abc import Mapping
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
from handlers import china_time
from handlers.errors import Refused
from handlers.payments import billing as payment_billing
from handlers.payments import flags as payment_flags
from handlers.payments import orders, refunds, shipping
from handlers.privacy import masking
from models import Certificate, CertificateOrder, School
from models.console import PLATFORM_ADMIN, STAFF
from web.blobs import get_blob_store
from web.boundary import on_refused
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



def _back(target: str, text: str) -> Response:
    """Back to a page with a note on it. The note travels in the session (flash), never in the URL:
    a link anyone can send a staff member must not put words of its own on a console page."""
    flash(text, "payments")
    return redirect(target)


def _notes() -> list[str]:
    return list(get_flashed_messages(category_filter=["payments"]))


def _common() -> dict[str, Any]:
    return {"labels": orders.STATUS_LABELS, "yuan": orders.yuan, "china": CHINA}


@bp.get("/")
@console_required(*STAFF_ONLY)
def index() -> Response:
    session = get_session()
    batches = shipping.paper_orders_by_school(session)
    status = request.args.get("status", "")
    query = select(CertificateOrder).order_by(CertificateOrder.id.desc()).limit(100)
    if status in orders.STATUS_LABELS:
        query = query.where(CertificateOrder.status == status)
    recent = list(session.scalars(query))
    flagged = len(payment_flags.open_flags(session))
    return render_console("console/payments/index.html", batches=batches, recent=recent, status_filter=status,
                          flagged=flagged, notes=_notes(), **_common())


@bp.get("/orders/<int:order_id>")
@console_required(*STAFF_ONLY)
def order(order_id: int) -> Response:
    return _order_page(order_id, revealed=False)


@bp.post("/orders/<int:order_id>/reveal")
@console_required(*STAFF_ONLY)
def reveal_order(order_id: int) -> Response:
    """The order's page with the recipient's phone in full (for the courier), recorded in the audit log."""
    return _order_page(order_id, revealed=True)


def _order_page(order_id: int, *, revealed: bool) -> Response:
    session = get_session()
    found = session.get(CertificateOrder, order_id)
    if found is None:
        abort(404)
    if revealed:
        masking.record_reveal(session, current_actor(), "certificate_order", found.id, ["phone"],
                              school_id=found.school_id)
    return render_console("console/payments/order.html", order=found, school=session.get(School, found.school_id),
                          certificate=session.get(Certificate, found.certificate_id),
                          events=orders.events_of(session, found.id), notes=_notes(), revealed=revealed,
                          **_common())


@bp.post("/print")
@console_required(*STAFF_ONLY)
def print_batch() -> Response:
    """Selected paid orders move to printing; their certificates come back as one PDF."""
    ids = [i for i in map(id_value, request.form.getlist("order_id")) if i is not None]
    if not ids:
        return _back(url_for(".index"), "请先选择要打印的订单")
    printing, pdf = shipping.print_batch(get_session(), current_actor(), ids, now(), blobs=get_blob_store())
    if not printing:
        return _back(url_for(".index"), "所选订单都不在待打印状态")
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="paper-batch-{now():%Y%m%d-%H%M}.pdf"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _back_to_order(refusal: Refused, order_id: int) -> Response:
    return _back(url_for(".order", order_id=order_id), refusal.message)


def _back_to_flags(refusal: Refused, **_: Any) -> Response:
    return _back(url_for(".flags"), refusal.message)


def _refund_call(out_trade_no: str, out_refund_no: str, total_fen: int, refund_fen: int, reason: str
                 ) -> Mapping[str, Any]:
    """WeChat Pay's refund, for the refund operations: its refusal becomes a Refused for staff."""
    try:
        return get_wechat_pay(current_app._get_current_object()).refund_order(  # type: ignore[attr-defined]
            out_trade_no=out_trade_no, out_refund_no=out_refund_no, total_fen=total_fen, refund_fen=refund_fen,
            reason=reason)
    except PayError as exc:
        raise Refused("pay_refused", f"微信支付未受理退款：{exc}"[:200]) from exc


@bp.post("/orders/<int:order_id>/ship")
@console_required(*STAFF_ONLY)
@on_refused(_back_to_order)
def ship(order_id: int) -> Response:
    shipping.ship(get_session(), current_actor(), order_id, request.form.get("carrier", ""),
                  request.form.get("tracking_number", ""), now())
    return redirect(url_for(".order", order_id=order_id))


@bp.post("/orders/<int:order_id>/delivered")
@console_required(*STAFF_ONLY)
@on_refused(_back_to_order)
def delivered(order_id: int) -> Response:
    shipping.deliver(get_session(), current_actor(), order_id, now())
    return redirect(url_for(".order", order_id=order_id))


@bp.post("/orders/<int:order_id>/refund")
@console_required(*STAFF_ONLY)
@on_refused(_back_to_order)
def refund(order_id: int) -> Response:
    """Refund through WeChat Pay (the same out_refund_no however often asked), then here."""
    refunds.refund(get_session(), _refund_call, current_actor(), order_id, request.form.get("reason", ""), now())
    return redirect(url_for(".order", order_id=order_id))


@bp.get("/flags")
@console_required(*STAFF_ONLY)
def flags() -> Response:
    return render_console("console/payments/flags.html", flags=payment_flags.open_flags(get_session()),
                          refundable=payment_flags.REFUNDABLE_FLAGS, notes=_notes(), **_common())


@bp.post("/flags/<int:flag_id>/resolve")
@console_required(*STAFF_ONLY)
def resolve_flag(flag_id: int) -> Response:
    payment_flags.resolve(get_session(), current_actor(), flag_id, request.form.get("note", "")[:500], now())
    return redirect(url_for(".flags"))


@bp.post("/flags/<int:flag_id>/refund")
@console_required(*STAFF_ONLY)
@on_refused(_back_to_flags)
def refund_flag(flag_id: int) -> Response:
    """Give back money taken for an order already closed (paid at the last second)."""
    payment_flags.refund(get_session(), _refund_call, current_actor(), flag_id, now())
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
@on_refused(lambda refusal, **_: abort(400, description=refusal.message))
def billing() -> Response:
    """Electronic certificates per school for a period (the school pays); CSV for invoicing."""
    start, end = _period()
    session = get_session()
    if request.args.get("format") == "csv":
        response = Response(payment_billing.export(session, current_actor(), start, end), mimetype="text/csv")
        response.headers["Content-Disposition"] = f'attachment; filename="billing-{start}-{end}.csv"'
        response.headers["Cache-Control"] = "no-store"
        return response
    rows = payment_billing.school_billing(session, start, end)
    return render_console("console/payments/billing.html", rows=rows, start=start, end=end,
                          total=sum(r.count for r in rows))
