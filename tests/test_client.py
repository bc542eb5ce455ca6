"""Tests for the WeChat API client and the shared token store, over real HTTP to the fake server."""
from __future__ import annotations

import io
import os
import threading
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete
from wechatpy.exceptions import APILimitedException, WeChatClientException

from models.base import Base, utcnow
from models.engine import make_engine
from models.wechat_token import WeChatToken
from wechat.client import WeChatTransportError, XinweiWeChatClient, make_wechat_client
from wechat.fake import FakeWeChatServer
from wechat.tokens import (
    DatabaseTokenStore,
    LocalCache,
    RedisTokenStore,
    StoredToken,
    TokenStoreError,
    make_token_store,
)

# Unique per run, so rows left in a shared PostgreSQL database or Redis never leak between runs.
APP_ID = "wxt" + uuid.uuid4().hex[:13]
SECRET = "client0test0secret00000000000000"
REDIS_URL = "redis://127.0.0.1:6379/15"
MENU_GET = "/cgi-bin/menu/get"
TOKEN = "/cgi-bin/token"


@pytest.fixture(scope="module")
def server():
    with FakeWeChatServer(APP_ID, SECRET) as srv:
        yield srv


@pytest.fixture
def fake(server):
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def store(sqlite_url):
    engine = make_engine(sqlite_url)
    store = DatabaseTokenStore(engine)
    yield store
    store.close()
    engine.dispose()


def make_client(fake, store, **kwargs) -> XinweiWeChatClient:
    kwargs.setdefault("timeout", 2.0)
    return XinweiWeChatClient(APP_ID, SECRET, api_base=fake.base_url, token_store=store, **kwargs)


def _redis_client():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis at " + REDIS_URL)
    return client


class Backend:
    """Makes store instances that share one backing store, like workers on different hosts."""

    def __init__(self, kind, url=None, prefix=None):
        self.kind, self.url, self.prefix = kind, url, prefix
        self.engines = []
        self.redis_clients = []

    def new_store(self):
        if self.kind == "redis":
            client = _redis_client()
            self.redis_clients.append(client)
            return RedisTokenStore(client, prefix=self.prefix)
        engine = make_engine(self.url)
        store = DatabaseTokenStore(engine)
        self.engines.append((store, engine))
        return store

    def close(self):
        for store, engine in self.engines:
            store.close()
            engine.dispose()
        for client in self.redis_clients:
            client.close()


BACKENDS = ["sqlite", "postgresql", "redis"]


@pytest.fixture(params=BACKENDS)
def backend(request, sqlite_url):
    kind = request.param
    if kind == "sqlite":
        b = Backend("sqlite", sqlite_url)
        yield b
        b.close()
        return
    if kind == "postgresql":
        if not os.environ.get("TEST_DATABASE_URL"):
            pytest.skip("TEST_DATABASE_URL not set")
        # conftest's per-run database, migrated to head (wechat_tokens included).
        url = request.getfixturevalue("database_url")
        engine = make_engine(url)
        names = [f"access_token:{APP_ID}", f"jsapi_ticket:{APP_ID}"]
        clean = delete(WeChatToken.__table__).where(WeChatToken.__table__.c.name.in_(names))
        with engine.begin() as conn:
            conn.execute(clean)
        b = Backend("postgresql", url)
        yield b
        b.close()
        with engine.begin() as conn:
            conn.execute(clean)
        engine.dispose()
        return
    client = _redis_client()
    prefix = f"xinwei-test-{uuid.uuid4().hex[:8]}:"
    b = Backend("redis", prefix=prefix)
    yield b
    b.close()
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)
    client.close()


def run_threads(count, target):
    """Start `count` threads at one barrier; return their results, re-raising the first error."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def run(i):
        try:
            barrier.wait(timeout=5)
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    if errors:
        raise errors[0]
    return results


# -- fetching and caching ------------------------------------------------------------------

def test_one_fetch_serves_many_calls_and_workers(fake, store):
    client = make_client(fake, store)
    for _ in range(10):
        assert client.menu.get() is None  # 46003 "menu no exist" is wechatpy's None
    other_worker = make_client(fake, store)
    other_worker.menu.get()
    assert fake.token_fetch_count == 1
    assert len(fake.requests(MENU_GET)) == 11
    fetch = fake.requests(TOKEN)[0]
    assert fetch["query"]["appid"] == APP_ID and fetch["query"]["grant_type"] == "client_credential"
    stored = store.get(f"access_token:{APP_ID}")
    assert stored is not None and stored.expires_at > utcnow() + timedelta(seconds=7000)


def test_all_calls_use_configured_base(fake, store):
    client = make_client(fake, store)
    assert client.API_BASE_URL == fake.base_url + "/cgi-bin/"
    # wechatpy APIs that spell out the real host are sent to the configured base too.
    with pytest.raises(WeChatClientException) as info:
        client.get("https://api.weixin.qq.com/cgi-bin/menu/get")
    assert info.value.errcode == 46003
    assert len(fake.requests(MENU_GET)) == 1


def test_40001_refreshes_once_and_retries_once(fake, store):
    client = make_client(fake, store)
    client.menu.get()
    fake.expire_tokens(invalidate=True)
    assert client.menu.get() is None
    assert fake.token_fetch_count == 2
    assert len(fake.requests(MENU_GET)) == 3


def test_still_failing_after_refresh_raises_without_looping(fake, store):
    seen = []
    client = make_client(fake, store, on_error=lambda path, errcode: seen.append((path, errcode)))
    fake.fail(MENU_GET, errcode=40001, times=5)
    with pytest.raises(WeChatClientException) as info:
        client.menu.get()
    assert info.value.errcode == 40001
    assert len(fake.requests(MENU_GET)) == 2
    assert fake.token_fetch_count == 2
    assert seen == [(MENU_GET, 40001)]


def test_42001_expired_token_is_refreshed(fake, store):
    client = make_client(fake, store)
    client.menu.get()
    fake.advance(7200)  # the fake's clock only: the store still believes the token is fresh
    assert client.menu.get() is None
    assert fake.token_fetch_count == 2


def test_40014_malformed_token_is_refreshed(fake, store):
    client = make_client(fake, store)
    fake.fail(MENU_GET, errcode=40014)
    assert client.menu.get() is None
    assert fake.token_fetch_count == 2


def test_other_errcodes_raise_without_refresh(fake, store):
    client = make_client(fake, store)
    fake.fail(MENU_GET, errcode=45009)
    with pytest.raises(APILimitedException) as info:
        client.menu.get()
    assert info.value.errcode == 45009
    with pytest.raises(WeChatClientException) as info:
        client.post("message/custom/send", data={"touser": "o", "msgtype": "bogus"})
    assert info.value.errcode == 40008
    assert fake.token_fetch_count == 1


def test_bad_secret_raises_and_stores_nothing(fake, store):
    client = XinweiWeChatClient(APP_ID, "wrong-secret", api_base=fake.base_url, token_store=store, timeout=2)
    with pytest.raises(WeChatClientException) as info:
        client.menu.get()
    assert info.value.errcode == 40125
    assert store.get(f"access_token:{APP_ID}") is None
    assert "wrong-secret" not in str(info.value)


def test_jsapi_ticket_is_shared(fake, store):
    client = make_client(fake, store)
    ticket = client.jsapi_ticket()
    assert ticket == client.jsapi_ticket() == make_client(fake, store).jsapi_ticket()
    assert len(fake.requests("/cgi-bin/ticket/getticket")) == 1
    assert fake.requests("/cgi-bin/ticket/getticket")[0]["query"]["type"] == "jsapi"


def test_jsapi_ticket_fetch_refreshes_a_rejected_token_once(fake, store):
    client = make_client(fake, store)
    fake.fail("/cgi-bin/ticket/getticket", errcode=40001)
    assert client.jsapi_ticket()
    assert fake.token_fetch_count == 2
    # Make the stored ticket due for refresh, then keep rejecting: one retry, then the error.
    store.refresh(f"jsapi_ticket:{APP_ID}", lambda: ("nearly-expired", 60), stale=client.jsapi_ticket())
    fake.fail("/cgi-bin/ticket/getticket", errcode=40001, times=3)
    with pytest.raises(WeChatClientException) as info:
        make_client(fake, store).jsapi_ticket()
    assert info.value.errcode == 40001
    assert len(fake.requests("/cgi-bin/ticket/getticket")) == 4
    assert fake.token_fetch_count == 3


def test_upload_is_resent_whole_after_token_refresh(fake, store):
    client = make_client(fake, store)
    client.menu.get()
    fake.expire_tokens(invalidate=True)
    data = b"\x89PNG certificate bytes"
    result = client.media.upload("image", io.BytesIO(data))
    assert result["type"] == "image" and result["media_id"]
    assert len(fake.requests("/cgi-bin/media/upload")) == 2
    assert fake.state.media[result["media_id"]]["size"] == len(data)


def test_template_and_custom_messages_through_client(fake, store):
    client = make_client(fake, store)
    body = {"touser": "o_admin", "template_id": "TPL", "data": {"thing1": {"value": "进度"}},
            "client_msg_id": "c-1"}
    first = client.post("message/template/send", data=body)
    again = client.post("message/template/send", data=body)
    assert first["msgid"] == again["msgid"]
    fake.set_user("o_student", in_window=False)
    with pytest.raises(WeChatClientException) as info:
        client.message.send_text("o_student", "你好")
    assert info.value.errcode == 45015


# -- one refresher at a time ----------------------------------------------------------------

def test_concurrent_first_fetch_is_single(fake, backend):
    stores = [backend.new_store(), backend.new_store()]  # two hosts
    fake.fail(TOKEN, delay=0.3)  # a slow fetch, so the others really wait on the lock
    tokens = run_threads(8, lambda i: make_client(fake, stores[i % 2]).access_token)
    assert len(set(tokens)) == 1
    assert fake.token_fetch_count == 1


def test_concurrent_40001_refresh_is_single(fake, backend):
    stores = [backend.new_store(), backend.new_store()]
    make_client(fake, stores[0]).menu.get()
    fake.expire_tokens(invalidate=True)
    fake.fail(TOKEN, delay=0.3)
    run_threads(8, lambda i: make_client(fake, stores[i % 2]).menu.get())
    assert fake.token_fetch_count == 2
    assert len(fake.requests(MENU_GET)) == 1 + 8 * 2


def test_refresh_reuses_a_value_another_worker_stored(backend):
    store = backend.new_store()
    calls = []

    def fetch():
        calls.append(1)
        return f"value-{len(calls)}", 7200

    assert store.refresh("access_token:" + APP_ID, fetch) == "value-1"
    # A worker that saw an older value fail finds value-1 fresh: no fetch.
    assert store.refresh("access_token:" + APP_ID, fetch, stale="value-0") == "value-1"
    # The worker that saw value-1 itself fail does fetch.
    assert store.refresh("access_token:" + APP_ID, fetch, stale="value-1") == "value-2"
    assert len(calls) == 2
    got = backend.new_store().get("access_token:" + APP_ID)
    assert got.value == "value-2" and got.expires_at > utcnow() + timedelta(seconds=7100)


def test_token_near_expiry_is_refreshed_before_use(backend):
    store = backend.new_store()
    name = "jsapi_ticket:" + APP_ID
    store.refresh(name, lambda: ("short", 240))  # inside the 5-minute stale margin
    cache = LocalCache(store)
    assert not store.is_fresh(store.get(name))
    assert cache.get(name, lambda: ("long", 7200)) == "long"
    assert cache.get(name, lambda: pytest.fail("cached value should be used")) == "long"


# -- transport failures -----------------------------------------------------------------------

def test_slow_api_call_times_out_quickly(fake, store):
    client = make_client(fake, store, timeout=0.3)
    client.menu.get()
    fake.fail(MENU_GET, delay=1.5)
    started = time.monotonic()
    with pytest.raises(WeChatTransportError) as info:
        client.menu.get()
    assert time.monotonic() - started < 1.2
    assert info.value.errcode is None and "timed out" in info.value.errmsg


def test_slow_token_fetch_times_out(fake, store):
    client = make_client(fake, store, timeout=0.3)
    fake.fail(TOKEN, delay=1.5)
    started = time.monotonic()
    with pytest.raises(WeChatTransportError):
        client.menu.get()
    assert time.monotonic() - started < 1.2
    assert store.get(f"access_token:{APP_ID}") is None


def test_dropped_connection_is_a_clear_error(fake, store):
    seen = []
    client = make_client(fake, store, on_error=lambda path, errcode: seen.append((path, errcode)))
    client.menu.get()
    seen.clear()  # that call's 46003 was reported too
    token = store.get(f"access_token:{APP_ID}").value
    fake.fail(MENU_GET, drop=True)
    with pytest.raises(WeChatTransportError) as info:
        client.menu.get()
    assert "connection" in info.value.errmsg and MENU_GET in info.value.errmsg
    assert token not in str(info.value)
    assert seen == [(MENU_GET, None)]
    assert client.menu.get() is None  # the next call works


def test_dropped_token_fetch_does_not_leak_secret(fake, store):
    client = make_client(fake, store)
    fake.fail(TOKEN, drop=True)
    with pytest.raises(WeChatTransportError) as info:
        _ = client.access_token
    assert SECRET not in str(info.value)


def test_unreachable_server(store):
    client = XinweiWeChatClient(APP_ID, SECRET, api_base="http://127.0.0.1:9", token_store=store, timeout=1)
    with pytest.raises(WeChatTransportError) as info:
        _ = client.access_token
    assert SECRET not in str(info.value)


# -- factories -----------------------------------------------------------------------------------

def test_make_wechat_client_from_config(fake, store):
    config = {"WECHAT_APP_ID": APP_ID, "WECHAT_APP_SECRET": SECRET, "WECHAT_API_BASE": fake.base_url + "/",
              "WECHAT_HTTP_TIMEOUT": 1.5}
    client = make_wechat_client(config, store)
    assert client.timeout == 1.5 and client.api_base == fake.base_url
    assert client.menu.get() is None


def test_make_token_store_picks_backend(store):
    assert isinstance(make_token_store(store.engine, None), DatabaseTokenStore)
    assert isinstance(make_token_store(store.engine, REDIS_URL), RedisTokenStore)
    with pytest.raises(TokenStoreError):
        make_token_store(None, None)


def test_stored_token_is_a_pair():
    value, expires_at = StoredToken("v", utcnow())
    assert value == "v" and expires_at.tzinfo is not None


def test_a_refresher_that_died_holding_the_redis_lock_delays_but_does_not_fail_others():
    """A worker killed mid-refresh leaves the lock behind; it expires and the next worker fetches."""
    import time
    import uuid as _uuid

    client = _redis_client()
    prefix = f"xinwei-test-{_uuid.uuid4().hex[:8]}:"
    store = RedisTokenStore(client, prefix=prefix, lock_timeout=1.0, lock_wait=3.0)
    # The dead worker's lock: taken and never released.
    client.set(f"{prefix}wechat_token_lock:access_token:x", "dead-worker", px=1000)
    started = time.monotonic()
    value = store.refresh("access_token:x", lambda: ("fresh-token", 7200))
    waited = time.monotonic() - started
    assert value == "fresh-token"
    assert 0.5 < waited < 3.0  # it waited for the dead holder's lock to expire, then fetched
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()
