"""Two web hosts and two workers on one PostgreSQL and one Redis: duplicates, a killed worker, nothing lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests
from sqlalchemy import create_engine, func, select

from handlers.accounts.followers import SYNC_SUBSCRIBER
from models import InboundEvent, Job, User

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
EVENTS = 40

pytestmark = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="the multi-host proof runs in the PostgreSQL pass (CI runs both passes)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never became ready")


def test_two_hosts_two_workers_one_killed_mid_job(app, database_url: str, fake_wechat, wechat, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`app` is here for its teardown: the tables are emptied after the run."""
    fake_wechat.reset()
    # Database 13 is this test's own: no token or task from an earlier run may leak in.
    redis.Redis.from_url("redis://127.0.0.1:6379/13").flushdb()
    env = {
        **os.environ,
        "XINWEI_ENV": "development",
        "DATABASE_URL": database_url,
        "REDIS_URL": "redis://127.0.0.1:6379/13",
        "QUEUE_NAME": f"xinwei-cluster-{uuid.uuid4().hex[:8]}",
        "WECHAT_API_BASE": fake_wechat.base_url,
        "WECHAT_OPEN_BASE": fake_wechat.base_url,
        "XINWEI_INSTANCE_PATH": str(tmp_path),
        "JOB_LEASE_SECONDS": "2",
        "JOB_REQUEUE_SECONDS": "1",
        "JOB_SWEEP_SECONDS": "0.5",
        "LOG_JSON": "1",
    }
    # Every user/info call takes a while, so jobs are in flight when the worker dies.
    fake_wechat.fail("/cgi-bin/user/info", delay=0.25, times=10_000)
    ports = [free_port(), free_port()]
    procs: list[subprocess.Popen[bytes]] = []
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(name: str, args: list[str]) -> subprocess.Popen[bytes]:
        out = open(logs / f"{name}.log", "wb")
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        for i, port in enumerate(ports):
            start(f"web{i}", [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                              "--workers", "2", "wsgi:app"])
        workers = [start(f"worker{i}", [str(VENV_BIN / "flask"), "--app", "app", "jobs", "worker", "--workers", "2"])
                   for i in range(2)]
        hosts = [f"http://127.0.0.1:{port}" for port in ports]
        for host in hosts:
            wait_ready(host)

        # Each subscribe goes to both hosts at once, as a load balancer may do with a retry.
        deliveries = [wechat.deliver(wechat.event(f"o_cluster_{i}", "subscribe"), mode="safe") for i in range(EVENTS)]

        def send(pair: tuple[int, str]) -> int:
            i, host = pair
            d = deliveries[i]
            return requests.post(f"{host}/wechat?{d.query}", data=d.body, timeout=20).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, [(i, h) for i in range(EVENTS) for h in hosts]))
        assert set(statuses) == {200}

        engine = create_engine(database_url)
        victim = workers[0]

        def held_by_victim() -> int:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(Job).where(
                    Job.status == "running", Job.claimed_by.like(f"%:{victim.pid}"))).scalar_one()

        deadline = time.monotonic() + 30
        while held_by_victim() == 0:
            assert time.monotonic() < deadline, "the victim worker never took a job"
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)  # mid-job: no chance to clean up
        victim.wait(10)

        deadline = time.monotonic() + 60
        while True:
            with engine.connect() as conn:
                # Only the events' jobs: the workers' schedulers also record periodic ones meanwhile.
                statuses_now = dict(conn.execute(select(Job.status, func.count()).where(Job.kind == SYNC_SUBSCRIBER)
                                                 .group_by(Job.status)).all())
            if statuses_now.get("done", 0) == EVENTS:
                break
            assert time.monotonic() < deadline, f"jobs did not all finish: {statuses_now}"
            time.sleep(0.2)

        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(InboundEvent)).scalar_one() == EVENTS
            jobs = conn.execute(select(Job.kind, Job.status, Job.attempts, Job.payload)
                                .where(Job.kind == SYNC_SUBSCRIBER)).all()
            synced = conn.execute(select(func.count()).select_from(User).where(User.unionid.is_not(None))).scalar_one()
        engine.dispose()
        # One job per event despite every event arriving twice; every one done, none lost.
        assert len(jobs) == EVENTS
        assert {j.status for j in jobs} == {"done"}
        assert sorted(j.payload["openid"] for j in jobs) == sorted(f"o_cluster_{i}" for i in range(EVENTS))
        assert synced == EVENTS
        # The killed worker's jobs were taken over (a second attempt), and only those ran twice.
        rerun = [j for j in jobs if j.attempts > 1]
        assert rerun, "no job was recovered from the killed worker"
        # WeChat was called at least once per job and never more than once per attempt; a job
        # run once called it exactly once (the killed worker may die before or after its call).
        calls = Counter(c["query"]["openid"] for c in fake_wechat.requests(path="/cgi-bin/user/info"))
        for job in jobs:
            openid = job.payload["openid"]
            assert 1 <= calls[openid] <= job.attempts, (openid, calls[openid], job.attempts)
            if job.attempts == 1:
                assert calls[openid] == 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        fake_wechat.reset()
