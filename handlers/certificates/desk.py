"""The staff certificate desk: search, a serial's versions and history, corrections, revocation, notices; audited."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, or_, select
from sqlalchemy.orm import Session

from blobstore import BlobStore
from handlers import notices
from handlers.audit import Actor, record_audit
from handlers.certificates import claims, corrections
from handlers.errors import Refused
from handlers.outbox import record_job
from models import Certificate, CertificateEvent, CorrectionRequest, School, User
from models.status import CertificateStatus, CorrectionStatus

PAGE_SIZE = 50
SERIAL = re.compile(r"^XW-\d{4}-\d{1,6}$", re.IGNORECASE)
NOTICE_JOB = notices.NOTICE_JOB
STATUS_NAMES = {CertificateStatus.VALID: "有效", CertificateStatus.SUPERSEDED: "已被新版本取代",
                CertificateStatus.REVOKED: "已撤销"}


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    page: int
    has_next: bool


def search(session: Session, query: str, page: int = 1) -> Page:
    """Certificates whose serial or student number is `query`, or whose holder name starts with it.
    Every branch is an index range (serial, student number, name prefix), so it stays fast at any size."""
    page = max(1, page)
    statement = search_statement(session, query)
    if statement is None:
        return Page([], page, False)
    rows = list(session.scalars(statement.limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)))
    return Page(rows[:PAGE_SIZE], page, len(rows) > PAGE_SIZE)


def search_statement(session: Session, query: str) -> Select[tuple[Certificate]] | None:
    query = " ".join(query.split())[:50]
    if not query:
        return None
    if SERIAL.match(query):
        year, number = query.upper().split("-")[1:]
        condition = Certificate.serial == f"XW-{year}-{int(number):06d}"
    else:
        condition = or_(Certificate.student_number == query, _name_prefix(session, query))
    return select(Certificate).where(condition).order_by(Certificate.serial.desc(), Certificate.version.desc())


def _name_prefix(session: Session, prefix: str) -> Any:
    """A holder-name prefix the index can serve: PostgreSQL's LIKE 'p%' uses the pattern-ops index;
    SQLite's LIKE is case-insensitive and skips the index, but a code-point range does not."""
    if session.get_bind().dialect.name == "postgresql":
        return Certificate.holder_name.startswith(prefix, autoescape=True)
    return (Certificate.holder_name >= prefix) & (Certificate.holder_name < prefix + "\U0010ffff")


@dataclass(frozen=True)
class SerialHistory:
    serial: str
    versions: list[Certificate]  # newest first
    events: list[CertificateEvent]  # oldest first, across versions
    requests: list[CorrectionRequest]  # pending first, then newest
    school: School | None

    @property
    def current(self) -> Certificate:
        return self.versions[0]


def history(session: Session, serial: str) -> SerialHistory | None:
    versions = list(session.scalars(select(Certificate).where(Certificate.serial == serial)
                                    .order_by(Certificate.version.desc())))
    if not versions:
        return None
    ids = [v.id for v in versions]
    events = list(session.scalars(select(CertificateEvent).where(CertificateEvent.certificate_id.in_(ids))
                                  .order_by(CertificateEvent.at, CertificateEvent.id)))
    requests = list(session.scalars(select(CorrectionRequest).where(CorrectionRequest.certificate_id.in_(ids))
                                    .order_by(case((CorrectionRequest.status == CorrectionStatus.PENDING, 0), else_=1),
                                              CorrectionRequest.created_at.desc())))
    return SerialHistory(serial, versions, events, requests, _school(session, versions[0].school_name))


def _school(session: Session, name: str) -> School | None:
    return session.scalar(select(School).where(School.name == name))


def _school_id(session: Session, name: str) -> int | None:
    return session.scalar(select(School.id).where(School.name == name))


def correction_queue(session: Session, status: str = CorrectionStatus.PENDING, page: int = 1) -> Page:
    """Correction requests with their certificate: pending first (oldest waiting first), then decided ones."""
    page = max(1, page)
    query = select(CorrectionRequest, Certificate).join(Certificate, Certificate.id == CorrectionRequest.certificate_id)
    if status in (CorrectionStatus.PENDING, CorrectionStatus.APPROVED, CorrectionStatus.REJECTED):
        query = query.where(CorrectionRequest.status == status)
    pending = CorrectionRequest.status == CorrectionStatus.PENDING
    query = query.order_by(case((pending, 0), else_=1), case((pending, CorrectionRequest.created_at), else_=None),
                           CorrectionRequest.decided_at.desc(), CorrectionRequest.id.desc())
    rows = list(session.execute(query.limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)).all())
    return Page(rows[:PAGE_SIZE], page, len(rows) > PAGE_SIZE)


def pending_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(CorrectionRequest)
                          .where(CorrectionRequest.status == CorrectionStatus.PENDING)) or 0


def decide(session: Session, actor: Actor, request_id: int, *, approve: bool, note: str | None,
           issuer: claims.Issuer, now: datetime, blobs: BlobStore) -> Certificate | None:
    """Approve (a new version, and the student is told) or reject (the reason is kept) — audited
    in the same transaction."""
    note = (note or "").strip()[:500] or None
    # Lock the request first and read it fresh: a second decider waits here, then sees it decided.
    # (An unlocked read before decide_correction's own FOR UPDATE would leave a stale "pending" in
    # this session's identity map, and both would issue version n+1.)
    request = session.scalar(select(CorrectionRequest).where(CorrectionRequest.id == request_id)
                             .with_for_update().execution_options(populate_existing=True))
    if request is None:
        raise Refused("not_found", "更正申请不存在。")
    new = corrections.decide_correction(session, request_id, actor.name, approve=approve, note=note, issuer=issuer,
                                        now=now, blobs=blobs)
    # The old version's printed fields never change (only its status does), so they are read afterwards.
    old = session.get(Certificate, request.certificate_id)
    assert old is not None
    before = {key: getattr(old, key) for key in request.changes}
    school_id = _school_id(session, old.school_name)
    if new is None:
        record_audit(session, actor, "certificate.correction_reject", "correction_request", request_id,
                     school_id=school_id, before={"status": CorrectionStatus.PENDING},
                     after={"status": CorrectionStatus.REJECTED}, note=note)
        return None
    record_audit(session, actor, "certificate.correction_approve", "correction_request", request_id,
                 school_id=school_id, before={**before, "version": old.version, "certificate_id": old.id},
                 after={**request.changes, "version": new.version, "certificate_id": new.id}, note=note)
    _queue_notice(session, new, dedup_key=f"certificate-notice:{new.id}")
    return new


def revoke(session: Session, actor: Actor, certificate_id: int, reason: str, *, now: datetime) -> Certificate:
    certificate = corrections.revoke(session, certificate_id, actor.name, reason, now=now)
    record_audit(session, actor, "certificate.revoke", "certificate", certificate.id,
                 school_id=_school_id(session, certificate.school_name),
                 before={"status": CertificateStatus.VALID, "serial": certificate.serial,
                         "version": certificate.version},
                 after={"status": CertificateStatus.REVOKED}, note=certificate.revoke_reason)
    return certificate


def resend_notice(session: Session, actor: Actor, certificate_id: int) -> None:
    """Queue the template message that tells the student about their certificate, again."""
    certificate = session.get(Certificate, certificate_id)
    if certificate is None:
        raise Refused("not_found", "证书不存在。")
    if certificate.status == CertificateStatus.SUPERSEDED:
        raise Refused("superseded", "这是旧版本，请对最新版本重发通知。")
    _queue_notice(session, certificate)
    record_audit(session, actor, "certificate.notice", "certificate", certificate.id,
                 school_id=_school_id(session, certificate.school_name),
                 after={"serial": certificate.serial, "version": certificate.version, "status": certificate.status})


def _queue_notice(session: Session, certificate: Certificate, dedup_key: str | None = None) -> None:
    # The client_msg_id rides in the payload, so a retried job is the same message to WeChat.
    record_job(session, NOTICE_JOB, {"certificate_id": certificate.id, "client_msg_id": secrets.token_hex(12)},
               dedup_key=dedup_key)


def notice_message(session: Session, certificate_id: int, template_id: str, public_url: str,
                   client_msg_id: str, reason: str | None = None) -> dict[str, Any] | None:
    """The template message body for a certificate's notice (None: nobody to tell)."""
    certificate = session.get(Certificate, certificate_id)
    if certificate is None:
        return None
    user = session.get(User, certificate.user_id)
    if user is None or not user.openid:
        return None
    if certificate.status == CertificateStatus.REVOKED:
        first = "你的证书已被撤销。如有疑问，请在公众号留言联系工作人员。"
    elif reason == "paid":
        first = "纸质证书费用已支付成功，我们会尽快打印并寄到你的学校。"
    elif certificate.version > 1:
        first = f"你的证书已更新为第 {certificate.version} 版，请查看最新证书。"
    else:
        first = "你的证书已签发，可查看、下载或保存。"
    return {
        "touser": user.openid, "template_id": template_id, "client_msg_id": client_msg_id,
        "url": f"{public_url.rstrip('/')}/h5/certificates/{certificate.id}",
        "data": {
            "first": {"value": first},
            "keyword1": {"value": certificate.course_title},
            "keyword2": {"value": certificate.serial},
            "keyword3": {"value": STATUS_NAMES.get(certificate.status, certificate.status)},
            "remark": {"value": "证书信息有误可在证书页面申请更正。"},
        },
    }


def record_notice_sent(session: Session, certificate_id: int, msgid: Any) -> None:
    session.add(CertificateEvent(certificate_id=certificate_id, action="notice_sent", actor="system",
                                 details={"msgid": msgid}))
    session.flush()
