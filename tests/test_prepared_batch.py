"""run_batch: one transaction sent as one batch; a failure keeps nothing and leaves the pooled connection clean."""
from __future__ import annotations

import pytest
from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.exc import IntegrityError

from models import InboundEvent, User
from models.base import utcnow
from models.engine import make_engine
from models.prepared import PreparedStatement, run_batch

_USERS = User.__table__
_NEW_USER = insert(_USERS).values(openid=bindparam("openid"), subscribed=False, created_at=bindparam("now"))
_EVENT = insert(InboundEvent.__table__).values(
    dedup_key=bindparam("key"), openid=bindparam("openid"), msg_type="text", sent_at=bindparam("now"),
    received_at=bindparam("now"))


@pytest.fixture()
def engine(database_url: str, app):  # type: ignore[no-untyped-def]
    # `app` empties the tables afterwards; a pool of one makes every call reuse the same connection.
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _openids(engine) -> list[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return list(conn.scalars(select(_USERS.c.openid).where(_USERS.c.openid.like("o_batch_%"))
                                 .order_by(_USERS.c.openid)))


def _usable(engine) -> None:  # type: ignore[no-untyped-def]
    """The pooled connection is back in a normal, non-autocommit state: a rolled-back insert is gone."""
    with engine.connect() as conn:
        conn.execute(_NEW_USER, {"openid": "o_batch_rolled_back", "now": utcnow()})
        conn.rollback()
        assert conn.scalar(text("SELECT 1")) == 1
    assert "o_batch_rolled_back" not in _openids(engine)


def test_a_batch_commits_every_statement_and_takes_literal_values(engine) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    user, event = PreparedStatement(engine, _NEW_USER), PreparedStatement(engine, _EVENT)
    run_batch(engine, [(user, {"openid": "o_batch_a", "now": now}),
                       (event, {"key": "k-batch-a", "openid": "o_batch_a", "now": now})])
    assert _openids(engine) == ["o_batch_a"]
    with engine.connect() as conn:
        assert conn.scalar(select(InboundEvent.msg_type).where(InboundEvent.dedup_key == "k-batch-a")) == "text"
    _usable(engine)


def test_a_failing_statement_keeps_nothing_of_the_batch(engine) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    user = PreparedStatement(engine, _NEW_USER)
    run_batch(engine, [(user, {"openid": "o_batch_first", "now": now})])
    with pytest.raises(IntegrityError):
        # The second user is new, the third repeats the first: the whole batch is refused.
        run_batch(engine, [(user, {"openid": "o_batch_second", "now": now}),
                           (user, {"openid": "o_batch_first", "now": now})])
    assert _openids(engine) == ["o_batch_first"]
    _usable(engine)
    run_batch(engine, [(user, {"openid": "o_batch_third", "now": now})])
    assert _openids(engine) == ["o_batch_first", "o_batch_third"]


def test_a_python_error_mid_batch_keeps_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    user = PreparedStatement(engine, _NEW_USER)
    with pytest.raises(KeyError):
        # The second statement's values lack a bind: raised while the batch is being sent.
        run_batch(engine, [(user, {"openid": "o_batch_half", "now": now}), (user, {"now": now})])
    assert _openids(engine) == []
    _usable(engine)
