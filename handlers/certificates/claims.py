"""Claiming a certificate: idempotent, gapless serials, a signed snapshot, its rendering and its channel."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import date, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import certs
from blobstore import BlobStore
from handlers import notices
from handlers.accounts.identity import profile_of
from handlers.errors import Refused
from handlers.learning import enrolment
from handlers.messages import Handler, Inbound, NewsReply, Reply, TextReply, read_only
from handlers.payments import orders
from models import (
    Certificate,
    CertificateEvent,
    CertificateFile,
    Course,
    CourseVersion,
    Enrollment,
    School,
    SerialCounter,
    User,
)
from models.status import CertificateStatus, PaperStatus, ProfileStatus

CHANNELS = ("electronic", "paper", "both")
ISSUERS = ("中国心理学会心理学标准与服务研究委员会", "高校心理委员研究协作组", "毫末高校心理委员工作平台")


@dataclass(frozen=True)
class Issuer:
    """What issuing needs from the configuration, passed in (handlers read no config)."""

    signing_key: bytes  # Ed25519 seed
    public_url: str  # the verify links are under it
    issuers: tuple[str, ...] = ISSUERS

    def verify_url(self, token: str) -> str:
        return f"{self.public_url.rstrip('/')}/verify/{token}"


def _paper_status(channel: str) -> str | None:
    # Paper costs the student the fee plus postage: it waits for that payment (handlers/payments/orders.py).
    return PaperStatus.AWAITING_PAYMENT if channel in ("paper", "both") else None


def change_channel(session: Session, user_id: int, certificate_id: int, channel: str, issuer: Issuer, *,
                   now: datetime, blobs: BlobStore) -> Certificate:
    """Electronic, paper or both: free to change until the paper copy is paid; after that, staff.
    The kind (paper or electronic) is part of what is signed and printed, so a change that moves
    it signs and renders the certificate again (same serial, version and verify link)."""
    if channel not in CHANNELS:
        raise Refused("bad_channel", "请选择证书类型：电子版、纸质版或两者。")
    certificate = session.scalar(select(Certificate).where(
        Certificate.id == certificate_id, Certificate.user_id == user_id, Certificate.status == CertificateStatus.VALID)
        .with_for_update())
    if certificate is None:
        raise Refused("no_certificate", "证书不存在。")
    if certificate.paper_status not in (None, PaperStatus.AWAITING_PAYMENT):
        raise Refused("paid", "证书费用已支付，如需更改或增加证书类型，请在公众号留言联系工作人员。")
    if certificate.channel != channel and channel == "electronic":
        # An unpaid order for the paper copy closes with it (and at WeChat Pay, by a job).
        orders.close_for_channel_change(session, certificate.id, user_id, now)
    if certificate.channel != channel:
        session.add(CertificateEvent(certificate_id=certificate.id, action="channel_changed",
                                     actor=f"student:{user_id}", details={"from": certificate.channel, "to": channel}))
        kind_before = data_of(certificate).kind
        certificate.channel, certificate.paper_status = channel, _paper_status(channel)
        session.flush()
        if data_of(certificate).kind != kind_before:
            _sign_and_render(session, certificate, issuer.signing_key, blobs)
    return certificate


def _sign_and_render(session: Session, certificate: Certificate, signing_key: bytes, blobs: BlobStore) -> None:
    certificate.signature = certs.sign(payload_of(certificate), signing_key)
    # The old files' blobs stay until the orphan sweep: this transaction may still roll back.
    session.execute(delete(CertificateFile).where(CertificateFile.certificate_id == certificate.id))
    store_rendering(session, certificate, blobs=blobs)


def repair_signatures(session: Session, signing_key: bytes, public_keys: dict[str, bytes], *,
                      blobs: BlobStore) -> list[str]:
    """Certificates whose channel changed before change_channel signed again: their stored
    signature is genuine for the other kind. Sign them again for what they are now (and render
    the current version again); return their serials and versions. A signature that fits
    neither kind is left alone: that one really fails, and staff must look."""
    repaired = []
    for certificate in session.scalars(select(Certificate).order_by(Certificate.id)):
        key = public_keys.get(certs.signature_key_id(certificate.signature) or "")
        if key is None or certs.verify(payload_of(certificate), certificate.signature, key):
            continue
        data = data_of(certificate)
        other = replace(data, kind="electronic" if data.kind == "paper" else "paper")
        if not certs.verify(certs.canonical_payload(other), certificate.signature, key):
            continue
        if certificate.status == CertificateStatus.VALID:
            _sign_and_render(session, certificate, signing_key, blobs)
        else:
            certificate.signature = certs.sign(payload_of(certificate), signing_key)
        session.add(CertificateEvent(certificate_id=certificate.id, action="resigned", actor="system:repair",
                                     details={"kind": data.kind}))
        repaired.append(f"{certificate.serial} v{certificate.version}")
    session.flush()
    return repaired


def allocate_serial(session: Session, year: int) -> str:
    """The next serial of `year`. The counter row stays locked until the caller's transaction
    ends: concurrent issues queue here, and a rollback returns the number (no gaps)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(SerialCounter).values(year=year, last_number=0).on_conflict_do_nothing())
    number = session.execute(
        update(SerialCounter).where(SerialCounter.year == year)
        .values(last_number=SerialCounter.last_number + 1).returning(SerialCounter.last_number)
    ).scalar_one()
    return certs.format_serial(year, number)


def payload_of(certificate: Certificate) -> bytes:
    return certs.canonical_payload(data_of(certificate))


def data_of(certificate: Certificate) -> certs.CertificateData:
    return certs.CertificateData(
        holder_name=certificate.holder_name, school=certificate.school_name,
        student_number=certificate.student_number, course_title=certificate.course_title,
        score=certificate.score, serial=certificate.serial, issued_on=certificate.issued_on,
        verify_url=certificate.verify_url, issuers=tuple(certificate.issuers), version=certificate.version,
        kind="paper" if certificate.channel == "paper" else "electronic",
    )


def live_certificate(session: Session, user_id: int, course_id: int) -> Certificate | None:
    return session.scalar(select(Certificate).where(
        Certificate.user_id == user_id, Certificate.course_id == course_id,
        Certificate.status == CertificateStatus.VALID))


def claim(session: Session, user_id: int, course_code: str, channel: str, issuer: Issuer, today: date, *,
          blobs: BlobStore) -> Certificate:
    """The student's certificate for the course, issued on first claim. Claiming again (a double
    tap, two phones) returns the same certificate; the issue date never changes."""
    if channel not in CHANNELS:
        raise Refused("bad_channel", "请选择证书类型：电子版、纸质版或两者。")
    course = session.scalar(select(Course).where(Course.code == course_code))
    if course is None:
        raise Refused("no_course", "没有这门课程。")
    enrollment = session.scalar(select(Enrollment).where(
        Enrollment.user_id == user_id, Enrollment.course_id == course.id))
    if enrollment is None or enrollment.passed_at is None or enrollment.total_score is None:
        raise Refused("not_passed", "完成全部专题且总分达到 85 分后才能领取证书。")
    existing = live_certificate(session, user_id, course.id)
    if existing is not None:
        return existing
    if session.scalar(select(Certificate.id).where(Certificate.user_id == user_id, Certificate.course_id == course.id,
                                                   Certificate.status == CertificateStatus.REVOKED)
                      .limit(1)) is not None:
        raise Refused("revoked", "你的证书已被撤销，如有疑问请在公众号留言联系工作人员。")
    profile = profile_of(session, user_id)
    if profile is None or profile.status != ProfileStatus.VERIFIED:
        raise Refused("not_verified", "身份认证通过后才能领取证书。")
    school = session.get(School, profile.school_id)
    version = session.scalar(select(CourseVersion).where(
        CourseVersion.course_id == course.id, CourseVersion.number == course.current_version))
    assert school is not None and version is not None
    token = certs.new_verify_token()
    certificate = Certificate(
        user_id=user_id, course_id=course.id, version=1, verify_token=token, status=CertificateStatus.VALID,
        channel=channel, holder_name=profile.real_name, school_name=school.name,
        student_number=profile.student_number,
        course_title=version.title, score=enrollment.total_score, issued_on=today, issuers=list(issuer.issuers),
        verify_url=issuer.verify_url(token), signature="", paper_status=_paper_status(channel),
    )
    try:
        with session.begin_nested():
            certificate.serial = allocate_serial(session, today.year)
            certificate.signature = certs.sign(payload_of(certificate), issuer.signing_key)
            session.add(certificate)
            session.flush()
            session.add(CertificateEvent(certificate_id=certificate.id, action="issued", actor=f"student:{user_id}",
                                         details={"serial": certificate.serial, "channel": channel}))
            store_rendering(session, certificate, blobs=blobs)
            notices.queue_notice(session, certificate.id, "issued")
    except IntegrityError:
        # Another claim of the same student and course won the race: it is the certificate.
        winner = live_certificate(session, user_id, course.id)
        if winner is None:
            raise
        return winner
    return certificate


FILE_TYPES = {"pdf": "application/pdf", "png": "image/png"}


def store_rendering(session: Session, certificate: Certificate, *, blobs: BlobStore) -> None:
    """Render the PDF and the PNG once, at issue, and keep the bytes (~60 ms, ~220 KB) in the blob
    store: written first, so a row never points at nothing; a rollback leaves an orphan for the sweep.
    The key carries the content's hash: a re-render is a new key, never a rewrite a cache would miss."""
    pdf = certs.render_pdf(data_of(certificate))
    png = certs.render_png(pdf)
    for kind, content in (("pdf", pdf), ("png", png)):
        digest = hashlib.sha256(content).hexdigest()
        key = f"certificates/{certificate.id}/{kind}-{digest[:16]}.{kind}"
        blobs.put(key, content, FILE_TYPES[kind])
        session.add(CertificateFile(certificate_id=certificate.id, kind=kind, blob_key=key, size_bytes=len(content),
                                    sha256=digest))
    session.flush()


def certificate_file(session: Session, certificate_id: int, kind: str) -> CertificateFile | None:
    return session.scalar(select(CertificateFile).where(
        CertificateFile.certificate_id == certificate_id, CertificateFile.kind == kind))


def my_certificate_entry(public_url: str) -> Handler:
    """我的 → 显示证书: the certificate's page, the claim page, or what is still missing —
    answered inside WeChat's 5-second window from a few reads."""
    base = public_url.rstrip("/")

    @read_only
    def my_certificate(session: Session, inbound: Inbound) -> Reply:
        user = session.scalar(select(User).where(User.openid == inbound.openid))
        if user is None:
            return TextReply("还没有你的学习记录。请点击「毫末平台」→「心委培训」开始学习。")
        issued = session.scalar(select(Certificate).where(Certificate.user_id == user.id,
                                                          Certificate.status == CertificateStatus.VALID)
                                .order_by(Certificate.issued_at.desc()).limit(1))
        if issued is not None:
            return NewsReply(title="我的证书", description=f"{issued.course_title} · 证书编号 {issued.serial}",
                             url=f"{base}/h5/certificates/{issued.id}")
        enrollments = list(session.scalars(select(Enrollment).where(Enrollment.user_id == user.id)
                                           .order_by(Enrollment.passed_at.desc().nulls_last(), Enrollment.id)))
        passed = next((e for e in enrollments if e.passed_at is not None), None)
        if passed is not None:
            course = session.get(Course, passed.course_id)
            return NewsReply(title="领取证书", description="恭喜通过认证！点击选择证书类型并领取。",
                             url=f"{base}/h5/courses/{course.code}/certificate")  # type: ignore[union-attr]
        if not enrollments:
            return TextReply("还没有开始学习。请点击「毫末平台」→「心委培训」，完善个人信息后按顺序学习各专题。")
        current = enrolment.progress(session, enrollments[0])
        done = sum(1 for t in current.topics if t.state == "done")
        return TextReply(f"你还没有通过认证：{current.version.title} 已完成 {done}/{len(current.topics)} 个专题，"
                         f"当前得分 {current.total} 分（{current.version.pass_mark} 分通过）。完成后即可领取证书。")

    return my_certificate
