"""Migrations: `upgrade head` builds the schema the models describe, on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from cli import alembic_config
from models import Base


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ; write a revision: {diff}"


def test_single_head(database_url: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(database_url))
    assert len(script.get_heads()) == 1


def test_upgrade_downgrade_upgrade_on_an_empty_sqlite(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    cfg = alembic_config(url)
    cfg.attributes["configure_logging"] = False
    command.upgrade(cfg, "head")
    command.downgrade(cfg, "base")
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    command.upgrade(cfg, "head")
    assert {"users", "schools", "inbound_events", "wechat_tokens"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_migration_files_list_in_the_order_they_run(database_url: str) -> None:
    """YYYYMMDD_HHMM_<rev>_<slug>.py: `ls` shows the chain from the first revision to the head."""
    import re
    from pathlib import Path

    script = ScriptDirectory.from_config(alembic_config(database_url))
    chain = [r.revision for r in reversed(list(script.walk_revisions()))]
    files = sorted(p.name for p in (Path(script.dir) / "versions").glob("*.py"))
    assert all(re.fullmatch(r"\d{8}_\d{4}_[0-9a-f]{12}_[a-z0-9_]+\.py", f) for f in files), files
    assert [f.split("_")[2] for f in files] == chain


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_large_files_move_into_the_blob_store_and_back(tmp_path, request, backend) -> None:  # type: ignore[no-untyped-def]
    """Revision e1309925d6b5 on a database that has files in rows and an export on disk: the bytes move
    to the blob store (the columns go), and a downgrade brings each byte back."""
    import hashlib
    import secrets
    from datetime import datetime, timezone

    from sqlalchemy import text

    from blobstore import LocalStore, S3Store

    if backend == "file":
        store = LocalStore(tmp_path / "blobs", b"secret", "/blobs")
    else:
        server = request.getfixturevalue("s3_server")
        store = S3Store("mig" + secrets.token_hex(4), endpoint=server.endpoint, region="us-east-1",
                        access_key=server.access_key, secret_key=server.secret_key, create_bucket=True)
    exports = tmp_path / "exports"
    exports.mkdir()
    url = f"sqlite:///{tmp_path / 'moving.db'}"
    cfg = alembic_config(url)
    cfg.attributes.update(configure_logging=False, blob_store=store, export_dir=str(exports))
    command.upgrade(cfg, "b3f19d7a2c60")
    pdf, roster, export = b"%PDF-1.7 " + secrets.token_bytes(2000), "姓名,学号\n张三,1\n".encode(), b"\xef\xbb\xbfa,b\n"
    digest = hashlib.sha256(pdf).hexdigest()
    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    engine = create_engine(url)
    with engine.connect() as conn:
        # What the file rows belong to, filled with placeholder values: only the files matter here.
        for table, row_id in (("schools", 1), ("users", 1), ("courses", 1), ("certificates", 7), ("roster_uploads", 3)):
            _placeholder(conn, table, id=row_id, school_id=1, user_id=1, course_id=1)
        conn.execute(text("INSERT INTO certificate_files (id, certificate_id, kind, content, sha256, created_at) "
                          "VALUES (1, 7, 'pdf', :c, :d, :t)"), {"c": pdf, "d": digest, "t": now})
        conn.execute(text("INSERT INTO roster_files (upload_id, content) VALUES (3, :c)"), {"c": roster})
        for export_id, name in ((5, "students-1-5.csv"), (6, "students-1-6.csv")):
            conn.execute(text("INSERT INTO student_exports (id, school_id, course_id, requested_by, file_format,"
                              " filters, status, total, done_count, file_name, created_at) VALUES (:i, 1, 1, 'a',"
                              " 'csv', '{}', 'done', 1, 1, :n, :t)"), {"i": export_id, "n": name, "t": now})
        conn.commit()
    (exports / "students-1-5.csv").write_bytes(export)  # 6's file is on no disk here: it expires
    command.upgrade(cfg, "e1309925d6b5")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT blob_key, size_bytes FROM certificate_files")).one() == (
            f"certificates/7/pdf-{digest[:16]}.pdf", len(pdf))
        roster_key = conn.execute(text("SELECT blob_key FROM roster_files")).scalar()
        moved = dict(conn.execute(text("SELECT id, blob_key FROM student_exports")).all())
        states = dict(conn.execute(text("SELECT id, status FROM student_exports")).all())
    assert "content" not in {c["name"] for c in inspect(engine).get_columns("certificate_files")}
    assert store.get(f"certificates/7/pdf-{digest[:16]}.pdf") == pdf and store.get(roster_key) == roster
    assert moved == {5: "exports/students/5/students-1-5.csv", 6: None} and states == {5: "done", 6: "expired"}
    assert store.get(moved[5]) == export and not (exports / "students-1-5.csv").exists()
    command.downgrade(cfg, "b3f19d7a2c60")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT content FROM certificate_files")).scalar() == pdf
        assert conn.execute(text("SELECT content FROM roster_files")).scalar() == roster
    assert (exports / "students-1-5.csv").read_bytes() == export
    engine.dispose()


def _placeholder(conn, table: str, **given: object) -> None:  # type: ignore[no-untyped-def]
    """A row of `table` with `given` values where it has those columns, and a value of the right type
    in every other column that must have one."""
    from datetime import date, datetime, timezone

    from sqlalchemy import JSON, Boolean, Date, DateTime, Integer, LargeBinary, text

    values: dict[str, object] = {}
    for column in inspect(conn).get_columns(table):
        name, kind = column["name"], column["type"]
        if name in given:
            values[name] = given[name]
        elif not column["nullable"] and column.get("default") is None:
            values[name] = (1 if isinstance(kind, (Integer, Boolean)) else b"" if isinstance(kind, LargeBinary)
                            else datetime(2026, 12, 1, tzinfo=timezone.utc) if isinstance(kind, DateTime)
                            else date(2026, 12, 1) if isinstance(kind, Date) else "[]" if isinstance(kind, JSON)
                            else f"{name}-{table}")
    names = ", ".join(values)
    conn.execute(text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + n for n in values)})"), values)
