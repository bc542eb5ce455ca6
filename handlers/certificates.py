"""Certificates: claiming one (idempotent, gapless serials, signed snapshot) and verifying it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import certs
from handlers.identity import profile_of
from handlers.learning import Refused
from models import Certificate, CertificateEvent, Course, CourseVersion, Enrollment, School, SerialCounter

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
        verify_url=issuer.verify_url(token), signature="",
    )
    try:
        with session.begin_nested():
            certificate.serial = allocate_serial(session, today.year)
            certificate.signature = certs.sign(payload_of(certificate), issuer.signing_key)
            session.add(certificate)
            session.flush()
            session.add(CertificateEvent(certificate_id=certificate.id, action="issued", actor=f"student:{user_id}",
                                         details={"serial": certificate.serial, "channel": channel}))
            session.flush()
    except IntegrityError:
        # Another claim of the same student and course won the race: it is the certificate.
        winner = live_certificate(session, user_id, course.id)
        if winner is None:
            raise
        return winner
    return certificate


@dataclass(frozen=True)
class Verification:
    certificate: Certificate
    status: str  # valid, superseded, revoked
    signature_ok: bool
    masked_name: str
    masked_number: str
    newest_token: str | None  # where a superseded version points


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
    newest = None
    if certificate.status == "superseded":
        newest = session.scalar(select(Certificate.verify_token).where(
            Certificate.serial == certificate.serial, Certificate.status != "superseded")
            .order_by(Certificate.version.desc()).limit(1))
    return Verification(certificate, certificate.status, signature_ok, mask_name(certificate.holder_name),
                        mask_number(certificate.student_number), newest)
