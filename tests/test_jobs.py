"""Background work: recorded with the change, enqueued after commit, retried, swept, never lost or doubled."""
from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from database import get_database
from handlers.outbox import list_failed_jobs, record_job
from jobs.periodic import Periodic, record_period
from jobs.queue import Queue, get_queue
from jobs.registry import JobContext
from jobs.runner import Policy, run_job
from models import InboxMessage, Job, User
from models.base import utcnow
from models.engine import make_engine, make_sessionmaker
from tests.conftest import count, make_test_app

REDIS = "redis://127.0.0.1:6379/14"
FAST = {"JOB_RETRY_BASE_SECONDS": 0.05, "JOB_RETRY_MAX_SECONDS": 0.2, "JOB_REQUEUE_SECONDS": 0.0}


class Effects:
    """A job kind that writes a row (its effect) and counts runs; fails its first N attempts."""

    def __init__(self, fail_first: int = 0, always_fail: bool = False, delay: float = 0.0) -> None:
        self.runs = 0
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, ctx: JobContext, payload: dict) -> None:  # type: ignore[type-arg]
        with self.lock:
            self.runs += 1
        time.sleep(self.delay)
        if self.always_fail or ctx.attempt <= self.fail_first:
            raise RuntimeError(f"boom on attempt {ctx.attempt}")
        user = ctx.session.scalar(select(User).where(User.openid == payload.get("openid", "o_job")))
        ctx.session.add(InboxMessage(user_id=user.id, direction="out", msg_type="text", content=f"job {ctx.job_id}"))
        ctx.session.flush()


@pytest.fixture(params=["redis", "sqlite"])
def queue_app(request, database_url: str, tmp_path) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    name = f"xinwei-test-{uuid.uuid4().hex[:8]}"
    overrides = dict(FAST, QUEUE_NAME=name, QUEUE_SQLITE_PATH=str(tmp_path / "huey.db"))
    if request.param == "redis":
        overrides["REDIS_URL"] = REDIS
    app = make_test_app(database_url, **overrides)
    yield app
    get_queue(app).huey.flush()
    from tests.conftest import _empty_tables
    _empty_tables(app)
    get_database(app).dispose()


@contextmanager
def consumer(queue: Queue, workers: int = 2, periodic: bool = False) -> Iterator[None]:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    c = queue.consumer(workers=workers, periodic=periodic)
    c.start()
    try:
        yield
    finally:
        c.stop(graceful=True)
        for s, h in handlers.items():
            signal.signal(s, h)


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def job_status(app: Flask, job_id: int) -> Job:
    with get_database(app).sessions() as session:
        return session.scalars(select(Job).where(Job.id == job_id)).one()


def make_user(app: Flask, openid: str = "o_job") -> None:
    with get_database(app).sessions() as session:
        session.add(User(openid=openid))
        session.commit()


def record(app: Flask, kind: str, **kwargs) -> int:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        job = record_job(session, kind, {"openid": "o_job"}, **kwargs)
        session.commit()  # after_commit hands it to the queue
        return job.id


def test_a_recorded_job_runs_once_after_commit(queue_app: Flask) -> None:
    queue = get_queue(queue_app)
    effects = Effects()
    queue.registry.register("test.effects", effects)
    make_user(queue_app)
    job_id = record(queue_app, "test.effects")
    with consumer(queue):
        wait_for(lambda: job_status(queue_app, job_id).status == "done")
    assert effects.runs == 1
    with get_database(queue_app).sessions() as session:
        assert len(session.scalars(select(InboxMessage)).all()) == 1


def test_a_rolled_back_job_is_never_enqueued(queue_app: Flask) -> None:
    queue = get_queue(queue_app)
    with get_database(queue_app).sessions() as session:
        record_job(session, "test.effects", {})
        session.rollback()
        assert count(session, Job) == 0
    assert queue.huey.pending_count() == 0


def test_a_task_failing_twice_then_succeeding(queue_app: Flask) -> None:
    queue = get_queue(queue_app)
    effects = Effects(fail_first=2)
    queue.registry.register("test.flaky", effects)
    make_user(queue_app)
    job_id = record(queue_app, "test.flaky")
    with consumer(queue):
        wait_for(lambda: job_status(queue_app, job_id).status == "done")
    job = job_status(queue_app, job_id)
    assert job.attempts == 3 and effects.runs == 3
    assert job.last_error is None
    with get_database(queue_app).sessions() as session:
        assert len(session.scalars(select(InboxMessage)).all()) == 1  # failed attempts left nothing


def test_a_task_failing_for_good_is_visible_to_staff(queue_app: Flask) -> None:
    queue = get_queue(queue_app)
    queue.registry.register("test.broken", Effects(always_fail=True))
    job_id = record(queue_app, "test.broken", max_attempts=3)
    with consumer(queue):
        wait_for(lambda: job_status(queue_app, job_id).status == "failed")
    with get_database(queue_app).sessions() as session:
        failed = list_failed_jobs(session)
    assert [(j.id, j.kind, j.attempts) for j in failed] == [(job_id, "test.broken", 3)]
    assert "boom on attempt 3" in failed[0].last_error


def test_crash_between_commit_and_enqueue_is_recovered_by_the_sweep(queue_app: Flask, database_url: str) -> None:
    # A web process whose queue is unreachable: the commit succeeds, the hand-over fails.
    broken = make_test_app(database_url, REDIS_URL="redis://127.0.0.1:1/0", QUEUE_NAME="unreachable")
    make_user(queue_app)
    job_id = record(broken, "test.effects")
    get_database(broken).dispose()
    assert job_status(queue_app, job_id).enqueued_at is None

    queue = get_queue(queue_app)
    effects = Effects()
    queue.registry.register("test.effects", effects)
    with consumer(queue):
        assert queue.sweep() == 1
        wait_for(lambda: job_status(queue_app, job_id).status == "done")
    assert effects.runs == 1


def test_a_job_held_by_a_dead_worker_runs_again_and_the_dead_one_cannot_finish(queue_app: Flask) -> None:
    queue = get_queue(queue_app)
    make_user(queue_app)
    sessions = get_database(queue_app).sessions
    slow = Effects(delay=1.0)
    queue.registry.register("test.slow", slow)
    with sessions() as session:
        job = record_job(session, "test.slow", {"openid": "o_job"})
        session.info.clear()  # keep it away from the queue: we drive the workers by hand
        session.commit()
        job_id = job.id
    short = Policy(lease=timedelta(seconds=0.2), retry_base=timedelta(seconds=0.05), requeue_after=timedelta(0))
    results = {}
    first = threading.Thread(target=lambda: results.setdefault("first", run_job(
        sessions, queue.registry, job_id, config=queue_app.config, policy=short)))
    first.start()
    # Once the first worker holds the job, let its lease run out while it is still working.
    wait_for(lambda: job_status(queue_app, job_id).status == "running")
    time.sleep(0.3)
    results["second"] = run_job(sessions, queue.registry, job_id, config=queue_app.config, policy=short)
    first.join()
    assert {results["first"].status, results["second"].status} == {"done", "lost-lease"}
    with sessions() as session:
        assert len(session.scalars(select(InboxMessage)).all()) == 1  # the effect happened once


def test_running_a_finished_job_again_does_nothing(queue_app: Flask) -> None:
    queue = get_queue(queue_app)
    effects = Effects()
    queue.registry.register("test.effects", effects)
    make_user(queue_app)
    with get_database(queue_app).sessions() as session:
        job = record_job(session, "test.effects", {"openid": "o_job"})
        session.info.clear()
        session.commit()
    assert queue.execute(job.id) == "done"
    assert queue.execute(job.id) == "skipped"
    assert effects.runs == 1


def test_a_periodic_run_happens_once_across_two_hosts(queue_app: Flask, database_url: str) -> None:
    """Two hosts, each with its own engine and consumer, both schedulers firing the same period."""
    effects = Effects()
    make_user(queue_app)
    periodic = Periodic("test.periodic", "* * * * *", "minute")
    queues = []
    for _ in range(2):
        engine = make_engine(database_url)
        sessions = make_sessionmaker(engine)
        q = Queue(queue_app.config, sessions)
        q.install(sessions)
        q.registry.register("test.periodic", effects)
        queues.append((q, engine))
    now = utcnow()
    barrier = threading.Barrier(4)
    fired: list[int | None] = []

    def fire(q: Queue) -> None:
        barrier.wait()
        with q.sessions() as session:
            fired.append(record_period(session, periodic, now))
            session.commit()

    with consumer(queues[0][0]), consumer(queues[1][0]):
        threads = [threading.Thread(target=fire, args=(q,)) for q, _ in queues for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        job_ids = [f for f in fired if f is not None]
        assert len(job_ids) == 1
        wait_for(lambda: job_status(queue_app, job_ids[0]).status == "done")
        time.sleep(0.3)  # give a second run the chance to (wrongly) happen
    assert effects.runs == 1
    for _, engine in queues:
        engine.dispose()


def test_prune_inbound_events_job(app: Flask, client, wechat) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from models import InboundEvent

    client.post("/wechat?" + (d := wechat.deliver(wechat.event("o_p", "subscribe"))).query, data=d.body)
    client.post("/wechat?" + (d := wechat.deliver(wechat.event("o_p", "CLICK", "FAQ"))).query, data=d.body)
    sessions = get_database(app).sessions
    with sessions() as session:
        first = session.scalars(select(InboundEvent).order_by(InboundEvent.id)).first()
        session.execute(update(InboundEvent).where(InboundEvent.id == first.id)
                        .values(received_at=utcnow() - timedelta(days=8)))
        job = record_job(session, "housekeeping.prune_inbound_events")
        session.info.clear()
        session.commit()
    queue = get_queue(app)
    assert queue.execute(job.id) == "done"
    with sessions() as session:
        assert count(session, InboundEvent) == 1


def test_cli_lists_and_retries_failed_jobs(queue_app: Flask) -> None:
    queue = get_queue(queue_app)
    effects = Effects(fail_first=1)
    queue.registry.register("test.once", effects)
    make_user(queue_app)
    with get_database(queue_app).sessions() as session:
        job = record_job(session, "test.once", {"openid": "o_job"}, max_attempts=1)
        session.info.clear()
        session.commit()
    assert queue.execute(job.id) == "failed"
    runner = queue_app.test_cli_runner()
    listed = runner.invoke(args=["jobs", "failed"])
    assert f"{job.id}\ttest.once\tattempts=1" in listed.output
    assert "boom on attempt 1" in listed.output
    assert runner.invoke(args=["jobs", "retry", "999999"]).exit_code != 0
    with consumer(queue):
        assert runner.invoke(args=["jobs", "retry", str(job.id)]).exit_code == 0
        wait_for(lambda: job_status(queue_app, job.id).status == "done")
    assert job_status(queue_app, job.id).attempts == 2


def test_prune_done_jobs_keeps_failed_and_recent(app: Flask) -> None:
    from sqlalchemy import update

    sessions = get_database(app).sessions
    with sessions() as session:
        ids = [record_job(session, "test.x").id for _ in range(3)]
        session.info.clear()
        old = utcnow() - timedelta(days=40)
        session.execute(update(Job).where(Job.id == ids[0]).values(status="done", finished_at=old))
        session.execute(update(Job).where(Job.id == ids[1]).values(status="failed", finished_at=old))
        session.execute(update(Job).where(Job.id == ids[2]).values(status="done", finished_at=utcnow()))
        prune = record_job(session, "housekeeping.prune_done_jobs")
        session.info.clear()
        session.commit()
    assert get_queue(app).execute(prune.id) == "done"
    with sessions() as session:
        assert sorted(session.scalars(select(Job.id))) == sorted([ids[1], ids[2], prune.id])


def test_every_periodic_kind_is_registered(app: Flask) -> None:
    from jobs.periodic import PERIODIC

    assert all(p.kind in get_queue(app).registry for p in PERIODIC)


def test_a_dead_workers_last_attempt_is_not_run_again(queue_app: Flask) -> None:
    """max_attempts holds when a worker dies: its job's last attempt is marked failed, not re-run."""
    queue = get_queue(queue_app)
    make_user(queue_app)
    sessions = get_database(queue_app).sessions
    effects = Effects()
    queue.registry.register("test.once", effects)
    with sessions() as session:
        job = record_job(session, "test.once", {"openid": "o_job"}, max_attempts=1)
        session.info.clear()
        session.commit()
        job_id = job.id
    # A worker claimed it (attempt 1 of 1) and died: the row says running, its lease long gone.
    from sqlalchemy import update

    with sessions() as session:
        session.execute(update(Job).where(Job.id == job_id).values(
            status="running", attempts=1, lease_until=utcnow() - timedelta(minutes=1)))
        session.commit()
    outcome = run_job(sessions, queue.registry, job_id, config=queue_app.config,
                      policy=Policy(lease=timedelta(seconds=5)))
    assert outcome.status == "failed" and effects.runs == 0
    assert job_status(queue_app, job_id).status == "failed"
    assert "not run again" in job_status(queue_app, job_id).last_error


def test_an_idle_reconcile_minute_writes_no_job_row(app: Flask) -> None:
    from jobs.periodic import PERIODIC

    reconcile = next(p for p in PERIODIC if p.kind == "payments.reconcile")
    with get_database(app).sessions() as session:
        assert record_period(session, reconcile, utcnow()) is None  # no order waits on WeChat Pay
        session.commit()
    assert count(get_database(app).sessions(), Job) == 0
