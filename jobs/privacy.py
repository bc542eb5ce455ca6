"""Privacy jobs: building a student's copy of their data, and carrying out erasures whose cooling-off is over."""
from __future__ import annotations

from typing import Any

from handlers.privacy import requests
from jobs.context import JobContext, JobRegistry

SCHEDULE_ERASURES = "privacy.schedule_erasures"


def _build_copy(ctx: JobContext, payload: dict[str, Any]) -> None:
    requests.make_copy(ctx.session, int(payload["request_id"]), ctx.services["blob_store"](), ctx.now())


def _erase(ctx: JobContext, payload: dict[str, Any]) -> None:
    requests.carry_out_erasure(ctx.session, int(payload["request_id"]), ctx.services["blob_store"](), ctx.now())


def _schedule_erasures(ctx: JobContext, payload: dict[str, Any]) -> None:
    requests.schedule_due_erasures(ctx.session, ctx.now())


def register(registry: JobRegistry) -> None:
    registry.register(requests.COPY_JOB, _build_copy)
    registry.register(requests.ERASE_JOB, _erase)
    registry.register(SCHEDULE_ERASURES, _schedule_erasures)
