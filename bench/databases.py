"""Bench databases: fresh SQLite files and PostgreSQL databases, migrated, counted, dropped."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from bench.settings import REPO, BenchError

# --- databases ------------------------------------------------------------------------


def app_env(database_url: str) -> dict[str, str]:
    """The environment the app runs with: development secrets, the given database."""
    env = dict(os.environ)
    env.update(XINWEI_ENV="development", DATABASE_URL=database_url, PYTHONDONTWRITEBYTECODE="1")
    # A Redis URL inherited from a developer's shell must not change what is measured.
    env.pop("REDIS_URL", None)
    return env


def migrate(database_url: str, timeout: float = 120.0) -> None:
    """`flask --app app db upgrade`, exactly as a deploy does it."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
        cwd=REPO, env=app_env(database_url), capture_output=True, text=True, timeout=timeout,
    )
    if done.returncode != 0:
        raise BenchError(f"migration failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def sqlite_url(directory: Path) -> str:
    return "sqlite:///" + str(directory / "xinwei.db")


def recreate_pg_database(base_url: str, name: str) -> str:
    """Drop and create database `name` on the server of `base_url`; return its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise BenchError(f"unsafe database name {name!r}")
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(base_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def count_rows(database_url: str, table: str) -> int:
    """Committed rows in `table`, read over a separate connection (SQLite: no write lock taken)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())
    finally:
        engine.dispose()
