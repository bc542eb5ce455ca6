"""School billing for electronic certificates: rows per school and period, and the CSV."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.audit import Actor, record_audit
from handlers.errors import Refused
from models import Certificate


@dataclass(frozen=True)
class BillingRow:
    school: str
    count: int


def school_billing(session: Session, start: date, end: date) -> list[BillingRow]:
    """Electronic certificates issued per school in [start, end]: first versions only (a
    correction is not a new certificate), revoked ones included (they were issued)."""
    if end < start:
        raise Refused("bad_period", "结束日期不能早于开始日期。")
    rows = session.execute(select(Certificate.school_name, func.count()).where(
        Certificate.version == 1, Certificate.channel.in_(("electronic", "both")),
        Certificate.issued_on >= start, Certificate.issued_on <= end)
        .group_by(Certificate.school_name).order_by(Certificate.school_name)).all()
    return [BillingRow(name, int(n)) for name, n in rows]


def billing_csv(rows: list[BillingRow], start: date, end: date) -> str:
    """The billing counts as CSV (UTF-8 with BOM, so spreadsheet programs read the Chinese)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["学校", "电子证书数量", "开始日期", "结束日期"])
    for row in rows:
        # A name starting with =, +, - or @ (or a tab or CR, which spreadsheets skip first) would be a formula.
        name = "'" + row.school if row.school[:1] in ("=", "+", "-", "@", "\t", "\r") else row.school
        writer.writerow([name, row.count, start.isoformat(), end.isoformat()])
    return "\ufeff" + buffer.getvalue()


def export(session: Session, actor: Actor, start: date, end: date) -> str:
    """Staff download the period's billing as CSV (for invoicing); audited."""
    rows = school_billing(session, start, end)
    record_audit(session, actor, "payments.billing_export", None, None,
                 after={"start": start.isoformat(), "end": end.isoformat(), "schools": len(rows)})
    return billing_csv(rows, start, end)
