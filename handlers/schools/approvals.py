"""The approval queue: a school's pending profiles (those the roster did not verify) and the admin's decisions."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.accounts import identity
from handlers.audit import Actor, record_audit
from handlers.errors import Refused
from handlers.privacy import masking
from handlers.schools import console
from models import RosterEntry, StudentProfile
from models.status import ProfileStatus

REASON_MAX = 500
BULK_MAX = 200


class NotFound(LookupError):
    """No such profile at this school (another school's is the same answer)."""


@dataclass(frozen=True)
class QueueItem:
    profile: StudentProfile
    # The roster's line with the same student number (its name differs, or it would have matched).
    same_number: RosterEntry | None
    # Roster lines with the declared name under other numbers (a typo in the number?).
    same_name: list[RosterEntry]


def queue(session: Session, school_id: int, page: int = 1, per_page: int = 30) -> tuple[list[QueueItem], int]:
    """A page of the school's pending profiles, oldest first, each beside its closest roster lines."""
    # A student who withdrew sharing with the school is not shown to it (they know verification
    # through the school cannot complete: the notice and the withdrawal dialog say so).
    where = (StudentProfile.school_id == school_id, StudentProfile.status == ProfileStatus.PENDING,
             console.sharing_answer().is_not(False))
    total = session.scalar(select(func.count()).select_from(StudentProfile).where(*where)) or 0
    profiles = list(session.scalars(select(StudentProfile).where(*where)
                                    .order_by(StudentProfile.confirmed_at, StudentProfile.id)
                                    .offset((max(page, 1) - 1) * per_page).limit(per_page)))
    numbers = {p.student_number for p in profiles}
    names = {p.real_name for p in profiles}
    by_number = {e.student_number: e for e in session.scalars(select(RosterEntry).where(
        RosterEntry.school_id == school_id, RosterEntry.student_number.in_(numbers)))} if numbers else {}
    by_name: dict[str, list[RosterEntry]] = {}
    if names:
        for entry in session.scalars(select(RosterEntry).where(
                RosterEntry.school_id == school_id, RosterEntry.real_name.in_(names))
                .order_by(RosterEntry.student_number)):
            by_name.setdefault(entry.real_name, []).append(entry)
    items = [QueueItem(p, by_number.get(p.student_number),
                       [e for e in by_name.get(p.real_name, []) if e.student_number != p.student_number][:3])
             for p in profiles]
    return items, total


def reveal_phone(session: Session, actor: Actor, school_id: int, profile_id: int) -> StudentProfile:
    """A student's phone in full, on purpose (the queue shows it masked), recorded in the audit log.
    The student numbers stay in full on the queue: comparing them with the roster's is what the
    queue is for. Another school's student is NotFound."""
    profile = session.scalar(select(StudentProfile).where(StudentProfile.id == profile_id,
                                                          StudentProfile.school_id == school_id))
    if profile is None:
        raise NotFound(profile_id)
    if profile.phone:
        masking.record_reveal(session, actor, "student_profile", profile.id, ["phone"], school_id=school_id)
    return profile


def pending_count(session: Session, school_id: int) -> int:
    return session.scalar(select(func.count()).select_from(StudentProfile).where(
        StudentProfile.school_id == school_id, StudentProfile.status == ProfileStatus.PENDING,
        console.sharing_answer().is_not(False))) or 0


def decide(session: Session, actor: Actor, school_id: int, profile_id: int, *, approve: bool,
           reason: str | None = None, now: datetime) -> StudentProfile:
    """Approve, or reject with a reason the student sees. A profile decided already (by another admin,
    or verified by a roster upload meanwhile) is a Refused saying so; another school's is NotFound."""
    reason = (reason or "").strip()
    if not approve and not reason:
        raise Refused("reason_required", "请填写驳回原因，学生会看到它")
    if len(reason) > REASON_MAX:
        raise Refused("reason_too_long", f"驳回原因最多 {REASON_MAX} 个字")
    profile = identity.review(session, profile_id, school_id, actor.name, approve=approve, reason=reason or None,
                              now=now)
    if profile is None:
        current = session.scalar(select(StudentProfile).where(StudentProfile.id == profile_id,
                                                              StudentProfile.school_id == school_id))
        if current is None:
            raise NotFound(profile_id)
        raise Refused("already_decided", f"{current.real_name}（{current.student_number}）的申请已处理过："
                                         f"{_decision(current)}，无需重复操作")
    record_audit(session, actor, "approvals.approve" if approve else "approvals.reject", "student_profile",
                 profile.id, school_id=school_id, before={"status": ProfileStatus.PENDING},
                 after={"status": profile.status, "reason": profile.reject_reason} if not approve
                 else {"status": profile.status, "verified_via": profile.verified_via})
    return profile


def _decision(profile: StudentProfile) -> str:
    if profile.status == ProfileStatus.VERIFIED:
        return "已通过（名单自动核验）" if profile.verified_via == "roster" else f"已由 {profile.reviewed_by} 通过"
    if profile.status == ProfileStatus.REJECTED:
        return f"已由 {profile.reviewed_by} 驳回"
    return "状态已变化"


def approve_many(session: Session, actor: Actor, school_id: int, profile_ids: list[int], *, now: datetime
                 ) -> tuple[int, list[str]]:
    """Approve several at once; those decided meanwhile are skipped and named, never applied twice."""
    if len(profile_ids) > BULK_MAX:
        raise Refused("too_many", f"一次最多批量处理 {BULK_MAX} 条")
    done, skipped = 0, []
    for profile_id in dict.fromkeys(profile_ids):
        try:
            decide(session, actor, school_id, profile_id, approve=True, now=now)
            done += 1
        except Refused as refused:
            skipped.append(refused.message)
    return done, skipped
