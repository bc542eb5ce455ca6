"""Housekeeping jobs: the retention sweep of personal data (and the kinds it replaced), and orphan blobs."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from handlers import housekeeping
from handlers.privacy import retention
from jobs.context import JobContext, JobFunction, JobRegistry

log = logging.getLogger(__name__)

RETENTION_SWEEP = "privacy.retention_sweep"
# The prunes the retention sweep replaced, and the tables each stood for. Still registered, as that
# part of the sweep: a row recorded under one of them before a deploy (a periodic run, a retry, a
# failed export prune staff retry) still runs instead of failing as an unknown kind.
REPLACED = {
    "housekeeping.prune_inbound_events": ("inbound_events",),
    "housekeeping.prune_done_jobs": ("jobs",),
    "housekeeping.prune_rate_events": ("rate_events",),
    "housekeeping.prune_exports": ("student_exports", "certificate_exports"),
}


def _sweeper(tables: Sequence[str] | None) -> JobFunction:
    def run(ctx: JobContext, payload: dict[str, Any]) -> None:
        removed = retention.sweep(ctx.session, ctx.services["blob_store"](), ctx.now(), tables)
        log.info("retention sweep removed %s", {table: n for table, n in removed.items() if n} or "nothing")
    return run


def _sweep_orphan_blobs(ctx: JobContext, payload: dict[str, Any]) -> None:
    housekeeping.sweep_orphan_blobs(ctx.session, ctx.services["blob_store"](), ctx.now())


def register(registry: JobRegistry) -> None:
    registry.register(RETENTION_SWEEP, _sweeper(None))
    for kind, tables in REPLACED.items():
        registry.register(kind, _sweeper(tables))
    registry.register("housekeeping.sweep_orphan_blobs", _sweep_orphan_blobs)
