"""The audit log page: search by actor, action, subject, school and period; pages; the CSV export."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from flask import Flask
from sqlalchemy import select

from database import get_database
from handlers.audit import PAGE_SIZE, Actor, record_audit, safe_cell
from models import AuditEntry
from tests.console_helpers import make_school, make_school_admin, make_staff, sign_in


def add(app: Flask, actor: str, action: str, subject: tuple[str, str] | None = None, *, school_id: int | None = None,
        at: datetime | None = None, before=None, after=None, note: str | None = None) -> None:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        entry = record_audit(
            session,
            Actor(None, actor),
            action,
            subject[0] if subject else None,
            subject[1] if subject else None,
            school_id=school_id,
            before=before,
            after=after,
            note=note,
        )
        if at is not None:
            entry.at = at
        session.commit()


def rows(body: str) -> int:
    return max(0, body.count("<tr>") - 1)  # less the header row (no table at all when nothing matches)


def test_search_filters(app, client) -> None:  # type: ignore[no-untyped-def]
    school = make_school(app)
    sign_in(client, app, make_staff(app))
    add(app, "wang", "certificate.revoke", ("certificate", "7"), school_id=school,
        at=datetime(2026, 11, 1, 17, 0, tzinfo=timezone.utc))  # 2 November in Beijing
    add(app, "wang", "school.update", ("school", str(school)), school_id=school,
        at=datetime(2026, 11, 5, 3, 0, tzinfo=timezone.utc))
    add(app, "li", "certificate.notice", ("certificate", "8"), at=datetime(2026, 11, 6, 3, 0, tzinfo=timezone.utc))

    def count(query: str) -> int:
        return rows(client.get("/console/audit/?" + query).get_data(as_text=True))

    assert count("actor=wang") == 2 and count("actor=WANG") == 2 and count("actor=zhao") == 0
    assert count("action=certificate") == 2 and count("action=certificate.revoke") == 1
    assert count("subject=certificate:7") == 1 and count("subject=certificate") == 2 and count("subject=8") == 1
    assert count(f"school_id={school}") == 2
    assert count("since=2026-11-02&until=2026-11-02") == 1  # Beijing dates
    assert count("since=2026-11-05") == 2 and count("until=2026-11-01") == 0
    assert count("since=not-a-date&school_id=abc") >= 3  # junk filters are ignored, not errors
    assert count("action=%25") == 0  # a wildcard is text


def test_pages(app, client) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, app, make_staff(app))
    for i in range(PAGE_SIZE + 3):
        add(app, "wang", "school.update", ("school", str(i)))
    first = client.get("/console/audit/?actor=wang").get_data(as_text=True)
    assert rows(first) == PAGE_SIZE and "下一页" in first
    second = client.get("/console/audit/?actor=wang&page=2").get_data(as_text=True)
    assert rows(second) == 3 and "上一页" in second and "下一页" not in second


def test_csv_export_is_utf8_with_a_bom_formula_safe_and_audited(app, client) -> None:  # type: ignore[no-untyped-def]
    staff = make_staff(app)
    sign_in(client, app, staff)
    add(app, "wang", "school.update", ("school", "1"), before={"name": "=HYPERLINK(\"http://x\")"},
        after={"name": "华东大学"}, note="+1 改名")
    add(app, "li", "certificate.notice", ("certificate", "2"), note="@SUM(A1)")
    response = client.get("/console/audit/export.csv?actor=wang")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    raw = response.data
    assert raw.startswith("\ufeff".encode("utf-8"))
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert table[0][:3] == ["时间（北京时间）", "操作人", "操作"]
    assert len(table) == 2  # the filter applies
    row = table[1]
    assert row[1:5] == ["wang", "school.update", "school", "1"]
    assert row[6].startswith('{"name": "=HYPERLINK') and row[7] == '{"name": "华东大学"}'
    assert row[8] == "'+1 改名"
    everything = list(csv.reader(io.StringIO(client.get("/console/audit/export.csv").data.decode("utf-8-sig"))))
    assert [r[8] for r in everything[1:3]] == ["'+1 改名", "'@SUM(A1)"]
    with get_database(app).sessions() as session:
        exports = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "audit.export")))
    assert [e.account_id for e in exports] == [staff, staff] and exports[0].after == {"actor": "wang"}


def test_safe_cell() -> None:
    assert [safe_cell(v) for v in ("=1+1", "-2", "@x", "\tx", "普通", None, 5)] == [
        "'=1+1",
        "'-2",
        "'@x",
        "'\tx",
        "普通",
        "",
        "5",
    ]


def test_school_admins_cannot_read_the_log(app, client) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, app, make_school_admin(app, make_school(app)))
    assert client.get("/console/audit/").status_code == 403
    assert client.get("/console/audit/export.csv").status_code == 403
