"""Staff console: certificates — search, one serial's versions and history, corrections, revocation, notices.

The search list masks student numbers, and its term travels by a handle, never in the URL
(web.console.searches). A serial's page shows its versions whole: correcting what a certificate
prints (a name, a number) is decided by comparing the printed values themselves."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, abort, redirect, request, url_for
from sqlalchemy import select

from database import get_database, get_session
from handlers import china_time
from handlers.certificates import claims, desk
from handlers.certificates import corrections as certificate_corrections
from handlers.errors import Refused
from models import Certificate, CorrectionRequest
from web.blobs import download as blob_download
from web.blobs import get_blob_store
from web.boundary import on_refused
from web.certificates import issuer
from web.clock import now
from web.console import STAFF_ROLES, console_required, current_actor, page_arg, register_nav, render_console, searches

bp = Blueprint("console_certificates", __name__, url_prefix="/console/certificates", template_folder="../templates")

register_nav("证书", "console_certificates.index", STAFF_ROLES, 30)

FIELD_NAMES = {**certificate_corrections.CORRECTABLE, "version": "版本", "certificate_id": "证书记录"}
EVENT_NAMES = {"issued": "签发", "superseded": "被新版本取代", "revoked": "撤销", "channel_changed": "更改证书类型",
               "notice_sent": "已发送通知", "paper_paid": "纸质证书已付款", "paper_refunded": "纸质证书已退款",
               "resigned": "重新签名"}
DONE = {
    "approved": "已批准更正并签发新版本，证书通知已加入发送队列",
    "rejected": "已驳回更正申请",
    "revoked": "证书已撤销",
    "notice": "通知已加入发送队列",
}
CHANNEL_NAMES = {"electronic": "电子版", "paper": "纸质版", "both": "电子版 + 纸质版"}


def local_time(moment: datetime | None) -> str:
    """Times are stored in UTC; staff read Beijing time."""
    return china_time.text(moment)


@bp.context_processor
def _formatting() -> dict[str, object]:
    return {"local_time": local_time}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _page() -> int:
    return page_arg()


def _names() -> dict[str, object]:
    return {"status_names": desk.STATUS_NAMES, "field_names": FIELD_NAMES, "event_names": EVENT_NAMES,
            "channel_names": CHANNEL_NAMES}


@bp.route("/", methods=["GET", "POST"])
@console_required(*STAFF_ROLES)
def index() -> Response:
    if searches.carries_term():
        # The search box posts (a name or a student number); the results answer a GET with its handle.
        return searches.to_handle()
    handle = request.args.get(searches.HANDLE)
    query = searches.term_of(handle)
    with get_database().readers() as session:
        found = desk.search(session, query or "", _page())
        pending = desk.pending_count(session)
        return render_console("console/certificates/index.html", q=query or "", handle=handle if query else None,
                              search_lost=query is None, found=found, pending=pending, **_names())


@bp.get("/serial/<serial>")
@console_required(*STAFF_ROLES)
def show(serial: str) -> Response:
    with get_database().readers() as session:
        history = desk.history(session, serial[:20])
        if history is None:
            abort(404)
        return render_console(
            "console/certificates/show.html", h=history, message=DONE.get(request.args.get("done", "")), **_names()
        )


@bp.get("/file/<int:certificate_id>.pdf")
@console_required(*STAFF_ROLES)
def pdf(certificate_id: int) -> Response:
    with get_database().readers() as session:
        stored = claims.certificate_file(session, certificate_id, "pdf")
        certificate = session.get(Certificate, certificate_id)
        if stored is None or certificate is None:
            abort(404)
        name = f"{certificate.serial}-v{certificate.version}.pdf"
        return blob_download(stored.blob_key, "application/pdf", name, inline=True)


@bp.get("/corrections")
@console_required(*STAFF_ROLES)
def corrections() -> Response:
    status = request.args.get("status", "pending")
    with get_database().readers() as session:
        found = desk.correction_queue(session, status, _page())
        return render_console("console/certificates/corrections.html", found=found, state=status, **_names())


def _back_to(serial: str, done: str) -> Response:
    return redirect(url_for("console_certificates.show", serial=serial, done=done))


def _refusal(serial: str | None, refused: Refused) -> Response:
    """The serial's page again, with the reason the step was refused (200: the page itself is fine)."""
    if serial is None:
        abort(404)
    with get_database().readers() as session:
        history = desk.history(session, serial)
        if history is None:
            abort(404)
        return render_console("console/certificates/show.html", 200, h=history, error=refused.message, **_names())


def _serial_of_request(request_id: int) -> str | None:
    # Columns, not objects: a loaded row would sit stale in the session's identity map when the
    # flow later locks it FOR UPDATE (and another request changed it meanwhile).
    return get_session().scalar(
        select(Certificate.serial)
        .join(CorrectionRequest, CorrectionRequest.certificate_id == Certificate.id)
        .where(CorrectionRequest.id == request_id)
    )


def _serial_of(certificate_id: int) -> str | None:
    return get_session().scalar(select(Certificate.serial).where(Certificate.id == certificate_id))


def _decide_refused(refused: Refused, request_id: int, **_: Any) -> Response:
    return _refusal(_serial_of_request(request_id), refused)


def _certificate_refused(refused: Refused, certificate_id: int, **_: Any) -> Response:
    return _refusal(_serial_of(certificate_id), refused)


@bp.post("/corrections/<int:request_id>/decide")
@console_required(*STAFF_ROLES)
@on_refused(_decide_refused)
def decide(request_id: int) -> Response:
    serial = _serial_of_request(request_id)
    if serial is None:
        abort(404)
    decision = request.form.get("decision")
    if decision not in ("approve", "reject"):
        raise Refused("bad_decision", "请选择批准或驳回。")
    new = desk.decide(get_session(), current_actor(), request_id, approve=decision == "approve",
                      note=request.form.get("note", ""), issuer=issuer(), now=now(), blobs=get_blob_store())
    return _back_to(serial, "approved" if new else "rejected")


@bp.post("/<int:certificate_id>/revoke")
@console_required(*STAFF_ROLES)
@on_refused(_certificate_refused)
def revoke(certificate_id: int) -> Response:
    serial = _serial_of(certificate_id)
    if serial is None:
        abort(404)
    if request.form.get("confirm") != "yes":
        raise Refused("unconfirmed", "请勾选确认后再撤销。")
    desk.revoke(get_session(), current_actor(), certificate_id, request.form.get("reason", ""), now=now())
    return _back_to(serial, "revoked")


@bp.post("/<int:certificate_id>/notice")
@console_required(*STAFF_ROLES)
@on_refused(_certificate_refused)
def notice(certificate_id: int) -> Response:
    serial = _serial_of(certificate_id)
    if serial is None:
        abort(404)
    desk.resend_notice(get_session(), current_actor(), certificate_id)
    return _back_to(serial, "notice")
