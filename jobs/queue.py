"""The queue: Huey (Redis in production, SQLite on the embedded default) carrying job ids to workers."""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from huey import Huey, RedisHuey, SqliteHuey
from huey.consumer import Consumer
from sqlalchemy import event
from sqlalchemy.orm import Session

import telemetry
from handlers.outbox import NEW_JOBS
from jobs.periodic import PERIODIC, Periodic, record_period
from jobs.registry import JobRegistry, build_registry
from jobs.runner import Outcome, Policy, due_for_requeue, run_job
from models.base import utcnow

log = logging.getLogger(__name__)



class Queue:
    """Lazily builds the Huey instance (no I/O until first use) and registers xinwei's tasks."""

    def __init__(self, config: Mapping[str, Any], sessions: Any, registry: JobRegistry | None = None,
                 services: dict[str, Any] | None = None) -> None:
        self.config = config
        self.sessions = sessions
        self.registry = registry or build_registry()
        self.policy = Policy.from_config(config)
        self.services = services if services is not None else {}
        self._huey: Huey | None = None
        self.outcomes: list[tuple[int, Outcome]] = []  # recent outcomes, for tests and metrics

    @property
    def huey(self) -> Huey:
        if self._huey is None:
            self._huey = self._build_huey()
        return self._huey

    def _build_huey(self) -> Huey:
        name = self.config.get("QUEUE_NAME", "xinwei")
        redis_url = self.config.get("REDIS_URL")
        if redis_url:
            huey: Huey = RedisHuey(name, url=redis_url, utc=True)
        else:
            path = self.config["QUEUE_SQLITE_PATH"]
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            huey = SqliteHuey(name, filename=path, utc=True)
        self._run = huey.task(name="xinwei.run_job")(self.execute)
        for periodic in PERIODIC:
            huey.periodic_task(periodic.crontab(), name=f"xinwei.periodic.{periodic.kind}")(
                self._periodic_task(periodic))
        return huey

    def _periodic_task(self, periodic: Periodic):  # type: ignore[no-untyped-def]
        def fire() -> int | None:
            return self.fire_periodic(periodic)
        return fire

    # --- producing --------------------------------------------------------------

    def kick(self, job_ids: Iterable[int], delay: float | None = None) -> None:
        """Hand job ids to the queue. A failure here loses nothing: the sweep finds them."""
        run = self._task()
        for job_id in job_ids:
            try:
                if delay:
                    run.schedule(args=(job_id,), delay=delay)
                else:
                    run(job_id)
            except Exception:  # noqa: BLE001 - the queue being down must not fail the request
                log.exception("could not enqueue job %s; the sweep will", job_id)

    def _task(self):  # type: ignore[no-untyped-def]
        _ = self.huey  # builds the instance and registers the task
        return self._run

    def install(self, sessionmaker: Any) -> None:
        """Enqueue the jobs a session recorded once (and only if) its transaction commits."""
        @event.listens_for(sessionmaker, "after_commit")
        def _after_commit(session: Session) -> None:
            ids = session.info.pop(NEW_JOBS, None)
            if ids:
                self.kick(ids)

        @event.listens_for(sessionmaker, "after_rollback")
        def _after_rollback(session: Session) -> None:
            session.info.pop(NEW_JOBS, None)

    # --- consuming --------------------------------------------------------------

    def execute(self, job_id: int) -> str:
        token = telemetry.request_id.set(f"job-{job_id}")  # this job's log lines share an id
        try:
            outcome = run_job(self.sessions, self.registry, job_id, config=self.config, policy=self.policy,
                              services=self.services)
        finally:
            telemetry.request_id.reset(token)
        self.outcomes.append((job_id, outcome))
        telemetry.JOB_OUTCOMES.labels(kind=outcome.kind, outcome=outcome.status).inc()
        del self.outcomes[:-1000]
        if outcome.status == "retry" and outcome.retry_in is not None:
            self.kick([job_id], delay=outcome.retry_in.total_seconds())
        return outcome.status

    def sweep(self) -> int:
        with self.sessions() as session:
            ids = due_for_requeue(session, self.policy)
            session.commit()
        if ids:
            log.info("sweep re-enqueued %s job(s)", len(ids))
            self.kick(ids)
        return len(ids)

    def fire_periodic(self, periodic: Periodic) -> int | None:
        with self.sessions() as session:
            job_id = record_period(session, periodic, utcnow())
            session.commit()  # after_commit hands it to the queue
        return job_id

    def start_sweeper(self, interval: float, stop: threading.Event) -> threading.Thread:
        """Sweep every `interval` seconds until `stop` is set. Every worker runs one: sweeping is
        idempotent (a job is claimed by one worker only), and Huey's periodic tasks tick per minute,
        too coarse to notice a dead worker's lease quickly."""
        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.sweep()
                except Exception:  # noqa: BLE001 - a database hiccup must not end the sweeper
                    log.exception("sweep failed; trying again in %ss", interval)

        thread = threading.Thread(target=loop, name="xinwei-sweeper", daemon=True)
        thread.start()
        return thread

    def consumer(self, workers: int = 2, worker_type: str = "thread", periodic: bool = True) -> Consumer:
        return self.huey.create_consumer(workers=workers, worker_type=worker_type, periodic=periodic,
                                         initial_delay=0.05, max_delay=1.0, backoff=1.3, check_worker_health=True)


EXTENSION = "xinwei.queue"


def init_app(app: Any, sessions: Any, services: dict[str, Any] | None = None) -> None:
    """Attach the queue to the app's sessions (no I/O: Huey is built on first use).

    `services` are providers job functions may call (e.g. the WeChat client), built lazily."""
    queue = Queue(app.config, sessions, services=services)
    queue.install(sessions)
    app.extensions[EXTENSION] = queue


def get_queue(app: Any) -> Queue:
    return app.extensions[EXTENSION]
