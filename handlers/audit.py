"""The audit log: who did what (Actor), writing an entry, and reading it back (search, pages, CSV)."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from handlers import china_time
from models import AuditEntry, ConsoleAccount


@dataclass(frozen=True)
class Actor:
    """Who does a console action, as the audit log records it."""

    account_id: int | None
    name: str
    school_id: int | None = None

    @classmethod
    def of(cls, account: ConsoleAccount) -> "Actor":
        return cls(account.id, account.username, account.school_id)


SYSTEM = Actor(None, "system")


# -- audit ---------------------------------------------------------------------------------------

def record_audit(session: Session, actor: Actor, action: str, subject_type: str | None = None,
                 subject_id: int | str | None = None, *, school_id: int | None = None,
                 before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
                 note: str | None = None) -> AuditEntry:
    """Append one entry to the audit log, in the caller's transaction (so it commits with the action)."""
    entry = AuditEntry(account_id=actor.account_id, actor=actor.name, action=action, subject_type=subject_type,
                       subject_id=None if subject_id is None else str(subject_id),
                       school_id=school_id if school_id is not None else actor.school_id,
                       before=before, after=after, note=note)
    session.add(entry)
    return entry

PAGE_SIZE = 50
EXPORT_LIMIT = 100_000
CHINA = china_time.CHINA
# A cell a spreadsheet would run as a formula (CSV injection); it is written with a leading quote.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""
    action: str = ""
    subject: str = ""  # "type:id", "type" or an id
    school_id: int | None = None
    since: date | None = None  # China dates, inclusive
    until: date | None = None

    @classmethod
    def of(cls, values: Any) -> "AuditFilter":
        def day(key: str) -> date | None:
            try:
                return date.fromisoformat(str(values.get(key, ""))[:10])
            except ValueError:
                return None

        school = str(values.get("school_id", "")).strip()
        # ASCII digits that fit the column: '²'.isdigit() is true but int('²') raises.
        school_ok = school.isascii() and school.isdigit() and len(school) <= 18
        return cls(actor=str(values.get("actor", "")).strip()[:64], action=str(values.get("action", "")).strip()[:64],
                   subject=str(values.get("subject", "")).strip()[:100],
                   school_id=int(school) if school_ok else None, since=day("since"), until=day("until"))

    def query(self) -> Select[tuple[AuditEntry]]:
        query = select(AuditEntry)
        if self.actor:
            query = query.where(AuditEntry.actor == self.actor.lower())
        if self.action:
            # "certificate" finds every certificate.* action; "certificate.revoke" just that one.
            query = query.where(AuditEntry.action.startswith(self.action, autoescape=True)
                                if "." not in self.action else AuditEntry.action == self.action)
        if self.subject:
            kind, _, ident = self.subject.partition(":")
            if ident:
                query = query.where(AuditEntry.subject_type == kind.strip(), AuditEntry.subject_id == ident.strip())
            elif kind.isdigit():
                query = query.where(AuditEntry.subject_id == kind)
            else:
                query = query.where(AuditEntry.subject_type == kind)
        if self.school_id is not None:
            query = query.where(AuditEntry.school_id == self.school_id)
        if self.since is not None:
            query = query.where(AuditEntry.at >= datetime.combine(self.since, time(), CHINA))
        if self.until is not None:
            query = query.where(AuditEntry.at < datetime.combine(self.until + timedelta(days=1), time(), CHINA))
        return query

    def args(self) -> dict[str, str]:
        """The filter as query-string arguments (for pager and export links)."""
        values = {"actor": self.actor, "action": self.action, "subject": self.subject,
                  "school_id": "" if self.school_id is None else str(self.school_id),
                  "since": self.since.isoformat() if self.since else "",
                  "until": self.until.isoformat() if self.until else ""}
        return {k: v for k, v in values.items() if v}


def search(session: Session, where: AuditFilter, page: int = 1) -> tuple[list[AuditEntry], bool]:
    page = max(1, page)
    rows = list(session.scalars(where.query().order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                                .limit(PAGE_SIZE + 1).offset((page - 1) * PAGE_SIZE)))
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


def safe_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def as_json(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


HEADER = ("时间（北京时间）", "操作人", "操作", "对象类型", "对象编号", "学校编号", "变更前", "变更后", "备注")


def csv_lines(session: Session, where: AuditFilter) -> Iterator[str]:
    """The CSV, a line at a time: a UTF-8 BOM (so Excel reads Chinese), then oldest first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: tuple[Any, ...]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([safe_cell(cell) for cell in cells])
        return buffer.getvalue()

    yield "\ufeff" + line(HEADER)
    statement = where.query().order_by(AuditEntry.at, AuditEntry.id).limit(EXPORT_LIMIT)
    for entry in session.scalars(statement.execution_options(yield_per=500)):
        yield line((entry.at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"), entry.actor, entry.action,
                    entry.subject_type, entry.subject_id, entry.school_id, as_json(entry.before),
                    as_json(entry.after), entry.note))
