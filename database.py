"""The engines and the session of one request or job, committed once at the boundary (used by web/ and wechat/)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.engine import make_engine, make_sessionmaker, refuse_writes

EXTENSION = "xinwei.db"


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    # Sessions for flows that only read: on SQLite their transactions are deferred, so a
    # read never takes the write lock; on PostgreSQL they are the same as `sessions`.
    readers: sessionmaker[Session]
    # For records whose loss in a database crash is harmless (the webhook's dedup row of a
    # read-only reply: a retry would only compute the same reply again). PostgreSQL commits
    # them without waiting for the WAL flush; on SQLite it is the main engine.
    relaxed: Engine

    def dispose(self) -> None:
        self.engine.dispose()
        for other in {self.readers.kw["bind"], self.relaxed} - {self.engine}:
            other.dispose()


def init_app(app: Flask) -> None:
    """Attach the engines (connected lazily: no I/O here) and the per-request teardown."""
    url = app.config["DATABASE_URL"]
    lock_timeout_ms = int(app.config["WECHAT_DEDUP_WAIT"] * 1000)
    engine = make_engine(url, lock_timeout_ms=lock_timeout_ms)
    sqlite = engine.dialect.name == "sqlite"
    reader = make_engine(url, immediate=False) if sqlite else engine
    # Only single statements run on it, each its own transaction: its connections are in
    # autocommit from the start (models.prepared.autocommit then has nothing to switch).
    relaxed = engine if sqlite else make_engine(url, pool_size=2, max_overflow=5, isolation_level="AUTOCOMMIT",
                                                connect_args={"options": f"-c synchronous_commit=off "
                                                                         f"-c lock_timeout={lock_timeout_ms}"})
    readers = make_sessionmaker(reader)
    refuse_writes(readers)
    app.extensions[EXTENSION] = Database(
        engine=engine,
        sessions=make_sessionmaker(engine),
        readers=readers,
        relaxed=relaxed,
    )
    app.teardown_appcontext(_close_session)


def get_database(app: Flask | None = None) -> Database:
    return (app or current_app).extensions[EXTENSION]


def get_session() -> Session:
    """The request's session. Views call `.commit()` once; anything uncommitted is rolled back."""
    if "db_session" not in g:
        g.db_session = get_database().sessions()
    return g.db_session


def open_session() -> Session | None:
    """The request's session if something used it, else None (nothing to commit)."""
    return g.get("db_session")


def _close_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()
