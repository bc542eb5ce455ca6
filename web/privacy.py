"""The student's privacy pages: the notice, consent, 我的数据 (a readable record, a copy to download) and 注销."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from flask import session as cookie
from sqlalchemy import func, select

from database import get_session
from handlers.accounts import identity
from handlers.errors import Refused
from handlers.privacy import consent, erase, requests
from handlers.privacy.copy import COLUMN_LABELS, TABLE_LABELS
from handlers.privacy.export import collect, student_of
from models import Certificate, DataRequest, PrivacyNotice
from models.status import DataRequestStatus
from web.auth import csrf_ok, current_user_id, login_required
from web.blobs import download
from web.boundary import on_refused
from web.clock import now
from web.refusals import refused_page

bp = Blueprint("privacy", __name__, url_prefix="/h5", template_folder="templates")

# The signed session remembers the notice version a student's consents were last found complete
# for, so ordinary pages need not ask the database again (a new version asks once more).
CONSENTED = "consented_v"


def _require_csrf() -> None:
    if not csrf_ok():
        abort(400, "页面已过期，请刷新后重试。")


def _safe_next(value: str | None) -> str:
    """Only our own H5 paths: a `next` elsewhere would make this page an open redirect."""
    if value and value.startswith("/h5/") and not value.startswith("//") and "\\" not in value:
        return value
    return url_for("training.home")


# Pages a student reaches whatever their consents: the profile form (it asks itself), their own
# certificate and its files (theirs to keep), and the public verify pages.
UNGATED = frozenset({"training.profile", "certificates.show", "certificates.download", "certificates.verify",
                     "certificates.search"})


def consent_gate() -> Any:
    """Before the training and certificate pages: a student with a profile whose consents do not
    hold for the notice in force is asked again first (GET pages only: a form post or a player's
    call is never redirected under it)."""
    if request.method != "GET" or request.endpoint in UNGATED:
        return None
    user_id = current_user_id()
    if user_id is None:
        return None  # login_required answers
    notice = consent.current_notice()
    if cookie.get(CONSENTED) == notice.version:
        return None
    session = get_session()
    if identity.profile_of(session, user_id) is None:
        return None  # the profile form asks, with the boxes beside it
    if consent.standing(session, user_id, notice).complete:
        cookie[CONSENTED] = notice.version
        return None
    return redirect(url_for("privacy.consent_page", next=request.full_path.rstrip("?")))


@bp.get("/privacy")
def notice_page() -> str:
    """The notice in force; `?v=N` a version someone agreed to (as stored when they did)."""
    version = request.args.get("v", "")
    current = consent.current_notice()
    if version.isdigit() and len(version) < 6 and int(version) != current.version:
        row = get_session().scalar(select(PrivacyNotice).where(PrivacyNotice.version == int(version)))
        if row is None:
            abort(404)
        shown = consent.parse_notice(f"---\nversion: {row.version}\neffective_on: {row.effective_on}\n---\n{row.body}")
        return render_template("h5/privacy_notice.html", notice=shown, current=current)
    return render_template("h5/privacy_notice.html", notice=current, current=current)


def _consent_form(errors: dict[str, str]) -> str:
    session = get_session()
    user_id = current_user_id()
    return render_template("h5/privacy_consent.html", notice=consent.current_notice(), errors=errors,
                           standing=consent.standing(session, user_id),  # type: ignore[arg-type]
                           next=_safe_next(request.values.get("next")), purposes=consent.PURPOSES)


@bp.get("/privacy/consent")
@login_required
def consent_page() -> str:
    return _consent_form({})


@bp.post("/privacy/consent")
@login_required
def give_consent() -> Any:
    _require_csrf()
    errors = consent.check_ticked(request.form.get("agree_notice") == "1", request.form.get("agree_sharing") == "1")
    if errors:
        return _consent_form(errors), 400
    notice = consent.current_notice()
    consent.give(get_session(), current_user_id(), (consent.NOTICE, consent.SCHOOL_SHARING), now(), notice)  # type: ignore[arg-type]
    cookie[CONSENTED] = notice.version
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/my-data/consents/<purpose>/withdraw")
@login_required
@on_refused(refused_page(404))
def withdraw_consent(purpose: str) -> Any:
    _require_csrf()
    consent.withdraw(get_session(), current_user_id(), purpose, now())  # type: ignore[arg-type]
    cookie.pop(CONSENTED, None)
    return redirect(url_for("privacy.my_data", withdrawn=purpose))


@bp.get("/my-data")
@login_required
def my_data() -> str:
    """Everything kept about the student, in their words: a summary per kind of record, each row
    readable, then the copy to download and the way out."""
    session = get_session()
    user_id: int = current_user_id()  # type: ignore[assignment]
    who = student_of(session, user_id)
    assert who is not None
    copy = collect(session, who)
    parts = [(table, TABLE_LABELS.get(table, table), rows) for table, rows in copy.items()]
    return render_template(
        "h5/my_data.html", parts=parts, profile=identity.profile_of(session, user_id),
        standing=consent.standing(session, user_id), purposes=consent.PURPOSES,
        requests=requests.requests_of(session, user_id), status_labels=requests.STATUS_LABELS, kinds=requests.KINDS,
        pending_erasure=requests.pending_erasure(session, user_id), withdrawn=request.args.get("withdrawn"),
        copies_left=requests.COPIES_PER_DAY, column_labels=COLUMN_LABELS)


@bp.post("/my-data/copies")
@login_required
@on_refused(refused_page(429))
def ask_copy() -> Any:
    _require_csrf()
    requests.ask_copy(get_session(), current_user_id(), now())  # type: ignore[arg-type]
    return redirect(url_for("privacy.my_data") + "#copies")


@bp.get("/my-data/copies/<int:request_id>")
@login_required
def fetch_copy(request_id: int) -> Response:
    """The student's own finished copy, through a short-lived link (never a lasting URL)."""
    row = get_session().scalar(select(DataRequest).where(
        DataRequest.id == request_id, DataRequest.user_id == current_user_id(), DataRequest.kind == requests.COPY))
    if row is None or row.status != DataRequestStatus.DONE or not row.blob_key:
        abort(404)
    return download(row.blob_key, "application/zip", requests.copy_file_name(row))


@bp.get("/my-data/copies/<int:request_id>/status")
@login_required
def copy_status(request_id: int) -> Any:
    row = get_session().scalar(select(DataRequest.status).where(
        DataRequest.id == request_id, DataRequest.user_id == current_user_id(), DataRequest.kind == requests.COPY))
    if row is None:
        abort(404)
    return {"status": row}


@bp.get("/erase")
@login_required
def erase_page() -> str:
    session = get_session()
    user_id: int = current_user_id()  # type: ignore[assignment]
    held = None
    try:
        erase.check_can_erase(session, user_id)
    except Refused as refusal:
        held = refusal.message
    certificates = session.scalar(select(func.count()).select_from(Certificate).where(
        Certificate.user_id == user_id)) or 0
    return render_template("h5/erase.html", pending=requests.pending_erasure(session, user_id), held=held,
                           certificates=certificates, cooling_days=requests.COOLING_OFF.days,
                           answer_days=requests.ANSWER_WITHIN.days, error=None)


@bp.post("/erase")
@login_required
@on_refused(refused_page(409))
def ask_erasure() -> Any:
    _require_csrf()
    if request.form.get("confirm") != "1":
        return redirect(url_for("privacy.erase_page", unconfirmed=1))
    requests.ask_erasure(get_session(), current_user_id(), now())  # type: ignore[arg-type]
    return redirect(url_for("privacy.erase_page"))


@bp.post("/erase/cancel")
@login_required
@on_refused(refused_page(409))
def cancel_erasure() -> Any:
    _require_csrf()
    requests.cancel_erasure(get_session(), current_user_id(), now())  # type: ignore[arg-type]
    return redirect(url_for("privacy.erase_page"))


def no_store(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    return response


bp.after_request(no_store)
