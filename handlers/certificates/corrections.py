"""Corrections (a student asks, staff approve with a new version or reject) and revocation of a certificate."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

import certs
from blobstore import BlobStore
from handlers.accounts import identity
from handlers.accounts.identity import profile_of
from handlers.certificates.claims import Issuer, payload_of, store_rendering
from handlers.errors import Refused
from handlers.payments import orders
from models import (
    Certificate,
    CertificateEvent,
    CorrectionRequest,
    School,
    StudentProfile,
)
from models.status import CertificateStatus, CorrectionStatus, ProfileStatus

CORRECTABLE = {"holder_name": "姓名", "student_number": "学号", "school_name": "学校"}


def request_correction(session: Session, user_id: int, certificate_id: int, changes: dict[str, str],
                       reason: str) -> CorrectionRequest:
    """A student asks staff to fix printed fields. Only their own live certificate, only
    printed fields, one open request at a time."""
    certificate = session.scalar(select(Certificate).where(
        Certificate.id == certificate_id, Certificate.user_id == user_id,
        Certificate.status == CertificateStatus.VALID))
    if certificate is None:
        raise Refused("no_certificate", "证书不存在。")
    asked = {k: str(v) for k, v in changes.items() if str(v).strip()}
    if not asked or any(k not in CORRECTABLE for k in asked):
        raise Refused("bad_changes", "请填写需要更正的内容（姓名、学号或学校）。")
    # The same rules as the profile: what staff approve is exactly what will be printed.
    clean = {k: _clean_printed(session, k, v) for k, v in asked.items()}
    clean = {k: v for k, v in clean.items() if v != getattr(certificate, k)}
    if not clean:
        raise Refused("bad_changes", "填写的内容与证书上的相同，无需更正。")
    if not reason.strip():
        raise Refused("bad_changes", "请填写更正原因。")
    pending = session.scalar(select(CorrectionRequest).where(
        CorrectionRequest.certificate_id == certificate.id, CorrectionRequest.status == CorrectionStatus.PENDING))
    if pending is not None:
        raise Refused("pending", "你已有一条更正申请在处理中，请耐心等待。")
    request = CorrectionRequest(certificate_id=certificate.id, user_id=user_id, changes=clean,
                                reason=reason.strip()[:500], status=CorrectionStatus.PENDING)
    session.add(request)
    session.flush()
    return request


def _clean_printed(session: Session, field: str, value: str) -> str:
    if field == "holder_name":
        name = identity.clean_name(value)
        if not identity.NAME.match(name):
            raise Refused("bad_changes", "姓名须为 2–30 个汉字或字母（可含 · 和空格）。")
        return name
    if field == "student_number":
        number = identity.clean_number(value)
        if not identity.STUDENT_NUMBER.match(number):
            raise Refused("bad_changes", "学号须为 3–32 位字母、数字或 -。")
        return number
    school = identity.clean(value)
    if session.scalar(select(School.id).where(School.name == school)) is None:
        raise Refused("bad_changes", "请填写平台上学校的全称（与学校列表中的名称一致）。")
    return school


def decide_correction(session: Session, request_id: int, staff: str, *, approve: bool, note: str | None,
                      issuer: Issuer, now: datetime, blobs: BlobStore) -> Certificate | None:
    """Staff decide. Approval issues version n+1 (new token, new signature, rendered and
    stored) and marks version n superseded; its token keeps resolving and says so."""
    if not approve and (not note or not note.strip()):
        raise Refused("no_reason", "请填写驳回原因，学生会看到它。")
    request = session.scalar(select(CorrectionRequest).where(CorrectionRequest.id == request_id)
                             .with_for_update())
    if request is None or request.status != CorrectionStatus.PENDING:
        raise Refused("not_pending", "该申请已处理。")
    request.status = CorrectionStatus.APPROVED if approve else CorrectionStatus.REJECTED
    request.decided_by, request.decision_note, request.decided_at = staff[:100], note, now
    if not approve:
        session.flush()
        return None
    old = session.scalar(select(Certificate).where(Certificate.id == request.certificate_id).with_for_update())
    if old is None or old.status != CertificateStatus.VALID:
        raise Refused("not_valid", "证书已不是有效状态。")
    old.status = CertificateStatus.SUPERSEDED
    session.flush()  # frees the one-live-certificate slot for the new version
    token = certs.new_verify_token()
    new = Certificate(
        user_id=old.user_id, course_id=old.course_id, serial=old.serial, version=old.version + 1,
        supersedes_id=old.id, verify_token=token, status=CertificateStatus.VALID, channel=old.channel,
        paper_status=old.paper_status, holder_name=old.holder_name, school_name=old.school_name,
        student_number=old.student_number,
        course_title=old.course_title, score=old.score, issued_on=old.issued_on, issuers=list(old.issuers),
        verify_url=issuer.verify_url(token), signature="",
    )
    for key, value in request.changes.items():
        setattr(new, key, value)
    new.signature = certs.sign(payload_of(new), issuer.signing_key)
    session.add(new)
    session.flush()
    orders.follow_correction(session, old.id, new.id, f"staff:{staff}", now,
                               holder_name=request.changes.get("holder_name"))
    _profile_follows(session, new, request.changes)
    before = {k: getattr(old, k) for k in request.changes}
    session.add_all([
        CertificateEvent(certificate_id=old.id, action="superseded", actor=f"staff:{staff}", reason=request.reason,
                         details={"by": new.id, "before": before, "after": request.changes}),
        CertificateEvent(certificate_id=new.id, action="issued", actor=f"staff:{staff}", reason=request.reason,
                         details={"supersedes": old.id, "correction_request": request.id}),
    ])
    store_rendering(session, new, blobs=blobs)
    return new


def _profile_follows(session: Session, certificate: Certificate, changes: dict[str, str]) -> None:
    """An approved correction of the name or student number is the student's identity as staff
    confirmed it: the profile (个人信息, and what the next certificate prints) takes it too. A
    number another student already holds at the school stays for staff to settle."""
    profile = profile_of(session, certificate.user_id)
    if profile is None:
        return
    if "holder_name" in changes:
        profile.real_name = changes["holder_name"]
    number = changes.get("student_number")
    if number and number != profile.student_number:
        taken = session.scalar(select(StudentProfile.id).where(
            StudentProfile.school_id == profile.school_id, StudentProfile.student_number == number,
            StudentProfile.id != profile.id,
            StudentProfile.status.in_((ProfileStatus.PENDING, ProfileStatus.VERIFIED))))
        if taken is None:
            profile.student_number = number
    session.flush()


def revoke(session: Session, certificate_id: int, staff: str, reason: str, *, now: datetime) -> Certificate:
    """Staff revoke a certificate with a reason. Nothing is deleted; the verify page says so."""
    if not reason or not reason.strip():
        raise Refused("no_reason", "请填写撤销原因。")
    certificate = session.scalar(select(Certificate).where(Certificate.id == certificate_id).with_for_update())
    if certificate is None or certificate.status != CertificateStatus.VALID:
        raise Refused("not_valid", "只能撤销有效的证书。")
    certificate.status, certificate.revoked_at = CertificateStatus.REVOKED, now
    certificate.revoke_reason = reason.strip()[:500]
    orders.close_for_revocation(session, certificate.id, f"staff:{staff}", now)
    session.add(CertificateEvent(certificate_id=certificate.id, action="revoked", actor=f"staff:{staff}",
                                 reason=certificate.revoke_reason))
    session.flush()
    return certificate
