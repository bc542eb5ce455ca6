"""Certificates: claiming one (idempotent, gapless serials, signed snapshot) and verifying it."""
from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import certs
from handlers import certificate_notices, identity, learning
from handlers.identity import profile_of
from handlers.learning import Refused
from handlers.messages import Handler, Inbound, NewsReply, Reply, TextReply, read_only
from handlers.outbox import record_job
from models import (
    Certificate,
    CertificateEvent,
    CertificateExport,
    CertificateFile,
    CorrectionRequest,
    Course,
    CourseVersion,
    Enrollment,
    School,
    SerialCounter,
    StudentProfile,
    User,
)
from models.base import utcnow

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
    # Paper costs the student the fee plus postage: it waits for that payment (handlers/payments.py).
    return "awaiting_payment" if channel in ("paper", "both") else None


def change_channel(session: Session, user_id: int, certificate_id: int, channel: str, issuer: Issuer) -> Certificate:
    """Electronic, paper or both: free to change until the paper copy is paid; after that, staff.
    The kind (paper or electronic) is part of what is signed and printed, so a change that moves
    it signs and renders the certificate again (same serial, version and verify link)."""
    if channel not in CHANNELS:
        raise Refused("bad_channel", "请选择证书类型：电子版、纸质版或两者。")
    certificate = session.scalar(select(Certificate).where(
        Certificate.id == certificate_id, Certificate.user_id == user_id, Certificate.status == "valid")
        .with_for_update())
    if certificate is None:
        raise Refused("no_certificate", "证书不存在。")
    if certificate.paper_status not in (None, "awaiting_payment"):
        raise Refused("paid", "证书费用已支付，如需更改或增加证书类型，请在公众号留言联系工作人员。")
    if certificate.channel != channel and channel == "electronic":
        # An unpaid order for the paper copy closes with it (and at WeChat Pay, by a job).
        from handlers import payments  # payments builds on certificates, not the other way round

        payments.close_for_channel_change(session, certificate.id, user_id, utcnow())
    if certificate.channel != channel:
        session.add(CertificateEvent(certificate_id=certificate.id, action="channel_changed",
                                     actor=f"student:{user_id}", details={"from": certificate.channel, "to": channel}))
        kind_before = data_of(certificate).kind
        certificate.channel, certificate.paper_status = channel, _paper_status(channel)
        session.flush()
        if data_of(certificate).kind != kind_before:
            _sign_and_render(session, certificate, issuer.signing_key)
    return certificate


def _sign_and_render(session: Session, certificate: Certificate, signing_key: bytes) -> None:
    certificate.signature = certs.sign(payload_of(certificate), signing_key)
    session.execute(delete(CertificateFile).where(CertificateFile.certificate_id == certificate.id))
    store_rendering(session, certificate)


def repair_signatures(session: Session, signing_key: bytes, public_keys: dict[str, bytes]) -> list[str]:
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
        if certificate.status == "valid":
            _sign_and_render(session, certificate, signing_key)
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
        Certificate.user_id == user_id, Certificate.course_id == course_id, Certificate.status == "valid"))


def claim(session: Session, user_id: int, course_code: str, channel: str, issuer: Issuer, today: date) -> Certificate:
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
                                                   Certificate.status == "revoked").limit(1)) is not None:
        raise Refused("revoked", "你的证书已被撤销，如有疑问请在公众号留言联系工作人员。")
    profile = profile_of(session, user_id)
    if profile is None or profile.status != "verified":
        raise Refused("not_verified", "身份认证通过后才能领取证书。")
    school = session.get(School, profile.school_id)
    version = session.scalar(select(CourseVersion).where(
        CourseVersion.course_id == course.id, CourseVersion.number == course.current_version))
    assert school is not None and version is not None
    token = certs.new_verify_token()
    certificate = Certificate(
        user_id=user_id, course_id=course.id, version=1, verify_token=token, status="valid", channel=channel,
        holder_name=profile.real_name, school_name=school.name, student_number=profile.student_number,
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
            store_rendering(session, certificate)
            certificate_notices.queue_notice(session, certificate.id, "issued")
    except IntegrityError:
        # Another claim of the same student and course won the race: it is the certificate.
        winner = live_certificate(session, user_id, course.id)
        if winner is None:
            raise
        return winner
    return certificate


def store_rendering(session: Session, certificate: Certificate) -> None:
    """Render the PDF and the PNG once, at issue, and keep the bytes (~60 ms, ~220 KB)."""
    pdf = certs.render_pdf(data_of(certificate))
    png = certs.render_png(pdf)
    for kind, content in (("pdf", pdf), ("png", png)):
        session.add(CertificateFile(certificate_id=certificate.id, kind=kind, content=content,
                                    sha256=hashlib.sha256(content).hexdigest()))
    session.flush()


def certificate_file(session: Session, certificate_id: int, kind: str) -> CertificateFile | None:
    return session.scalar(select(CertificateFile).where(
        CertificateFile.certificate_id == certificate_id, CertificateFile.kind == kind))


@dataclass(frozen=True)
class Verification:
    certificate: Certificate
    status: str  # valid, superseded, revoked: the row's own
    signature_ok: bool
    masked_name: str
    masked_number: str
    newest_token: str | None  # where a superseded version points
    newest_status: str | None = None  # the serial's newest version's status, for a superseded one

    @property
    def verdict(self) -> str:
        """What the public page says: invalid (the signature really fails: the only red
        "forgery" verdict), valid, corrected (a genuine earlier version: the newest one
        counts), or revoked (this version, or the serial's newest, was revoked)."""
        if not self.signature_ok:
            return "invalid"
        if self.status == "valid":
            return "valid"
        if self.status == "superseded" and self.newest_status != "revoked":
            return "corrected"
        return "revoked"


def mask_name(name: str) -> str:
    """张三 → 张*, 林小满 → 林*满, Latin names keep their first letter."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_number(number: str) -> str:
    """2024018 → 20***18: enough to recognise, not enough to reuse."""
    if len(number) <= 4:
        return "*" * len(number)
    return number[:2] + "*" * (len(number) - 4) + number[-2:]


def verify(session: Session, token: str, public_keys: dict[str, bytes]) -> Verification | None:
    """What the public verify page shows for a token; None when no certificate has it."""
    certificate = session.scalar(select(Certificate).where(Certificate.verify_token == token))
    if certificate is None:
        return None
    key = public_keys.get(certs.signature_key_id(certificate.signature) or "")
    signature_ok = key is not None and certs.verify(payload_of(certificate), certificate.signature, key)
    newest = newest_status = None
    if certificate.status == "superseded":
        row = session.execute(select(Certificate.verify_token, Certificate.status).where(
            Certificate.serial == certificate.serial, Certificate.version > certificate.version)
            .order_by(Certificate.version.desc()).limit(1)).first()
        if row is not None:
            newest, newest_status = row
    return Verification(certificate, certificate.status, signature_ok, mask_name(certificate.holder_name),
                        mask_number(certificate.student_number), newest, newest_status)


CORRECTABLE = {"holder_name": "姓名", "student_number": "学号", "school_name": "学校"}


def request_correction(session: Session, user_id: int, certificate_id: int, changes: dict[str, str],
                       reason: str) -> CorrectionRequest:
    """A student asks staff to fix printed fields. Only their own live certificate, only
    printed fields, one open request at a time."""
    certificate = session.scalar(select(Certificate).where(
        Certificate.id == certificate_id, Certificate.user_id == user_id, Certificate.status == "valid"))
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
        CorrectionRequest.certificate_id == certificate.id, CorrectionRequest.status == "pending"))
    if pending is not None:
        raise Refused("pending", "你已有一条更正申请在处理中，请耐心等待。")
    request = CorrectionRequest(certificate_id=certificate.id, user_id=user_id, changes=clean,
                                reason=reason.strip()[:500], status="pending")
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
                      issuer: Issuer) -> Certificate | None:
    """Staff decide. Approval issues version n+1 (new token, new signature, rendered and
    stored) and marks version n superseded; its token keeps resolving and says so."""
    if not approve and (not note or not note.strip()):
        raise Refused("no_reason", "请填写驳回原因，学生会看到它。")
    request = session.scalar(select(CorrectionRequest).where(CorrectionRequest.id == request_id)
                             .with_for_update())
    if request is None or request.status != "pending":
        raise Refused("not_pending", "该申请已处理。")
    request.status = "approved" if approve else "rejected"
    request.decided_by, request.decision_note, request.decided_at = staff[:100], note, utcnow()
    if not approve:
        session.flush()
        return None
    old = session.scalar(select(Certificate).where(Certificate.id == request.certificate_id).with_for_update())
    if old is None or old.status != "valid":
        raise Refused("not_valid", "证书已不是有效状态。")
    old.status = "superseded"
    session.flush()  # frees the one-live-certificate slot for the new version
    token = certs.new_verify_token()
    new = Certificate(
        user_id=old.user_id, course_id=old.course_id, serial=old.serial, version=old.version + 1,
        supersedes_id=old.id, verify_token=token, status="valid", channel=old.channel, paper_status=old.paper_status,
        holder_name=old.holder_name, school_name=old.school_name, student_number=old.student_number,
        course_title=old.course_title, score=old.score, issued_on=old.issued_on, issuers=list(old.issuers),
        verify_url=issuer.verify_url(token), signature="",
    )
    for key, value in request.changes.items():
        setattr(new, key, value)
    new.signature = certs.sign(payload_of(new), issuer.signing_key)
    session.add(new)
    session.flush()
    from handlers import payments  # payments builds on certificates, not the other way round

    payments.follow_correction(session, old.id, new.id, f"staff:{staff}", utcnow(),
                               holder_name=request.changes.get("holder_name"))
    _profile_follows(session, new, request.changes)
    before = {k: getattr(old, k) for k in request.changes}
    session.add_all([
        CertificateEvent(certificate_id=old.id, action="superseded", actor=f"staff:{staff}", reason=request.reason,
                         details={"by": new.id, "before": before, "after": request.changes}),
        CertificateEvent(certificate_id=new.id, action="issued", actor=f"staff:{staff}", reason=request.reason,
                         details={"supersedes": old.id, "correction_request": request.id}),
    ])
    store_rendering(session, new)
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
            StudentProfile.id != profile.id, StudentProfile.status.in_(("pending", "verified"))))
        if taken is None:
            profile.student_number = number
    session.flush()


def revoke(session: Session, certificate_id: int, staff: str, reason: str) -> Certificate:
    """Staff revoke a certificate with a reason. Nothing is deleted; the verify page says so."""
    if not reason or not reason.strip():
        raise Refused("no_reason", "请填写撤销原因。")
    certificate = session.scalar(select(Certificate).where(Certificate.id == certificate_id).with_for_update())
    if certificate is None or certificate.status != "valid":
        raise Refused("not_valid", "只能撤销有效的证书。")
    certificate.status, certificate.revoked_at, certificate.revoke_reason = "revoked", utcnow(), reason.strip()[:500]
    from handlers import payments  # payments builds on certificates, not the other way round

    payments.close_for_revocation(session, certificate.id, f"staff:{staff}", utcnow())
    session.add(CertificateEvent(certificate_id=certificate.id, action="revoked", actor=f"staff:{staff}",
                                 reason=certificate.revoke_reason))
    session.flush()
    return certificate


EXPORT_JOB = "certificates.export"


def request_export(session: Session, requested_by: str, *, school_id: int | None, issued_from: date | None,
                   issued_until: date | None) -> CertificateExport:
    """Record an export of valid certificates (one school or all, a period or all time); a job builds it."""
    export = CertificateExport(requested_by=requested_by[:100], school_id=school_id, issued_from=issued_from,
                               issued_until=issued_until, status="pending")
    session.add(export)
    session.flush()
    record_job(session, EXPORT_JOB, {"export_id": export.id})
    return export


def export_query(export: CertificateExport):  # type: ignore[no-untyped-def]
    """The certificates an export contains, in serial order."""
    query = select(Certificate.id, Certificate.serial, Certificate.version, Certificate.holder_name).where(
        Certificate.status == "valid")
    if export.school_id is not None:
        school_name = select(School.name).where(School.id == export.school_id).scalar_subquery()
        query = query.where(Certificate.school_name == school_name)
    if export.issued_from is not None:
        query = query.where(Certificate.issued_on >= export.issued_from)
    if export.issued_until is not None:
        query = query.where(Certificate.issued_on <= export.issued_until)
    return query.order_by(Certificate.serial, Certificate.version)


def build_export(
    session: Session, export_id: int, directory: Path, progress: Callable[[int, int], None]
) -> CertificateExport:
    """Write the export's zip: each stored PDF, one at a time (memory stays flat however many),
    into a temporary file renamed into place when complete. `progress(done, total)` is called
    every few certificates so a page can show how far it got.

    It only reads until the end, and ends its read transaction after every certificate: on
    SQLite a transaction holds the one write lock, which progress updates (and everyone else)
    need in between. The only write, the export's final state, comes last."""
    export = session.get(CertificateExport, export_id)
    if export is None:
        raise Refused("no_export", "导出记录不存在。")
    rows = session.execute(export_query(export)).all()
    session.rollback()
    total = len(rows)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"certificates-{export.id}.zip"
    partial = directory / (name + ".part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
        for done, row in enumerate(rows, 1):
            stored = certificate_file(session, row.id, "pdf")
            if stored is not None:
                suffix = f"-v{row.version}" if row.version > 1 else ""
                archive.writestr(f"{row.serial}{suffix}.pdf", stored.content)  # PDFs are compressed already
            session.rollback()  # nothing written yet: ends the read, frees the lock and the row
            if done % 25 == 0 or done == total:
                progress(done, total)
    partial.replace(directory / name)
    export = session.get(CertificateExport, export_id)
    assert export is not None
    export.status, export.total, export.done_count = "done", total, total
    export.file_name, export.size_bytes, export.finished_at = name, (directory / name).stat().st_size, utcnow()
    session.flush()
    return export


def my_certificate_entry(public_url: str) -> Handler:
    """我的 → 显示证书: the certificate's page, the claim page, or what is still missing —
    answered inside WeChat's 5-second window from a few reads."""
    base = public_url.rstrip("/")

    @read_only
    def my_certificate(session: Session, inbound: Inbound) -> Reply:
        user = session.scalar(select(User).where(User.openid == inbound.openid))
        if user is None:
            return TextReply("还没有你的学习记录。请点击「毫末平台」→「心委培训」开始学习。")
        issued = session.scalar(select(Certificate).where(Certificate.user_id == user.id, Certificate.status == "valid")
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
        current = learning.progress(session, enrollments[0])
        done = sum(1 for t in current.topics if t.state == "done")
        return TextReply(f"你还没有通过认证：{current.version.title} 已完成 {done}/{len(current.topics)} 个专题，"
                         f"当前得分 {current.total} 分（{current.version.pass_mark} 分通过）。完成后即可领取证书。")

    return my_certificate
