"""Prepared statements for hot paths: compiled once by SQLAlchemy, run on the raw DBAPI connection."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Callable

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.sql import ClauseElement


class PreparedStatement:
    """A Core statement compiled once for `engine`'s dialect, with its column types' own bind
    processors, executed on a pooled raw DBAPI connection in autocommit.

    Why not `Connection.execute`: for one small INSERT the execution machinery (context,
    parameter processing, result wrapping) costs ~130 µs against ~35 µs for the work
    itself on SQLite (measured by bench/webhook's profile). SQLAlchemy still writes the SQL and
    converts the values, so the text and the types stay those of the models.
    """

    def __init__(self, engine: Engine, statement: ClauseElement) -> None:
        self.engine = engine
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        dialect = engine.dialect
        binds = compiled.binds
        processors: dict[str, Callable[[Any], Any] | None] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in binds.items()
        }
        self._positional = dialect.positional
        self._order: list[str] = list(compiled.positiontup or []) if dialect.positional else list(binds)
        self._processors = processors
        # Values written into the statement itself (`.values(subscribed=False)`) are binds too.
        self._fixed: dict[str, Any] = {name: bind.effective_value for name, bind in binds.items()
                                       if not bind.required}
        self._postgres = dialect.name == "postgresql"
        # Convert returned values as SQLAlchemy would (SQLite hands back timestamps as text).
        columns = list(getattr(statement, "exported_columns", []) or [])
        self._results: list[Callable[[Any], Any] | None] = [_result_processor(c.type, dialect) for c in columns]

    def params(self, values: Mapping[str, Any]) -> Any:
        """`values` by bind name, converted by their types, in the driver's parameter form."""
        out = []
        for name in self._order:
            value = values[name] if name in values else self._fixed[name]
            processor = self._processors.get(name)
            out.append(processor(value) if processor is not None and value is not None else value)
        return tuple(out) if self._positional else dict(zip(self._order, out))

    def first(self, values: Mapping[str, Any], dbapi: Any = None) -> tuple[Any, ...] | None:
        """Execute as its own transaction and return the first row (or None); on `dbapi`, a
        connection from `autocommit(engine)`, when several statements run back to back."""
        if dbapi is not None:
            return self._first(dbapi, values)
        with autocommit(self.engine) as own:
            return self._first(own, values)

    def _first(self, dbapi: Any, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        if self._postgres:
            row = dbapi.execute(self.sql, self.params(values)).fetchone()
        else:
            cursor = dbapi.execute(self.sql, self.params(values))
            try:
                row = cursor.fetchone()
            finally:
                cursor.close()
        if row is None or not any(self._results):
            return row
        return tuple(p(v) if p is not None and v is not None else v
                     for p, v in zip(self._results, row, strict=False))


@contextmanager
def autocommit(engine: Engine) -> Iterator[Any]:
    """A pooled raw DBAPI connection on which each statement commits by itself: one checkout
    for a hot path's few statements."""
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        # An engine made with isolation_level="AUTOCOMMIT" (the relaxed one) hands out connections
        # already so: each toggle below is a call into psycopg's wait loop, twice per heartbeat.
        if engine.dialect.name == "postgresql" and not dbapi.autocommit:
            dbapi.autocommit = True  # one statement, one round trip: no BEGIN/COMMIT
            try:
                yield dbapi
            finally:
                dbapi.autocommit = False
        else:
            # Our SQLite connections run with isolation_level=None: each statement commits.
            yield dbapi
    finally:
        raw.close()


# libpq's transaction states: PQTRANS_IDLE, PQTRANS_INTRANS (in a block), PQTRANS_INERROR (a
# statement in the block failed).
IDLE, INTRANS, INTRANS_ERROR = 0, 2, 3


def run_batch(engine: Engine, batch: Sequence[tuple[PreparedStatement, Mapping[str, Any]]]) -> None:
    """The statements in order as one transaction, committed durably before this returns. On
    PostgreSQL they go in psycopg's pipeline mode: BEGIN, every statement and COMMIT in one
    round trip, so a statement cannot use an earlier one's result (it finds that row by its key
    instead). On SQLite (in process, no round trips) they run under BEGIN IMMEDIATE. A failure
    rolls everything back and raises SQLAlchemy's exception for it (IntegrityError, ...)."""
    raw = engine.raw_connection()
    dbapi = raw.driver_connection
    sql, params = "", None
    try:
        if engine.dialect.name == "postgresql":
            # Autocommit with our own BEGIN and COMMIT: psycopg would otherwise sync its implicit
            # BEGIN and the commit separately (three round trips instead of one, seen in a
            # protocol trace).
            dbapi.autocommit = True
            try:
                with dbapi.pipeline():
                    dbapi.execute("BEGIN")
                    for statement, values in batch:
                        sql, params = statement.sql, statement.params(values)
                        dbapi.execute(sql, params)
                    dbapi.execute("COMMIT")
            finally:
                if dbapi.pgconn.transaction_status == IDLE:  # else _roll_back ends the transaction first
                    dbapi.autocommit = False
        else:
            dbapi.execute("BEGIN IMMEDIATE")
            for statement, values in batch:
                sql, params = statement.sql, statement.params(values)
                dbapi.execute(sql, params).close()
            dbapi.execute("COMMIT")
    except BaseException as exc:
        _roll_back(engine, raw, dbapi, exc)
        if isinstance(exc, engine.dialect.loaded_dbapi.Error):
            # `sql`: the last statement sent (in a pipeline the error may be an earlier one's).
            raise DBAPIError.instance(sql, params, exc, engine.dialect.loaded_dbapi.Error,
                                      dialect=engine.dialect) from exc
        raise
    finally:
        raw.close()


def _roll_back(engine: Engine, raw: Any, dbapi: Any, exc: Exception) -> None:
    # A broken connection must not go back to the pool; a live one must not keep a failed transaction.
    if isinstance(exc, engine.dialect.loaded_dbapi.Error) and engine.dialect.is_disconnect(exc, dbapi, None):
        raw.invalidate(exc)
        return
    try:
        if engine.dialect.name == "postgresql":
            if dbapi.pgconn.transaction_status in (INTRANS, INTRANS_ERROR):
                dbapi.execute("ROLLBACK")
            dbapi.autocommit = False
        elif dbapi.in_transaction:
            dbapi.execute("ROLLBACK")
    except Exception:
        raw.invalidate(exc if isinstance(exc, Exception) else None)


def _result_processor(type_: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """The type's result processor for this dialect. Some need the driver's type code, which
    a raw cursor does not give us; those (psycopg's floats) come back native anyway."""
    try:
        return type_.dialect_impl(dialect).result_processor(dialect, None)
    except (TypeError, InvalidRequestError):
        return None
