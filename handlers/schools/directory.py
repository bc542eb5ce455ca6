"""Staff keep the schools: create and edit them (address, billing), see and invite their admins; audited."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.accounts.console import create_invite, set_disabled
from handlers.audit import Actor, record_audit
from handlers.errors import Refused
from models import ConsoleAccount, ConsoleInvite, School
from models.console import PLATFORM_ADMIN, SCHOOL_ADMIN, STAFF

PAGE_SIZE = 50
# (field, label, longest): what the school form edits, in order.
FIELDS = (("name", "学校名称", 100), ("address", "纸质证书邮寄地址", 300), ("billing_name", "开票抬头", 100),
          ("billing_tax_id", "纳税人识别号", 32), ("billing_contact", "结算联系人（姓名、电话）", 100))


@dataclass(frozen=True)
class SchoolForm:
    name: str
    address: str = ""
    billing_name: str = ""
    billing_tax_id: str = ""
    billing_contact: str = ""
    pays_electronic: bool = False

    @classmethod
    def of(cls, values: Any) -> "SchoolForm":
        """From a form mapping: text fields trimmed (inner whitespace collapsed), the flag from a checkbox."""
        clean = {field: " ".join(str(values.get(field, "")).split()) for field, _, _ in FIELDS}
        return cls(**clean, pays_electronic=values.get("pays_electronic") in ("1", "on", "true"))

    def snapshot(self) -> dict[str, Any]:
        return {field: getattr(self, field) or None for field, _, _ in FIELDS} | {
            "pays_electronic": self.pays_electronic
        }


def snapshot(school: School) -> dict[str, Any]:
    return {field: getattr(school, field) for field, _, _ in FIELDS} | {"pays_electronic": school.pays_electronic}


def _check(session: Session, form: SchoolForm, school_id: int | None) -> None:
    if not form.name:
        raise Refused("no_name", "请填写学校名称。")
    for field, label, longest in FIELDS:
        if len(getattr(form, field)) > longest:
            raise Refused("too_long", f"{label}最多 {longest} 个字。")
    clash = session.scalar(select(School.id).where(School.name == form.name))
    if clash is not None and clash != school_id:
        raise Refused("name_taken", "已有同名学校。")


def list_schools(session: Session, query: str = "", page: int = 1) -> tuple[list[tuple[School, int]], bool]:
    """Schools (with their admin count) whose name contains `query`, by name, one page."""
    page = max(1, page)
    admins = (select(ConsoleAccount.school_id, func.count().label("n")).where(ConsoleAccount.role == SCHOOL_ADMIN)
              .group_by(ConsoleAccount.school_id).subquery())
    statement = select(School, func.coalesce(admins.c.n, 0)).outerjoin(admins, admins.c.school_id == School.id)
    query = query.strip()[:50]
    if query:
        statement = statement.where(School.name.contains(query, autoescape=True))
    rows = [(school, n) for school, n in session.execute(
        statement.order_by(School.name).limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)).all()]
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


def create_school(session: Session, actor: Actor, form: SchoolForm) -> School:
    _check(session, form, None)
    school = School(**form.snapshot())
    session.add(school)
    session.flush()
    record_audit(session, actor, "school.create", "school", school.id, school_id=school.id, after=snapshot(school))
    return school


def update_school(session: Session, actor: Actor, school_id: int, form: SchoolForm) -> School:
    school = session.scalar(select(School).where(School.id == school_id).with_for_update())
    if school is None:
        raise Refused("not_found", "学校不存在。")
    _check(session, form, school.id)
    before = snapshot(school)
    for key, value in form.snapshot().items():
        setattr(school, key, value)
    session.flush()
    after = snapshot(school)
    changed = [key for key in after if after[key] != before[key]]
    if changed:
        record_audit(session, actor, "school.update", "school", school.id, school_id=school.id,
                     before={k: before[k] for k in changed}, after={k: after[k] for k in changed})
    return school


def school_accounts(session: Session, school_id: int) -> list[ConsoleAccount]:
    return list(session.scalars(select(ConsoleAccount).where(ConsoleAccount.school_id == school_id,
                                                             ConsoleAccount.role == SCHOOL_ADMIN)
                                .order_by(ConsoleAccount.username)))


def staff_accounts(session: Session) -> list[ConsoleAccount]:
    return list(session.scalars(select(ConsoleAccount).where(ConsoleAccount.role.in_((PLATFORM_ADMIN, STAFF)))
                                .order_by(ConsoleAccount.role, ConsoleAccount.username)))


def pending_invites(session: Session, now: datetime, *, school_id: int | None = None,
                    staff: bool = False) -> list[ConsoleInvite]:
    query = select(ConsoleInvite).where(ConsoleInvite.used_at.is_(None), ConsoleInvite.expires_at > now)
    if staff:
        query = query.where(ConsoleInvite.role.in_((PLATFORM_ADMIN, STAFF)))
    else:
        query = query.where(ConsoleInvite.school_id == school_id, ConsoleInvite.role == SCHOOL_ADMIN)
    return list(session.scalars(query.order_by(ConsoleInvite.created_at.desc())))


def cancel_invite(session: Session, actor: Actor, invite_id: int, now: datetime, *, school_id: int | None = None,
                  staff: bool = False) -> ConsoleInvite:
    """Withdraw a pending invite (a typo in the name, the wrong person): its link stops working
    at once. Only an invite of this school (or a platform invite, for `staff`); audited."""
    invite = session.scalar(select(ConsoleInvite).where(ConsoleInvite.id == invite_id).with_for_update())
    mine = invite is not None and (invite.role in (PLATFORM_ADMIN, STAFF) if staff
                                   else invite.role == SCHOOL_ADMIN and invite.school_id == school_id)
    if invite is None or not mine:
        raise Refused("not_found", "邀请不存在。")
    if invite.used_at is not None or invite.expires_at <= now:
        raise Refused("not_pending", "该邀请已被接受或已失效。")
    invite.expires_at = now
    session.flush()
    record_audit(session, actor, "invite.cancel", "console_invite", invite.id, school_id=invite.school_id,
                 before={"display_name": invite.display_name, "role": invite.role})
    return invite


def invite_school_admin(session: Session, actor: Actor, school_id: int, display_name: str,
                        now: datetime) -> tuple[ConsoleInvite, str]:
    if session.get(School, school_id) is None:
        raise Refused("not_found", "学校不存在。")
    if not display_name.strip():
        raise Refused("no_name", "请填写被邀请人的姓名。")
    return create_invite(session, actor, role=SCHOOL_ADMIN, display_name=display_name, school_id=school_id, now=now)


def invite_staff(session: Session, actor: Actor, role: str, display_name: str,
                 now: datetime) -> tuple[ConsoleInvite, str]:
    if role not in (PLATFORM_ADMIN, STAFF):
        raise Refused("bad_role", "请选择平台管理员或平台工作人员。")
    if not display_name.strip():
        raise Refused("no_name", "请填写被邀请人的姓名。")
    return create_invite(session, actor, role=role, display_name=display_name, school_id=None, now=now)


def set_school_admin_disabled(session: Session, actor: Actor, school_id: int, account_id: int,
                              disabled: bool) -> ConsoleAccount:
    """Disable or enable one of this school's admins (another school's account, or a staff one: not found)."""
    account = session.scalar(select(ConsoleAccount).where(ConsoleAccount.id == account_id,
                                                          ConsoleAccount.school_id == school_id,
                                                          ConsoleAccount.role == SCHOOL_ADMIN))
    if account is None:
        raise Refused("not_found", "账号不存在。")
    return set_disabled(session, actor, account.id, disabled)


def set_staff_disabled(session: Session, actor: Actor, account_id: int, disabled: bool) -> ConsoleAccount:
    account = session.scalar(select(ConsoleAccount).where(ConsoleAccount.id == account_id,
                                                          ConsoleAccount.role.in_((PLATFORM_ADMIN, STAFF))))
    if account is None:
        raise Refused("not_found", "账号不存在。")
    if account.id == actor.account_id:
        raise Refused("self", "不能停用自己的账号。")
    return set_disabled(session, actor, account.id, disabled)
