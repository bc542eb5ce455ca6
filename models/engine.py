"""Engines and session factories for SQLite (embedded default) and PostgreSQL."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# Milliseconds a SQLite writer waits for the write lock before giving up. A retried
# WeChat delivery waits here for the first delivery's transaction to finish.
SQLITE_BUSY_TIMEOUT_MS = 15000


def make_engine(url: str, *, immediate: bool = True, lock_timeout_ms: int | None = None, **kwargs: Any) -> Engine:
    """An engine for `url`, tuned per backend. Connects lazily.

    `immediate=False` gives SQLite readers (tests, reports) deferred transactions
    that never hold the write lock. `lock_timeout_ms` bounds how long a PostgreSQL
    statement waits for a row lock (a retried webhook delivery waits on the first).
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _tune_sqlite(engine, immediate)
        return engine
    # No pre-ping: it costs a round trip per request. A connection the server dropped
    # fails its request once (WeChat retries; the pool discards it); recycling keeps
    # connections younger than any idle cut-off between here and the server.
    kwargs.setdefault("pool_pre_ping", False)
    kwargs.setdefault("pool_recycle", 1800)
    if lock_timeout_ms is not None:
        kwargs.setdefault("connect_args", {"options": f"-c lock_timeout={int(lock_timeout_ms)}"})
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


def _tune_sqlite(engine: Engine, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own BEGIN handling defers the write lock past our first
        # statement; take control so that BEGIN is emitted by SQLAlchemy below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: durable across application crashes, one fsync per checkpoint.
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return  # each statement commits by itself
        # IMMEDIATE takes the write lock at BEGIN, so two writers queue on the busy
        # timeout instead of one failing with "database is locked" on lock upgrade.
        # (Rails 8 made the same choice for SQLite.) The cost: on the embedded default
        # one request writes at a time; PostgreSQL is for real load.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: values read before the single commit stay usable
    # while the response is rendered.
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


class ReadOnlyViolation(RuntimeError):
    """A session meant for reading tried to write."""


def refuse_writes(sessions: sessionmaker[Session]) -> None:
    """Make every session from `sessions` raise on flush (installed once, free per session)."""
    @event.listens_for(sessions, "before_flush")
    def _refuse(session: Session, _context: object, _instances: object) -> None:
        raise ReadOnlyViolation("a read-only session tried to write")
