"""Lecture jobs: an upload assembled and probed, then transcoded into the ladder and published."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from handlers.lectures import uploads, versions
from jobs.context import JobContext, JobRegistry
from models import VideoVersion
from video.transcode import DEFAULT_LADDER, parse_ladder

log = logging.getLogger(__name__)
FAILED = "视频处理失败，请重新导出（H.264/AAC 的 MP4 最稳妥）后再上传；如仍失败，请联系技术人员。"


def _ingest(ctx: JobContext, payload: dict[str, Any]) -> None:
    version_id = int(payload["version_id"])
    with tempfile.TemporaryDirectory(prefix="xinwei-ingest-") as workdir:
        try:
            versions.ingest(ctx.session, ctx.services["blob_store"](), version_id, Path(workdir))
        except Exception:
            _failed_for_good(ctx, version_id)
            raise


def _transcode(ctx: JobContext, payload: dict[str, Any]) -> None:
    version_id = int(payload["version_id"])
    work = versions.to_transcode(ctx.session, version_id)
    if work is None:
        return  # done by an earlier attempt, or failed meanwhile
    ctx.session.rollback()  # no transaction held for the minutes the ladder takes

    def progress(seconds: float) -> None:
        # Kept apart from the job's transaction: the console shows how far it got.
        with ctx.separately() as side:
            side.execute(update(VideoVersion).where(VideoVersion.id == version_id)
                         .values(progress_seconds=round(seconds, 1)))

    ladder = parse_ladder(str(ctx.config.get("VIDEO_LADDER") or DEFAULT_LADDER))
    with tempfile.TemporaryDirectory(prefix="xinwei-transcode-") as workdir:
        try:
            renditions = versions.transcode_and_store(ctx.services["blob_store"](), work, Path(workdir), ladder,
                                                      progress)
        except Exception:
            _failed_for_good(ctx, version_id)
            raise
    versions.publish(ctx.session, work, renditions, now=ctx.now())


def _failed_for_good(ctx: JobContext, version_id: int) -> None:
    """On the last attempt, the version is marked failed (apart from the job's transaction, which
    rolls back as it raises) so staff see why instead of "processing" for ever."""
    if ctx.attempt < uploads.ATTEMPTS:
        return
    log.exception("lecture version %s failed for good", version_id)
    with ctx.separately() as side:
        versions.fail(side, version_id, FAILED)


def _abandoned(session: Session, payload: dict[str, Any]) -> None:
    versions.fail(session, int(payload["version_id"]), FAILED)


def register(registry: JobRegistry) -> None:
    registry.register(uploads.INGEST_JOB, _ingest, on_abandoned=_abandoned)
    registry.register(versions.TRANSCODE_JOB, _transcode, on_abandoned=_abandoned)
