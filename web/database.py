"""The database at the request boundary: one session per request, committed once by the view."""
from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, g
from flask import current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.engine import make_engine, make_sessionmaker

EXTENSION = "xinwei.db"


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    def dispose(self) -> None:
        self.engine.dispose()


def init_app(app: Flask) -> None:
    """Attach an engine (connected lazily: no I/O here) and the per-request teardown."""
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions[EXTENSION] = Database(engine, make_sessionmaker(engine))
    app.teardown_appcontext(_close_session)


def get_database(app: Flask | None = None) -> Database:
    return (app or current_app).extensions[EXTENSION]


def get_session() -> Session:
    """The request's session. Views call `.commit()` once; anything uncommitted is rolled back."""
    if "db_session" not in g:
        g.db_session = get_database().sessions()
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()
