"""Certificate pages: the student's claim and certificate (PNG, PDF), and the public verify page."""
from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from sqlalchemy import select

import certs
from config import paper_prices
from database import get_database, get_session
from handlers import china_time, ratelimit
from handlers.certificates import claims, corrections
from handlers.certificates import verify as certificate_verify
from handlers.errors import Refused
from handlers.payments import orders as payment_orders
from models import Certificate, CorrectionRequest, Course, StudentProfile
from web.auth import csrf_ok, current_user_id, login_required
from web.blobs import download as blob_download
from web.blobs import get_blob_store
from web.boundary import on_refused
from web.clock import now
from web.refusals import refusal_page, refused_page

bp = Blueprint("certificates", __name__, template_folder="templates")

CHANNEL_LABELS = {
    "electronic": "电子版（学校支付）",
    "paper": "纸质版（20 元 + 邮费，寄到学校）",
    "both": "电子版 + 纸质版",
}


def issuer() -> claims.Issuer:
    return claims.Issuer(signing_key=base64.b64decode(current_app.config["CERT_SIGNING_KEY"]),
                               public_url=current_app.config["PUBLIC_URL"])


def public_keys() -> dict[str, bytes]:
    key = certs.public_key(base64.b64decode(current_app.config["CERT_SIGNING_KEY"]))
    return {certs.key_id(key): key}


def _own(certificate_id: int) -> Certificate:
    certificate = get_session().scalar(select(Certificate).where(
        Certificate.id == certificate_id, Certificate.user_id == current_user_id()))
    if certificate is None:
        abort(404)  # another student's certificate does not exist, as far as this one knows
    return certificate


@bp.route("/h5/courses/<code>/certificate", methods=["GET", "POST"])
@login_required
@on_refused(refused_page(403))
def claim(code: str) -> Any:
    """Choose the channel and claim. Claiming twice gives the same certificate."""
    session = get_session()
    course = session.scalar(select(Course).where(Course.code == code))
    if course is None:
        abort(404)
    existing = claims.live_certificate(session, current_user_id(), course.id)  # type: ignore[arg-type]
    if existing is not None:
        return redirect(url_for("certificates.show", certificate_id=existing.id))
    if request.method == "POST":
        if not csrf_ok():
            abort(400, "页面已过期，请刷新后重试。")
        certificate = claims.claim(session, current_user_id(), code, request.form.get("channel", ""),  # type: ignore[arg-type]
                                   issuer(), china_time.today(now()), blobs=get_blob_store())
        return redirect(url_for("certificates.show", certificate_id=certificate.id))
    return render_template("h5/certificate_claim.html", code=code, choices=_claim_choices(code))


def _claim_choices(course_code: str) -> list[tuple[str, str, str]]:
    """(channel, name, what it costs the student), with the price written out for each choice
    before anything is chosen: paper is the fee plus postage, mailed to the school."""
    fee, postage = payment_orders.price_for(paper_prices(current_app.config), course_code)
    paper = (f"证书费 ¥{payment_orders.yuan(fee)} + 邮费 ¥{payment_orders.yuan(postage)}，"
             f"共 ¥{payment_orders.yuan(fee + postage)}，寄到学校")
    return [("electronic", "电子版", "学校已支付，本人免费"),
            ("paper", "纸质版", paper),
            ("both", "电子版 + 纸质版", f"电子版免费；纸质版{paper}")]


@bp.get("/h5/certificates/<int:certificate_id>")
@login_required
def show(certificate_id: int) -> str:
    certificate = _own(certificate_id)
    pending = get_session().scalar(select(CorrectionRequest).where(
        CorrectionRequest.certificate_id == certificate.id).order_by(CorrectionRequest.id.desc()).limit(1))
    newest = None
    if certificate.status == "superseded":
        newest = get_session().scalar(select(Certificate).where(
            Certificate.serial == certificate.serial, Certificate.user_id == certificate.user_id)
            .order_by(Certificate.version.desc()).limit(1))
    return render_template("h5/certificate.html", certificate=certificate, labels=CHANNEL_LABELS, latest=pending,
                           newest=newest, **_paper(certificate))


def _paper(certificate: Certificate) -> dict[str, Any]:
    """The paper copy's price and latest order, for the certificate page."""
    session = get_session()
    course = session.get(Course, certificate.course_id)
    fee, postage = payment_orders.price_for(paper_prices(current_app.config), course.code if course else "*")
    orders = payment_orders.orders_of(session, certificate.user_id, certificate.id)
    # The courier's phone: the last one given at an order, else one an older profile holds.
    phone = next((o.recipient_phone for o in orders if o.recipient_phone), None) or session.scalar(
        select(StudentProfile.phone).where(StudentProfile.user_id == certificate.user_id))
    return {"profile_phone": phone, "paper_price": payment_orders.yuan(fee + postage),
            "paper_fee": payment_orders.yuan(fee),
            "paper_postage": payment_orders.yuan(postage), "paper_order": orders[0] if orders else None,
            "order_labels": payment_orders.STATUS_LABELS}


@bp.get("/h5/certificates/<int:certificate_id>.<kind>")
@login_required
def download(certificate_id: int, kind: str) -> Any:
    if kind not in ("pdf", "png"):
        abort(404)
    certificate = _own(certificate_id)
    if certificate.status == "revoked":
        # A revoked certificate is not handed out again as if it were valid.
        revoked = Refused("revoked", "该证书已被撤销，不能再下载。如有疑问，请在公众号留言联系工作人员。")
        return refusal_page(revoked, 410)
    stored = claims.certificate_file(get_session(), certificate.id, kind)
    if stored is None:
        abort(404)
    # A short-lived link to the stored file: the PDF saved under its serial, the PNG shown in the page.
    name = f"{certificate.serial}.pdf" if kind == "pdf" else None
    return blob_download(stored.blob_key, claims.FILE_TYPES[kind], name)


@bp.post("/h5/certificates/<int:certificate_id>/channel")
@login_required
@on_refused(refused_page(409))
def channel(certificate_id: int) -> Any:
    if not csrf_ok():
        abort(400, "页面已过期，请刷新后重试。")
    claims.change_channel(get_session(), current_user_id(), certificate_id,  # type: ignore[arg-type]
                          request.form.get("channel", ""), issuer(), now=now(), blobs=get_blob_store())
    return redirect(url_for("certificates.show", certificate_id=certificate_id))


def _correction_refused(refusal: Refused, certificate_id: int) -> tuple[str, int]:
    """The certificate page again, with the reason beside the correction form."""
    certificate = _own(certificate_id)
    return render_template("h5/certificate.html", certificate=certificate, labels=CHANNEL_LABELS,
                           correction_error=refusal.message, **_paper(certificate)), 400


@bp.post("/h5/certificates/<int:certificate_id>/correction")
@login_required
@on_refused(_correction_refused)
def correction(certificate_id: int) -> Any:
    """The student asks staff to fix a printed field; staff decide in their console."""
    if not csrf_ok():
        abort(400, "页面已过期，请刷新后重试。")
    certificate = _own(certificate_id)
    changes = {key: request.form.get(key, "") for key in corrections.CORRECTABLE}
    corrections.request_correction(get_session(), current_user_id(), certificate.id,  # type: ignore[arg-type]
                                   changes, request.form.get("reason", ""))
    return redirect(url_for("certificates.show", certificate_id=certificate.id, asked=1))


@bp.get("/verify/<token>")
def verify(token: str) -> tuple[str, int]:
    """Public: is this certificate genuine? Masked name and number; never the phone."""
    if len(token) > 64:
        abort(404)
    with get_database().readers() as session:
        seen = certificate_verify.verify(session, token, public_keys())
        page = render_template("h5/verify.html", seen=seen)
    return page, 200 if seen is not None else 404


# Public look-ups by serial, per client address: enough for a person checking a few
# certificates, far too few to walk the serials.
SEARCH_LIMIT = 10
SEARCH_WINDOW = timedelta(minutes=10)


@bp.get("/verify")
def search() -> Any:
    """Public search by serial *and* the holder's full name (either alone finds nothing, so the
    serials cannot be walked), limited per address; leads to the matching version's page."""
    serial = request.args.get("serial", "").strip().upper()
    name = " ".join(request.args.get("name", "").split())
    if not serial and not name:
        return render_template("h5/verify.html", seen=None, searched=None)
    try:
        certs.parse_serial(serial)
    except ValueError:
        return render_template("h5/verify.html", seen=None, searched=serial[:40]), 404
    session = get_session()
    if not ratelimit.allow(session, "verify_search", ratelimit.key_of(request.remote_addr), now(),
                           SEARCH_LIMIT, SEARCH_WINDOW):
        session.rollback()  # a refused look-up is not counted again
        return render_template("h5/verify.html", seen=None, searched=serial, limited=True), 429
    # The look-up counts even when it finds nothing: the boundary commits with the 404 too.
    token = session.scalar(select(Certificate.verify_token).where(
        Certificate.serial == serial, Certificate.holder_name == name)
        .order_by(Certificate.version.desc()).limit(1)) if name else None
    if token is None:
        return render_template("h5/verify.html", seen=None, searched=serial), 404
    return redirect(url_for("certificates.verify", token=token))
