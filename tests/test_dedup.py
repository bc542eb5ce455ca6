"""Exactly-once handling of WeChat's retries, including concurrent and failed deliveries."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import insert, select

from database import get_database
from handlers.inbox.student import ACKNOWLEDGEMENT, receive_text
from handlers.messages import Planned, TextReply, Write, planned, run_planned
from models import Conversation, InboundEvent, InboxMessage
from models.base import utcnow
from tests.conftest import LiveServer, count, make_test_app
from wechat.router import Router
from wechat.routes import build_router
from wechat.webhook import ROUTER_EXTENSION


def post(client, delivery):  # type: ignore[no-untyped-def]
    return client.post("/wechat?" + delivery.query, data=delivery.body)




class CountingHandler:
    """Stores the text like the real flow does and counts runs; optionally slow or failing."""

    def __init__(self, delay: float = 0.0, fail_first: bool = False) -> None:
        self.runs = 0
        self.delay = delay
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def __call__(self, session, inbound):  # type: ignore[no-untyped-def]
        with self._lock:
            self.runs += 1
            run = self.runs
        run_planned(session, receive_text(session, inbound))  # a sub-flow: its writes go through the session
        time.sleep(self.delay)
        if self.fail_first and run == 1:
            raise RuntimeError("first delivery crashes after writing")
        return TextReply(f"run {run}")


def all_at_once(live_server, delivery, copies: int) -> list[requests.Response]:  # type: ignore[no-untyped-def]
    """`copies` of one delivery posted at the same moment (released together by a barrier)."""
    barrier = threading.Barrier(copies)

    def send(_: int) -> requests.Response:
        barrier.wait()
        return requests.post(f"{live_server.url}/wechat?{delivery.query}", data=delivery.body, timeout=20)

    with ThreadPoolExecutor(copies) as pool:
        return list(pool.map(send, range(copies)))


def use_handler(app, handler: CountingHandler) -> None:  # type: ignore[no-untyped-def]
    router = Router()
    router.on_message("text", handler)
    app.extensions[ROUTER_EXTENSION] = router


def test_retried_message_runs_once_and_gets_the_same_reply(app, client, wechat, db_session) -> None:
    handler = CountingHandler()
    use_handler(app, handler)
    delivery = wechat.deliver(wechat.text("o_dup", "你好", msg_id=777), mode="safe")
    replies = [wechat.open_reply(post(client, delivery).get_data()) for _ in range(4)]
    assert handler.runs == 1
    assert {r["Content"] for r in replies} == {"run 1"}
    assert count(db_session, InboxMessage) == 1
    assert count(db_session, InboundEvent) == 1


def test_retry_with_new_signature_and_nonce_is_still_a_duplicate(app, client, wechat, db_session) -> None:
    # WeChat re-signs each retry; the dedup key comes from the message, not the envelope.
    handler = CountingHandler()
    use_handler(app, handler)
    xml = wechat.text("o_dup", "你好", msg_id=778)
    for mode in ("plain", "safe", "compatible"):
        assert post(client, wechat.deliver(xml, mode=mode)).status_code == 200
    assert handler.runs == 1


def test_events_dedup_by_sender_time_event_and_key(client, wechat, db_session) -> None:
    same = wechat.event("o_e", "CLICK", "FAQ", created=1_700_000_000)
    for _ in range(3):
        post(client, wechat.deliver(same))
    post(client, wechat.deliver(wechat.event("o_e", "CLICK", "GUIDE", created=1_700_000_000)))
    post(client, wechat.deliver(wechat.event("o_e", "CLICK", "FAQ", created=1_700_000_001)))
    post(client, wechat.deliver(wechat.event("o_other", "CLICK", "FAQ", created=1_700_000_000)))
    assert count(db_session, InboundEvent) == 4


def test_same_msgid_from_two_senders_is_two_messages(client, wechat, db_session) -> None:
    post(client, wechat.deliver(wechat.text("o_a", "x", msg_id=5)))
    post(client, wechat.deliver(wechat.text("o_b", "y", msg_id=5)))
    assert count(db_session, InboxMessage) == 2


def test_concurrent_duplicates_run_the_handler_exactly_once(app, wechat, db_session, live_server) -> None:
    handler = CountingHandler(delay=0.3)
    use_handler(app, handler)
    delivery = wechat.deliver(wechat.text("o_race", "同时到达", msg_id=9001), mode="safe")
    responses = all_at_once(live_server, delivery, 8)
    assert [r.status_code for r in responses] == [200] * 8
    assert {wechat.open_reply(r.content)["Content"] for r in responses} == {"run 1"}
    assert handler.runs == 1
    assert count(db_session, InboxMessage) == 1


def test_many_distinct_messages_at_once_are_all_kept(app, wechat, db_session, live_server) -> None:
    app.extensions[ROUTER_EXTENSION] = build_router()
    deliveries = [wechat.deliver(wechat.text(f"o_{i % 5}", f"第{i}条", msg_id=10_000 + i)) for i in range(40)]

    def send(d) -> int:  # type: ignore[no-untyped-def]
        return requests.post(f"{live_server.url}/wechat?{d.query}", data=d.body, timeout=20).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(send, deliveries)) == {200}
    assert count(db_session, InboxMessage) == 40
    assert count(db_session, InboundEvent) == 40


def test_failed_delivery_keeps_nothing_and_the_retry_runs_it(app, client, wechat, db_session) -> None:
    handler = CountingHandler(fail_first=True)
    use_handler(app, handler)
    delivery = wechat.deliver(wechat.text("o_fail", "在吗", msg_id=31))
    first = post(client, delivery)
    assert first.status_code == 503
    assert count(db_session, InboundEvent) == 0 and count(db_session, InboxMessage) == 0
    retry = post(client, delivery)
    assert wechat.open_reply(retry.get_data())["Content"] == "run 2"
    assert count(db_session, InboxMessage) == 1


def test_retry_waiting_on_a_failing_first_delivery_runs_the_handler_itself(
    app, wechat, db_session, live_server
) -> None:
    handler = CountingHandler(delay=0.5, fail_first=True)
    use_handler(app, handler)
    delivery = wechat.deliver(wechat.text("o_fail2", "在吗", msg_id=32))
    url = f"{live_server.url}/wechat?{delivery.query}"
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(requests.post, url, data=delivery.body, timeout=20)
        time.sleep(0.15)  # the retry arrives while the first is still inside its handler
        retry = pool.submit(requests.post, url, data=delivery.body, timeout=20)
        assert first.result().status_code == 503
        assert wechat.open_reply(retry.result().content)["Content"] == "run 2"
    assert handler.runs == 2
    assert count(db_session, InboxMessage) == 1


def test_retry_does_not_wait_forever_for_a_slow_first_delivery(app, database_url, wechat, db_session) -> None:
    # The wait is a property of the connection (PostgreSQL lock_timeout), set when the app starts.
    impatient = make_test_app(database_url, WECHAT_DEDUP_WAIT=0.3)
    handler = CountingHandler(delay=3.0)
    use_handler(impatient, handler)
    delivery = wechat.deliver(wechat.text("o_slow", "慢", msg_id=33))
    with LiveServer(impatient) as server, ThreadPoolExecutor(2) as pool:
        url = f"{server.url}/wechat?{delivery.query}"
        first = pool.submit(requests.post, url, data=delivery.body, timeout=20)
        time.sleep(0.2)
        started = time.monotonic()
        retry = pool.submit(requests.post, url, data=delivery.body, timeout=20).result()
        waited = time.monotonic() - started
        assert wechat.open_reply(first.result().content)["Content"] == "run 1"
    assert handler.runs == 1
    get_database(impatient).dispose()
    if db_session.get_bind().dialect.name == "postgresql":
        # lock_timeout bounds the wait: the retry answers "success" and leaves the reply to the first.
        assert retry.content == b"success" and waited < 2.0  # the first takes 3 s
    else:
        # SQLite queues writers on its busy timeout: the retry gets the first delivery's reply.
        assert wechat.open_reply(retry.content)["Content"] == "run 1"


def test_read_only_flows_record_once_under_concurrent_duplicates(app, wechat, db_session, live_server) -> None:
    from handlers.messages import read_only

    runs = []

    @read_only
    def menu_answer(session, inbound):  # type: ignore[no-untyped-def]
        runs.append(1)
        time.sleep(0.1)
        return TextReply(f"answer {len(runs)}")

    router = Router()
    router.on_click("FAQ", menu_answer)
    app.extensions[ROUTER_EXTENSION] = router
    delivery = wechat.deliver(wechat.event("o_ro", "CLICK", "FAQ"), mode="safe")
    responses = all_at_once(live_server, delivery, 6)
    # Copies in flight together may each compute the answer (it writes nothing), but one
    # row is kept and every copy answers with that row's reply.
    replies = {wechat.open_reply(r.content)["Content"] for r in responses}
    assert len(replies) == 1
    assert count(db_session, InboundEvent) == 1
    later = requests.post(f"{live_server.url}/wechat?{delivery.query}", data=delivery.body, timeout=20)
    assert wechat.open_reply(later.content)["Content"] in replies


def test_a_read_only_flow_that_writes_is_stopped(app, client, wechat, db_session) -> None:
    from handlers.messages import read_only
    from models import User

    @read_only
    def sneaky(session, inbound):  # type: ignore[no-untyped-def]
        session.add(User(openid="o_sneaky"))
        session.flush()
        return TextReply("written")

    router = Router()
    router.on_click("FAQ", sneaky)
    app.extensions[ROUTER_EXTENSION] = router
    resp = post(client, wechat.deliver(wechat.event("o_sneaky", "CLICK", "FAQ")))
    assert resp.status_code == 503
    assert count(db_session, User) == 0 and count(db_session, InboundEvent) == 0


# --- planned flows: the dedup row and the flow's writes as one batch ---------------------------


def test_a_real_text_message_under_concurrent_duplicates_is_kept_once(app, wechat, db_session, live_server) -> None:
    app.extensions[ROUTER_EXTENSION] = build_router()
    delivery = wechat.deliver(wechat.text("o_batch_race", "我的证书什么时候能拿到？", msg_id=9101), mode="safe")
    responses = all_at_once(live_server, delivery, 8)
    assert [r.status_code for r in responses] == [200] * 8
    assert {wechat.open_reply(r.content)["Content"] for r in responses} == {ACKNOWLEDGEMENT}
    assert count(db_session, InboxMessage) == 1 and count(db_session, InboundEvent) == 1
    conversation = db_session.scalars(select(Conversation)).one()
    assert conversation.unread == 1 and conversation.waiting_since is not None


def test_a_failing_write_in_the_batch_keeps_nothing_and_the_retry_runs_it(app, client, wechat, db_session) -> None:
    runs: list[int] = []

    @planned
    def store_then_break(session, inbound):  # type: ignore[no-untyped-def]
        plan = receive_text(session, inbound)
        runs.append(1)
        if len(runs) == 1:
            # The last write finds no follower by this openid: user_id NULL, refused by the database.
            broken = dict(plan.writes[1].values, openid="o_nobody")
            return Planned(plan.reply, [*plan.writes, Write(plan.writes[1].statement, broken)])
        return plan

    router = Router()
    router.on_message("text", store_then_break)
    app.extensions[ROUTER_EXTENSION] = router
    delivery = wechat.deliver(wechat.text("o_batch_fail", "在吗", msg_id=9102))
    assert post(client, delivery).status_code == 503
    # Not even the dedup row, sent first in the batch: the retry is not taken for a duplicate.
    assert count(db_session, InboundEvent) == 0 and count(db_session, InboxMessage) == 0
    assert count(db_session, Conversation) == 0
    retry = post(client, delivery)
    assert wechat.open_reply(retry.get_data())["Content"] == ACKNOWLEDGEMENT
    assert len(runs) == 2 and count(db_session, InboxMessage) == 1 and count(db_session, InboundEvent) == 1


def test_a_retry_behind_an_uncommitted_first_gets_its_reply(app, wechat, db_session) -> None:
    """The first delivery's batch holds the dedup key; the retry waits on it and answers from it."""
    from wechat.inbound import dedup_key, parse_xml, to_inbound

    app.extensions[ROUTER_EXTENSION] = build_router()
    xml = wechat.text("o_batch_wait", "在吗", msg_id=9103)
    delivery = wechat.deliver(xml)
    key = dedup_key(to_inbound(parse_xml(xml)))
    engine = get_database(app).engine
    first = engine.connect()
    first_tx = first.begin()
    first.execute(insert(InboundEvent).values(dedup_key=key, openid="o_batch_wait", msg_type="text",
                                              sent_at=utcnow(), received_at=utcnow(),
                                              reply_xml="<xml><Content>first</Content></xml>"))
    with LiveServer(app) as server, ThreadPoolExecutor(1) as pool:
        retry = pool.submit(requests.post, f"{server.url}/wechat?{delivery.query}", data=delivery.body, timeout=20)
        time.sleep(0.3)  # the retry is now waiting on the key
        assert not retry.done()
        first_tx.commit()
        first.close()
        answer = retry.result()
    assert answer.status_code == 200 and b"first" in answer.content
    assert count(db_session, InboxMessage) == 0  # the retry ran nothing
