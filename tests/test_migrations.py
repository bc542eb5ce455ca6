"""Migrations: `upgrade head` builds the schema the models describe, on SQLite and PostgreSQL."""
from __future__ import annotations

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
