"""Following the account: the welcome now, the follower's WeChat profile synced by a job after."""
from __future__ import annotations

from sqlalchemy import select

from database import get_database
from jobs.queue import get_queue
from models import Job, User


def subscribe(client, wechat, openid: str) -> None:  # type: ignore[no-untyped-def]
    delivery = wechat.deliver(wechat.event(openid, "subscribe"), mode="safe")
    assert client.post("/wechat?" + delivery.query, data=delivery.body).status_code == 200


def test_subscribe_records_a_sync_job_that_fetches_the_follower(app, client, wechat, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    get_queue(app).kick = lambda ids, delay=None: None  # type: ignore[method-assign]  # run it by hand below
    subscribe(client, wechat, "o_sync")
    with get_database(app).sessions() as session:
        job = session.scalars(select(Job)).one()
        assert (job.kind, job.payload) == ("accounts.sync_subscriber", {"openid": "o_sync"})
    assert get_queue(app).execute(job.id) == "done"
    with get_database(app).sessions() as session:
        user = session.scalars(select(User).where(User.openid == "o_sync")).one()
        assert user.unionid and user.unionid.startswith("oU")
        assert user.subscribe_scene == "ADD_SCENE_SEARCH" and user.synced_at is not None
    calls = fake_wechat.requests(path="/cgi-bin/user/info")
    assert [c["query"]["openid"] for c in calls] == ["o_sync"]


def test_a_duplicate_subscribe_delivery_records_one_job(app, client, wechat) -> None:  # type: ignore[no-untyped-def]
    get_queue(app).kick = lambda ids, delay=None: None  # type: ignore[method-assign]
    delivery = wechat.deliver(wechat.event("o_twice", "subscribe", created=1_800_000_000))
    for _ in range(3):
        client.post("/wechat?" + delivery.query, data=delivery.body)
    with get_database(app).sessions() as session:
        assert len(session.scalars(select(Job)).all()) == 1


def test_sync_failure_retries_and_keeps_the_welcome(app, client, wechat, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    get_queue(app).kick = lambda ids, delay=None: None  # type: ignore[method-assign]
    subscribe(client, wechat, "o_flaky")
    fake_wechat.fail("/cgi-bin/user/info", errcode=-1)
    with get_database(app).sessions() as session:
        job_id = session.scalars(select(Job.id)).one()
    assert get_queue(app).execute(job_id) == "retry"
    with get_database(app).sessions() as session:
        job = session.get(Job, job_id)
        assert job.status == "pending" and "-1" in (job.last_error or "")
        assert session.scalars(select(User).where(User.openid == "o_flaky")).one().subscribed
