"""Identity: a student's profile (what certificates print), its confirmation, and verification."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers.errors import Refused
from models import RosterEntry, School, StudentProfile
from models.status import ProfileStatus

NAME = re.compile(r"^[\u3400-\u9fffA-Za-z·][\u3400-\u9fffA-Za-z· ]{0,28}[\u3400-\u9fffA-Za-z]$")
STUDENT_NUMBER = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,31}$")
PHONE = re.compile(r"^1[3-9]\d{9}$")
STAFF_PATH = "如确属本人，请在公众号对话框留言（写明姓名、学校、学号），工作人员会核实处理。"


@dataclass(frozen=True)
class ProfileForm:
    school_id: int
    real_name: str
    college: str
    student_number: str
    grade: str
    phone: str = ""


class ProfileInvalid(Refused):
    """Field-by-field problems, in Chinese, for the form."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("invalid", "；".join(errors.values()))
        self.errors = errors


class ProfileLocked(Refused):
    """The profile was confirmed already: changes go through a correction request."""

    MESSAGE = "个人信息已确认，不能直接修改。如需更正，请在证书页面提交更正申请或联系工作人员。"

    def __init__(self) -> None:
        super().__init__("locked", self.MESSAGE)


class NumberTaken(Refused):
    """Another WeChat user holds this student number at this school."""

    MESSAGE = "该学号已被其他微信账号认证。" + STAFF_PATH

    def __init__(self) -> None:
        super().__init__("number_taken", self.MESSAGE)


def clean(value: str) -> str:
    """Full-width to half-width (NFKC), spaces trimmed and collapsed."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", value or "")).strip()


def display_name(value: str, limit: int = 64) -> str:
    """A name a person gave for display (console accounts, invites): cleaned as profile text,
    and refused if it holds characters that print nothing or reorder text (NUL, bidi overrides,
    zero-width), which could make a shown name differ from the stored one."""
    text = clean(value)[:limit]
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in text):
        raise ValueError("不能包含控制字符或不可见字符")
    return text


def clean_name(value: str) -> str:
    """A person's name as certificates print it (check it with NAME)."""
    return clean(value).replace("•", "·").replace("・", "·")


def clean_number(value: str) -> str:
    """A student number as certificates print it (check it with STUDENT_NUMBER)."""
    return clean(value).replace(" ", "").upper()


def normalize(form: ProfileForm) -> ProfileForm:
    """Full-width to half-width (NFKC), spaces trimmed and collapsed, student numbers upper-case."""
    return ProfileForm(
        school_id=form.school_id,
        real_name=clean_name(form.real_name),
        college=clean(form.college),
        student_number=clean_number(form.student_number),
        grade=clean(form.grade),
        phone=clean(form.phone).replace(" ", "").replace("-", "").removeprefix("+86"),
    )


def check(session: Session, form: ProfileForm) -> dict[str, str]:
    """Problems with a normalized form, by field; empty when it can be submitted."""
    errors: dict[str, str] = {}
    if session.get(School, form.school_id) is None:
        errors["school_id"] = "请选择学校"
    if not NAME.match(form.real_name):
        errors["real_name"] = "请填写真实姓名（2–30 个汉字或字母）"
    if not 2 <= len(form.college) <= 50:
        errors["college"] = "请填写学院（2–50 个字）"
    if not STUDENT_NUMBER.match(form.student_number):
        errors["student_number"] = "请填写学号（3–32 位字母、数字或 -）"
    if not 2 <= len(form.grade) <= 20:
        errors["grade"] = "请填写年级，例如 2024级"
    # The phone is asked at a paper certificate's order (handlers/payments/orders.py), not here:
    # nothing else needs it. An old form that still sends one gets it checked.
    if form.phone and not PHONE.match(form.phone):
        errors["phone"] = "请填写 11 位手机号"
    return errors


def printed_fields(session: Session, form: ProfileForm) -> dict[str, str]:
    """Exactly what a certificate will print, for the student to confirm before submitting."""
    school = session.get(School, form.school_id)
    return {"姓名": form.real_name, "学校": school.name if school else "", "学院": form.college,
            "学号": form.student_number, "年级": form.grade}


def profile_of(session: Session, user_id: int) -> StudentProfile | None:
    return session.scalar(select(StudentProfile).where(StudentProfile.user_id == user_id))


def submit_profile(session: Session, user_id: int, form: ProfileForm, *, now: datetime) -> StudentProfile:
    """Record the confirmed profile and verify it: against the roster when the school has one
    (a match is verified at once), otherwise it waits for the school admin's approval."""
    form = normalize(form)
    errors = check(session, form)
    if errors:
        raise ProfileInvalid(errors)
    profile = profile_of(session, user_id)
    if profile is not None and profile.status != ProfileStatus.REJECTED:
        raise ProfileLocked()
    if session.scalar(select(exists().where(
            StudentProfile.school_id == form.school_id, StudentProfile.student_number == form.student_number,
            StudentProfile.status.in_((ProfileStatus.PENDING, ProfileStatus.VERIFIED)),
            StudentProfile.user_id != user_id))):
        raise NumberTaken()
    values = asdict(form)
    values["phone"] = values["phone"] or None
    try:
        # A savepoint: a concurrent claim of the same number fails here without
        # spoiling the caller's transaction.
        with session.begin_nested():
            if profile is None:
                profile = StudentProfile(user_id=user_id, confirmed_at=now, **values)
                session.add(profile)
            else:  # a rejected claim, submitted again
                for key, value in values.items():
                    setattr(profile, key, value)
                profile.confirmed_at = now
                profile.reject_reason = None
                profile.reviewed_by = None
            profile.status = ProfileStatus.PENDING
            _verify_against_roster(session, profile, now=now)
            session.flush()
    except IntegrityError as exc:
        raise NumberTaken() from exc
    return profile


def _verify_against_roster(session: Session, profile: StudentProfile, *, now: datetime) -> None:
    entry = session.scalar(select(RosterEntry).where(
        RosterEntry.school_id == profile.school_id, RosterEntry.student_number == profile.student_number))
    if entry is not None and _same_name(entry.real_name, profile.real_name):
        profile.status = ProfileStatus.VERIFIED
        profile.verified_at = now
        profile.verified_via = "roster"


def verify_pending(session: Session, school_id: int, *, now: datetime) -> list[StudentProfile]:
    """After a roster upload: the school's pending profiles that now match the roster become verified.
    Rows are locked, so an admin deciding the same profile at the same moment is not overwritten."""
    pending = list(session.scalars(select(StudentProfile).where(
        StudentProfile.school_id == school_id, StudentProfile.status == ProfileStatus.PENDING).with_for_update()))
    if not pending:
        return []
    names = {number: name for number, name in session.execute(
        select(RosterEntry.student_number, RosterEntry.real_name).where(
            RosterEntry.school_id == school_id,
            RosterEntry.student_number.in_({profile.student_number for profile in pending})))}
    verified = []
    for profile in pending:
        if profile.student_number in names and _same_name(names[profile.student_number], profile.real_name):
            profile.status, profile.verified_at, profile.verified_via = ProfileStatus.VERIFIED, now, "roster"
            verified.append(profile)
    session.flush()
    return verified


def _same_name(a: str, b: str) -> bool:
    def key(name: str) -> str:
        return re.sub(r"[\s·•・]", "", unicodedata.normalize("NFKC", name)).casefold()
    return key(a) == key(b)


def review(session: Session, profile_id: int, school_id: int, reviewer: str, *, approve: bool,
           reason: str | None = None, now: datetime) -> StudentProfile | None:
    """A school admin approves or rejects a pending profile of their own school.
    Another school's profile is None, as if it did not exist."""
    # Locked: of two admins deciding at once, the second sees the first's decision (PostgreSQL;
    # SQLite writers queue anyway).
    profile = session.scalar(select(StudentProfile).where(
        StudentProfile.id == profile_id, StudentProfile.school_id == school_id).with_for_update())
    if profile is None or profile.status != ProfileStatus.PENDING:
        return None
    profile.reviewed_by = reviewer[:100]
    if approve:
        profile.status, profile.verified_at, profile.verified_via = ProfileStatus.VERIFIED, now, "admin"
    else:
        if not reason or not reason.strip():
            raise ProfileInvalid({"reason": "请填写驳回原因，学生会看到它"})
        profile.status, profile.reject_reason = ProfileStatus.REJECTED, reason.strip()[:500]
    session.flush()
    return profile
