"""Masked names, student numbers and phones, and the audit entry of each on-purpose look at the full values."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from handlers.audit import Actor, record_audit
from models import AuditEntry

# Lists and pages show a student's number and phone masked; the full values are one deliberate
# request away (a console's 显示完整信息), and each such request is an audit entry saying who looked
# at whom, when, and at which fields. The entry never holds the values themselves: the audit log
# would otherwise become one more copy of the data it accounts for.

REVEAL = "privacy.reveal"
# The revealable fields, as the audit entry's note names them (staff read the note in the console).
FIELDS = {"student_number": "学号", "phone": "手机"}


def mask_name(name: str) -> str:
    """张三 → 张*, 林小满 → 林*满, Latin names keep their first letter."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_number(number: str | None) -> str:
    """2024018 → 20***18: enough to recognise, not enough to reuse."""
    if not number:
        return ""
    if len(number) <= 4:
        return "*" * len(number)
    return number[:2] + "*" * (len(number) - 4) + number[-2:]


def mask_phone(phone: str | None) -> str:
    """13812345678 → 138****5678 (how Chinese services print a mobile number). At least four digits
    are always hidden, so a short landline keeps only its last four and anything under eight none."""
    if not phone:
        return ""
    if len(phone) < 8:
        return "*" * len(phone)
    head = min(3, len(phone) - 8)
    return phone[:head] + "*" * (len(phone) - head - 4) + phone[-4:]


def record_reveal(session: Session, actor: Actor, subject_type: str, subject_id: int, fields: Sequence[str], *,
                  school_id: int | None = None) -> AuditEntry:
    """Record that `actor` was shown these fields of this subject in full (the entry's time is when).
    Names of fields only, never their values."""
    unknown = [name for name in fields if name not in FIELDS]
    if unknown or not fields:
        raise ValueError(f"not revealable fields: {unknown or fields}")
    return record_audit(session, actor, REVEAL, subject_type, subject_id, school_id=school_id,
                        note="、".join(FIELDS[name] for name in fields))
