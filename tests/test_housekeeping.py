"""Housekeeping: export files do not outlive their week; their rows stay as a record."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from database import get_database
from handlers.housekeeping import prune_exports
from models import Course, School, StudentExport
from models.base import utcnow


def test_old_export_files_are_deleted_and_marked_expired(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    with get_database(app).sessions() as session:
        school, course = School(name="导出大学"), Course(code="c", current_version=0)
        session.add_all([school, course])
        session.flush()
        rows = []
        for name, age in (("old.csv", 8), ("new.csv", 1)):
            (tmp_path / name).write_text("姓名,学号\n")
            rows.append(StudentExport(school_id=school.id, course_id=course.id, requested_by="school_admin:1",
                                      file_format="csv", status="done", file_name=name,
                                      finished_at=now - timedelta(days=age)))
        running = StudentExport(school_id=school.id, course_id=course.id, requested_by="school_admin:1",
                                file_format="csv", status="running", file_name=None)
        session.add_all([*rows, running])
        session.commit()
        assert prune_exports(session, tmp_path, now) == 1
        session.commit()
        assert not (tmp_path / "old.csv").exists() and (tmp_path / "new.csv").exists()
        assert [(r.status, r.file_name) for r in rows] == [("expired", None), ("done", "new.csv")]
        assert running.status == "running"
        assert prune_exports(session, tmp_path, now) == 0  # a second run finds nothing
