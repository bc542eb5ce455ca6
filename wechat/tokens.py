"""The shared WeChat token store (access_token, jsapi_ticket): one value for all workers and hosts."""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite

from models.base import utcnow
from models.engine import make_engine
from models.wechat_token import WeChatToken

logger = logging.getLogger(__name__)

# Refresh this long before WeChat's expiry, so no call goes out with a token that dies in flight.
DEFAULT_STALE_MARGIN = timedelta(minutes=5)

Fetch = Callable[[], tuple[str, int]]
"""Fetches a new value from WeChat: returns (value, expires_in seconds)."""


class StoredToken(NamedTuple):
    value: str
    expires_at: datetime


class TokenStoreError(RuntimeError):
    """The store could not give a token (e.g. the refresh lock was not acquired in time)."""


class TokenStore(Protocol):
    stale_margin: timedelta

    def get(self, name: str) -> StoredToken | None: ...

    def refresh(self, name: str, fetch: Fetch, stale: str | None = None) -> str: ...

    def refresh_token(self, name: str, fetch: Fetch, stale: str | None = None) -> StoredToken: ...

    def is_fresh(self, token: StoredToken | None) -> bool: ...


class _StoreBase:
    stale_margin: timedelta

    def is_fresh(self, token: StoredToken | None, now: datetime | None = None) -> bool:
        """True when the token exists and is not within stale_margin of its expiry."""
        if token is None or not token.value:
            return False
        return token.expires_at - self.stale_margin > (now or utcnow())

    def refresh(self, name: str, fetch: Fetch, stale: str | None = None) -> str:
        """The current value of `name`, fetching a new one unless another worker just did.

        `stale` is the value the caller saw fail or near expiry (None if it saw nothing).
        Only one worker at a time runs `fetch`; the others wait, then reuse its result.
        """
        return self.refresh_token(name, fetch, stale).value

    def refresh_token(self, name: str, fetch: Fetch, stale: str | None = None) -> StoredToken:
        raise NotImplementedError

    def _reuse(self, current: StoredToken | None, stale: str | None) -> bool:
        # Another worker refreshed while we waited for the lock: its value differs from
        # the one we saw fail (or expire) and is still good, so fetching again would
        # only burn the daily quota and invalidate everyone else's token.
        return current is not None and current.value != stale and self.is_fresh(current)

    @staticmethod
    def _fetch(name: str, fetch: Fetch) -> StoredToken:
        value, expires_in = fetch()
        logger.info("refreshed WeChat token %s (expires in %s s)", name, expires_in)
        return StoredToken(value, utcnow() + timedelta(seconds=int(expires_in)))


class DatabaseTokenStore(_StoreBase):
    """Tokens in the wechat_tokens table, each refresh in its own short transaction on `engine`.

    PostgreSQL: the row is inserted if missing, then locked with SELECT ... FOR UPDATE.
    SQLite: the engine emits BEGIN IMMEDIATE, which already serialises every writer; the
    fetch happens inside that transaction, so it is bounded by the HTTP timeout. Reads go
    through a second engine with deferred transactions, so they never wait for a writer
    (WAL lets readers and one writer run side by side).
    """

    def __init__(self, engine: Engine, *, stale_margin: timedelta = DEFAULT_STALE_MARGIN) -> None:
        self.engine = engine
        self.stale_margin = stale_margin
        self._table = WeChatToken.__table__
        self._reader = engine
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            self._reader = make_engine(engine.url.render_as_string(hide_password=False), immediate=False)

    def close(self) -> None:
        """Release the reader engine this store made (the given engine belongs to the caller)."""
        if self._reader is not self.engine:
            self._reader.dispose()

    def get(self, name: str) -> StoredToken | None:
        t = self._table
        with self._reader.connect() as conn:
            row = conn.execute(select(t.c.value, t.c.expires_at).where(t.c.name == name)).first()
            conn.rollback()
        return _row_token(row)

    def refresh_token(self, name: str, fetch: Fetch, stale: str | None = None) -> StoredToken:
        t = self._table
        with self.engine.begin() as conn:
            self._insert_if_missing(conn, name)
            row = conn.execute(
                select(t.c.value, t.c.expires_at).where(t.c.name == name).with_for_update()
            ).first()
            current = _row_token(row)
            if self._reuse(current, stale):
                assert current is not None
                return current
            new = self._fetch(name, fetch)
            conn.execute(update(t).where(t.c.name == name)
                         .values(value=new.value, expires_at=new.expires_at))
            return new

    def _insert_if_missing(self, conn: Any, name: str) -> None:
        dialect = conn.dialect.name
        values = {"name": name, "value": None, "expires_at": None, "updated_at": utcnow()}
        if dialect == "postgresql":
            stmt = postgresql.insert(self._table).values(**values).on_conflict_do_nothing()
        elif dialect == "sqlite":
            stmt = sqlite.insert(self._table).values(**values).on_conflict_do_nothing()
        else:  # pragma: no cover - only the two supported backends are tested
            raise TokenStoreError(f"unsupported database for the token store: {dialect}")
        conn.execute(stmt)


def _row_token(row: Any) -> StoredToken | None:
    if row is None or not row.value or row.expires_at is None:
        return None
    return StoredToken(row.value, row.expires_at)


class RedisTokenStore(_StoreBase):
    """Tokens in Redis under `{prefix}wechat_token:{name}`; refresh under a redis-py lock."""

    def __init__(self, redis_client: Any, prefix: str = "xinwei:", *,
                 stale_margin: timedelta = DEFAULT_STALE_MARGIN, lock_timeout: float = 15.0,
                 lock_wait: float = 20.0) -> None:
        self.redis = redis_client
        self.prefix = prefix
        self.stale_margin = stale_margin
        # The lock expires by itself if its holder dies mid-fetch; it must outlive a slow fetch.
        # The lock outlives one fetch (an HTTP timeout of 5 s, twice over) but not by much: a
        # worker killed while holding it blocks every host's refresh until it expires. Waiters
        # wait longer than that, so a dead holder costs a delay, not a failed job.
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait

    def _key(self, name: str) -> str:
        return f"{self.prefix}wechat_token:{name}"

    def get(self, name: str) -> StoredToken | None:
        raw = self.redis.get(self._key(name))
        if raw is None:
            return None
        data = json.loads(raw)
        return StoredToken(data["value"], datetime.fromtimestamp(data["expires_at"], timezone.utc))

    def refresh_token(self, name: str, fetch: Fetch, stale: str | None = None) -> StoredToken:
        lock = self.redis.lock(f"{self.prefix}wechat_token_lock:{name}", timeout=self.lock_timeout,
                               blocking_timeout=self.lock_wait)
        if not lock.acquire():
            raise TokenStoreError(f"timed out waiting for the refresh lock of {name}")
        try:
            current = self.get(name)
            if self._reuse(current, stale):
                assert current is not None
                return current
            new = self._fetch(name, fetch)
            ttl = max(1, int((new.expires_at - utcnow()).total_seconds()))
            payload = json.dumps({"value": new.value, "expires_at": new.expires_at.timestamp()})
            self.redis.set(self._key(name), payload, ex=ttl)
            return new
        finally:
            try:
                lock.release()
            except Exception:  # the lock expired under a very slow fetch; nothing left to free
                logger.warning("refresh lock for %s expired before release", name)


def make_token_store(engine: Engine | None, redis_url: str | None = None, *, prefix: str = "xinwei:",
                     stale_margin: timedelta = DEFAULT_STALE_MARGIN) -> DatabaseTokenStore | RedisTokenStore:
    """Redis when a URL is configured (many hosts, fast), else the database table."""
    if redis_url:
        import redis

        return RedisTokenStore(redis.Redis.from_url(redis_url), prefix, stale_margin=stale_margin)
    if engine is None:
        raise TokenStoreError("a token store needs a database engine or a Redis URL")
    return DatabaseTokenStore(engine, stale_margin=stale_margin)


class LocalCache:
    """A short in-process cache in front of a TokenStore, so most calls skip the shared store."""

    def __init__(self, store: TokenStore, max_age: float = 60.0) -> None:
        self.store = store
        self.max_age = timedelta(seconds=max_age)
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[StoredToken, datetime]] = {}

    def get(self, name: str, fetch: Fetch) -> str:
        now = utcnow()
        with self._lock:
            entry = self._entries.get(name)
        if entry is not None and entry[1] > now and self.store.is_fresh(entry[0]):
            return entry[0].value
        token = self.store.get(name)
        if token is None or not self.store.is_fresh(token):
            token = self.store.refresh_token(name, fetch, stale=token.value if token else None)
        self._remember(name, token)
        return token.value

    def refresh(self, name: str, fetch: Fetch, stale: str) -> str:
        """WeChat rejected `stale`: get a newer value (fetched by us or by another worker)."""
        self.forget(name)
        token = self.store.refresh_token(name, fetch, stale=stale)
        self._remember(name, token)
        return token.value

    def forget(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)

    def _remember(self, name: str, token: StoredToken) -> None:
        with self._lock:
            self._entries[name] = (token, utcnow() + self.max_age)
