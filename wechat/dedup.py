"""Exactly-once delivery: the dedup row and the handler's work commit together, or not at all."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Executable

from handlers.messages import Inbound, Planned, is_planned, is_read_only
from models import InboundEvent
from models.base import utcnow
from models.prepared import PreparedStatement, run_batch
from wechat.inbound import dedup_key
from wechat.replies import render
from wechat.router import Router

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    reply_xml: str | None  # plaintext reply XML, or None for "success"
    duplicate: bool  # True when an earlier delivery of the same event ran the handler


def deliver(
    inbound: Inbound,
    router: Router,
    *,
    session: Callable[[], Session],
    readers: sessionmaker[Session],
    engine: Engine,
    durable: Engine,
    wait_seconds: float,
) -> Outcome:
    """Run the handler for `inbound` once across all processes and hosts.

    A flow that writes runs inside the request's transaction, whose first write is the
    dedup row: a concurrent retry of the same delivery blocks on that unique key
    (PostgreSQL) or on the write lock (SQLite) until the first transaction ends; if it
    committed, the retry finds its stored reply; if it rolled back, the retry runs the
    flow itself. The caller commits.

    A read-only flow (menu answers, lookups) computes its reply, then the dedup row is
    written with the reply in one autocommitted INSERT ... ON CONFLICT DO NOTHING on
    `engine` (the caller may pass one that commits without waiting for the disk: losing
    such a row only means a retry computes the same reply again): the one write, the one
    commit, one round trip. Two concurrent copies may both compute the reply; one row
    is kept and both answer with it.

    A planned flow (a message stored for staff) decides its reply from reads, then the dedup
    row (reply included) and the flow's writes commit as one transaction on `durable`, sent in
    one batch: a concurrent retry blocks on the dedup key as above, then finds the stored reply.
    """
    handler = router.resolve(inbound)
    if is_read_only(handler):
        return _deliver_read_only(inbound, handler, readers, engine)
    if is_planned(handler):
        return _deliver_planned(inbound, handler, readers, durable, wait_seconds)
    return _deliver_in_transaction(inbound, router, session(), wait_seconds)


def _event_values(inbound: Inbound, reply_xml: str | None = None) -> dict[str, object]:
    return dict(
        dedup_key=dedup_key(inbound),
        openid=inbound.openid,
        msg_type=inbound.msg_type,
        event=inbound.event,
        event_key=(inbound.event_key or "")[:255] or None,
        sent_at=inbound.sent_at,
        received_at=utcnow(),
        reply_xml=reply_xml,
    )


_EVENTS = InboundEvent.__table__
_COLUMNS = ("dedup_key", "openid", "msg_type", "event", "event_key", "sent_at", "received_at", "reply_xml")
# Every column bound by its own name, with its type: the event row of every path.
_EVENT_VALUES = {name: bindparam(name, type_=_EVENTS.c[name].type) for name in _COLUMNS}


def _record_once(dialect: str):  # type: ignore[no-untyped-def]
    """INSERT ... ON CONFLICT (dedup_key) DO NOTHING RETURNING id."""
    upsert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        upsert(_EVENTS)
        .values(_EVENT_VALUES)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(_EVENTS.c.id)
    )


@lru_cache(maxsize=16)
def _prepared(engine: Engine) -> tuple[PreparedStatement, PreparedStatement]:
    """The read-only path's two statements, compiled once per engine."""
    stored = select(_EVENTS.c.reply_xml).where(_EVENTS.c.dedup_key == bindparam("dedup_key"))
    return PreparedStatement(engine, _record_once(engine.dialect.name)), PreparedStatement(engine, stored)


def _deliver_read_only(inbound: Inbound, handler, readers: sessionmaker[Session], engine: Engine) -> Outcome:  # type: ignore[no-untyped-def]
    reply_xml = None
    if handler is not None:
        with readers() as session:
            reply = handler(session, inbound)
        reply_xml = render(reply, inbound) if reply is not None else None
    values = _event_values(inbound, reply_xml)
    record, stored_reply = _prepared(engine)
    if record.first(values) is not None:
        return Outcome(reply_xml, duplicate=False)
    row = stored_reply.first({"dedup_key": values["dedup_key"]})
    return Outcome(row[0] if row else None, duplicate=True)


# The writing path's statements, built once: constructing them per delivery (coercing every value,
# the generative calls) cost more than running them (bench/webhook --profile, text messages).
# A planned flow's claim carries its reply already; a writing flow's returns the id to store it by.
_CLAIM_WITH_REPLY = insert(_EVENTS).values(_EVENT_VALUES)
_CLAIM = _CLAIM_WITH_REPLY.returning(_EVENTS.c.id)
_STORE_REPLY = update(_EVENTS).where(_EVENTS.c.id == bindparam("event_id")).values(
    reply_xml=bindparam("reply", type_=_EVENTS.c.reply_xml.type))


@lru_cache(maxsize=64)
def _compiled(engine: Engine, statement: Executable) -> PreparedStatement:
    """A planned flow's statement compiled once per engine (flows build their statements once)."""
    return PreparedStatement(engine, statement)


def _deliver_planned(inbound: Inbound, handler, readers: sessionmaker[Session], durable: Engine,  # type: ignore[no-untyped-def]
                     wait_seconds: float) -> Outcome:
    with readers() as session:
        plan: Planned = handler(session, inbound)
    reply_xml = render(plan.reply, inbound) if plan.reply is not None else None
    values = _event_values(inbound, reply_xml)
    batch = [(_compiled(durable, _CLAIM_WITH_REPLY), values),
             *((_compiled(durable, write.statement), write.values) for write in plan.writes)]
    try:
        run_batch(durable, batch)
    except IntegrityError:
        # The dedup row is the batch's first statement: if it exists, that is what failed.
        row = _prepared(durable)[1].first({"dedup_key": values["dedup_key"]})
        if row is None:
            raise
        log.info("duplicate delivery answered from the first")
        return Outcome(row[0], duplicate=True)
    except OperationalError as exc:
        if not _is_lock_timeout(exc):
            raise
        log.warning("duplicate delivery still in flight after %.1fs", wait_seconds)
        return Outcome(None, duplicate=True)
    return Outcome(reply_xml, duplicate=False)


def _deliver_in_transaction(inbound: Inbound, router: Router, session: Session, wait_seconds: float) -> Outcome:
    values = _event_values(inbound)
    try:
        # The transaction's first write; PostgreSQL's lock_timeout (set per connection)
        # bounds how long a retry waits here for a slow first delivery.
        event_id = session.execute(_CLAIM, values).scalar_one()
    except IntegrityError:
        session.rollback()
        stored = session.scalar(select(InboundEvent.reply_xml).where(InboundEvent.dedup_key == values["dedup_key"]))
        log.info("duplicate delivery answered from the first")
        return Outcome(stored, duplicate=True)
    except OperationalError as exc:
        if not _is_lock_timeout(exc):
            raise
        session.rollback()
        # The first delivery is still running past the window; it owns the reply.
        log.warning("duplicate delivery still in flight after %.1fs", wait_seconds)
        return Outcome(None, duplicate=True)
    reply = router.dispatch(session, inbound)
    reply_xml = render(reply, inbound) if reply is not None else None
    if reply_xml is not None:
        # By id, without loading the row first: one round trip.
        session.execute(_STORE_REPLY, {"event_id": event_id, "reply": reply_xml})
    return Outcome(reply_xml, duplicate=False)


def _is_lock_timeout(exc: OperationalError) -> bool:
    # PostgreSQL lock_not_available (55P03); SQLite reports "database is locked".
    code = getattr(exc.orig, "sqlstate", None)
    return code == "55P03" or "database is locked" in str(exc.orig)
