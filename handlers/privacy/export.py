"""A student's copy of their data: every row the privacy registry finds for them, as JSON-ready values."""
from __future__ import annotations

import base64
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.china_time import china
from handlers.privacy.registry import BY_TABLE, Student, rows_of, students_tables
from models import Base, StudentProfile, User


def student_of(session: Session, user_id: int) -> Student | None:
    user = session.get(User, user_id)
    return Student(user.id, user.openid) if user is not None else None


def _value(value: Any) -> Any:
    """A column's value as JSON: times in China time with their offset, bytes as base64."""
    if isinstance(value, datetime):
        return china(value).isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    return value


def collect(session: Session, who: Student) -> dict[str, list[dict[str, Any]]]:
    """Table name -> the student's rows, every column (the registry lists each one's kind). Tables
    where the student has no rows are present and empty, so the copy says "nothing" explicitly."""
    copy: dict[str, list[dict[str, Any]]] = {}
    for declaration in students_tables():
        rows = session.execute(rows_of(declaration, who)).mappings()
        copy[declaration.table] = [{key: _value(value) for key, value in row.items()} for row in rows]
    # The school's roster line that verified them: the school's record, but about them.
    roster = Base.metadata.tables["roster_entries"]
    profile = session.scalar(select(StudentProfile).where(StudentProfile.user_id == who.user_id))
    found = []
    if profile is not None and profile.student_number:
        found = [{key: _value(value) for key, value in row.items()} for row in session.execute(
            select(roster).where(roster.c.school_id == profile.school_id,
                                 roster.c.student_number == profile.student_number)).mappings()]
    copy["roster_entries"] = found
    assert set(copy) <= set(BY_TABLE)
    return copy
