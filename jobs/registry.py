"""Job kinds: the name a job is recorded under, and the function that does it."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from handlers import accounts, certificates, housekeeping
from models import CertificateExport
from models.base import utcnow


@dataclass
class JobContext:
    """What a job function gets: the job's session (the runner commits it) and the config."""

    session: Session
    config: Mapping[str, Any]
    job_id: int
    attempt: int
    services: dict[str, Any] = field(default_factory=dict)


JobFunction = Callable[[JobContext, dict[str, Any]], None]


class JobRegistry:
    def __init__(self) -> None:
        self._kinds: dict[str, JobFunction] = {}

    def register(self, kind: str, fn: JobFunction) -> None:
        if kind in self._kinds:
            raise ValueError(f"job kind {kind!r} is already registered")
        self._kinds[kind] = fn

    def get(self, kind: str) -> JobFunction | None:
        return self._kinds.get(kind)

    def __contains__(self, kind: str) -> bool:
        return kind in self._kinds


def _prune_inbound_events(ctx: JobContext, payload: dict[str, Any]) -> None:
    housekeeping.prune_inbound_events(ctx.session)


def _prune_done_jobs(ctx: JobContext, payload: dict[str, Any]) -> None:
    housekeeping.prune_done_jobs(ctx.session)


def _sync_subscriber(ctx: JobContext, payload: dict[str, Any]) -> None:
    # The API call comes before any write, so no lock is held while WeChat answers.
    info = ctx.services["wechat_client"]().user.get(payload["openid"])
    accounts.apply_user_info(ctx.session, payload["openid"], info)


def _export_certificates(ctx: JobContext, payload: dict[str, Any]) -> None:
    export_id = int(payload["export_id"])
    engine = ctx.session.get_bind()

    def progress(done: int, total: int) -> None:
        # Progress commits on its own (the job's own transaction commits once, at the end), so
        # a page polling the export sees it move.
        with engine.begin() as conn:
            conn.execute(update(CertificateExport).where(CertificateExport.id == export_id)
                         .values(status="running", done_count=done, total=total))

    directory = Path(ctx.config["EXPORT_DIR"])
    certificates.build_export(ctx.session, export_id, directory, progress)


def _export_students(ctx: JobContext, payload: dict[str, Any]) -> None:
    from handlers import school_console
    from models import StudentExport

    export_id = int(payload["export_id"])
    engine = ctx.session.get_bind()

    def progress(done: int, total: int) -> None:
        # Its own commit, as for certificate exports: the page polling the export sees it move.
        with engine.begin() as conn:
            conn.execute(update(StudentExport).where(StudentExport.id == export_id)
                         .values(status="running", done_count=done, total=total))

    school_console.build_export(ctx.session, export_id, Path(ctx.config["EXPORT_DIR"]), utcnow(), progress)


def build_registry() -> JobRegistry:
    registry = JobRegistry()
    registry.register("housekeeping.prune_inbound_events", _prune_inbound_events)
    registry.register("housekeeping.prune_done_jobs", _prune_done_jobs)
    registry.register(accounts.SYNC_SUBSCRIBER, _sync_subscriber)
    registry.register(certificates.EXPORT_JOB, _export_certificates)
    registry.register("schools.export_students", _export_students)
    return registry
