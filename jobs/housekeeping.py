"""Housekeeping jobs: pruning dedup rows, finished jobs, rate events and old export files."""
from __future__ import annotations

from typing import Any

from handlers import housekeeping, ratelimit
from jobs.context import JobContext, JobRegistry


def _prune_inbound_events(ctx: JobContext, payload: dict[str, Any]) -> None:
    housekeeping.prune_inbound_events(ctx.session, now=ctx.now())


def _prune_done_jobs(ctx: JobContext, payload: dict[str, Any]) -> None:
    housekeeping.prune_done_jobs(ctx.session, now=ctx.now())


def _prune_exports(ctx: JobContext, payload: dict[str, Any]) -> None:
    housekeeping.prune_exports(ctx.session, ctx.services["blob_store"](), ctx.now(), blobs=ctx.services["blob_store"]())


def _sweep_orphan_blobs(ctx: JobContext, payload: dict[str, Any]) -> None:
    housekeeping.sweep_orphan_blobs(ctx.session, ctx.services["blob_store"](), ctx.now())


def _prune_rate_events(ctx: JobContext, payload: dict[str, Any]) -> None:
    ratelimit.prune(ctx.session, ctx.now())


def register(registry: JobRegistry) -> None:
    registry.register("housekeeping.prune_inbound_events", _prune_inbound_events)
    registry.register("housekeeping.prune_done_jobs", _prune_done_jobs)
    registry.register("housekeeping.prune_rate_events", _prune_rate_events)
    registry.register("housekeeping.prune_exports", _prune_exports)
    registry.register("housekeeping.sweep_orphan_blobs", _sweep_orphan_blobs)
