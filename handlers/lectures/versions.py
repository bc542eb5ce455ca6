"""A lecture version's life after upload: assembled and probed, transcoded, published (or failed, with why)."""
from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from blobstore import BlobStore
from handlers.audit import SYSTEM, Actor, record_audit
from handlers.catalog.loader import current_version
from handlers.errors import Refused
from handlers.lectures.uploads import ATTEMPTS, chunk_key
from handlers.outbox import record_job
from models import VideoAsset, VideoUpload, VideoVersion
from models.status import VideoStatus
from video.probe import NotALecture, probe
from video.subtitles import NotSubtitles, check_subtitles
from video.transcode import Rung, transcode

TRANSCODE_JOB = "lectures.transcode"
TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t", ".jpg": "image/jpeg",
         ".mp4": "video/mp4", ".vtt": "text/vtt"}


def prefix_of(version: VideoVersion) -> str:
    return f"lectures/{version.asset_id}/v{version.number}/"


def fail(session: Session, version_id: int, message: str) -> None:
    version = session.get(VideoVersion, version_id)
    if version is not None and version.status != VideoStatus.READY:
        version.status, version.error = VideoStatus.FAILED, message[:300]
        session.flush()


def ingest(session: Session, blobs: BlobStore, version_id: int, workdir: Path) -> VideoVersion | None:
    """The job's first part: the chunks put together in `workdir` (on the worker's disk), probed, and
    either refused (failed, with the probe's reason; nothing is queued) or kept as the version's
    source and queued for transcoding. The chunks are deleted either way."""
    version = session.get(VideoVersion, version_id)
    upload = session.scalar(select(VideoUpload).where(VideoUpload.version_id == version_id))
    if version is None or upload is None or version.status != VideoStatus.PROBING:
        return version  # a re-run after the work was done
    keys = [chunk_key(upload, n) for n in range(upload.chunk_count)]
    suffix = Path(version.file_name).suffix.lower() or ".mp4"
    source_key = prefix_of(version) + "source" + suffix
    session.rollback()  # no transaction held while the file is copied and read
    assembled = workdir / ("source" + suffix)
    with assembled.open("wb") as out:
        for key in keys:
            with blobs.open(key) as chunk:
                shutil.copyfileobj(chunk, out, 1024 * 1024)
    try:
        found = probe(assembled)
    except NotALecture as refused:
        fail(session, version_id, refused.message)
        found = None
    if found is not None:
        with assembled.open("rb") as handle:
            blobs.put(source_key, handle, "video/mp4")
        version = session.get(VideoVersion, version_id)
        assert version is not None
        version.source_key, version.seconds, version.width, version.height = (
            source_key, found.seconds, found.width, found.height)
        version.codecs = f"{found.video_codec},{found.audio_codec or '-'}"
        version.status = VideoStatus.TRANSCODING
        record_job(session, TRANSCODE_JOB, {"version_id": version_id}, dedup_key=f"lecture-transcode:{version_id}",
                   max_attempts=ATTEMPTS)
    for key in keys:
        blobs.delete(key)
    session.flush()
    return session.get(VideoVersion, version_id)


@dataclass(frozen=True)
class Work:
    version_id: int
    source_key: str
    seconds: float
    prefix: str


def to_transcode(session: Session, version_id: int) -> Work | None:
    version = session.get(VideoVersion, version_id)
    if version is None or version.status != VideoStatus.TRANSCODING or not version.source_key:
        return None
    return Work(version.id, version.source_key, float(version.seconds or 0), prefix_of(version))


def transcode_and_store(blobs: BlobStore, work: Work, workdir: Path, ladder: tuple[Rung, ...],
                        progress: Callable[[float], None]) -> list[dict[str, object]]:
    """The job's second part, outside any transaction: the ladder made on the worker's disk, then
    every file put in the store. Nothing points at these files until `publish` commits, so a worker
    killed half-way leaves only orphans for the sweep, never a half-published lecture."""
    source = workdir / "source"
    with blobs.open(work.source_key) as remote, source.open("wb") as local:
        shutil.copyfileobj(remote, local, 1024 * 1024)
    made = transcode(source, workdir / "ladder", ladder, work.seconds, progress)
    for path in made.files():
        relative = path.relative_to(made.folder).as_posix()
        with path.open("rb") as handle:
            blobs.put(work.prefix + relative, handle, TYPES.get(path.suffix, "application/octet-stream"))
    return [{"name": r.rung.name, "width": r.width, "height": r.height, "kbps": r.rung.video_kbps,
             "bytes": r.bytes, "segments": r.segments} for r in made.renditions]


def publish(session: Session, work: Work, renditions: list[dict[str, object]], *, now: datetime) -> VideoVersion:
    """Ready, and the topic's lecture from now on: the next student to open the topic gets it (one
    mid-watch keeps the version their player opened)."""
    version = session.get(VideoVersion, work.version_id)
    assert version is not None
    asset = session.scalar(select(VideoAsset).where(VideoAsset.id == version.asset_id).with_for_update())
    assert asset is not None
    version.status, version.prefix, version.renditions = VideoStatus.READY, work.prefix, renditions
    version.progress_seconds, version.ready_at, version.error = version.seconds or 0.0, now, None
    previous, asset.current_version_id = asset.current_version_id, version.id
    record_audit(session, SYSTEM, "lecture.published", "video_version", version.id,
                 before={"version_id": previous}, after={"version_id": version.id, "number": version.number})
    session.flush()
    return version


@dataclass(frozen=True)
class TopicLecture:
    code: str
    title: str
    catalog_url: str
    asset: VideoAsset | None
    current: VideoVersion | None
    latest: VideoVersion | None


def topics_of(session: Session, course_code: str) -> list[TopicLecture]:
    """Each topic of the course's current catalog version, with its published and latest lecture."""
    version = current_version(session, course_code)
    if version is None:
        return []
    assets = {a.topic_code: a for a in session.scalars(select(VideoAsset).where(VideoAsset.course_code == course_code))}
    rows = []
    for topic in sorted(version.topics, key=lambda t: t.position):
        asset = assets.get(topic.code)
        current = session.get(VideoVersion, asset.current_version_id) if asset and asset.current_version_id else None
        latest = session.scalar(select(VideoVersion).where(VideoVersion.asset_id == asset.id)
                                .order_by(VideoVersion.number.desc()).limit(1)) if asset else None
        rows.append(TopicLecture(topic.code, topic.title, topic.video_url, asset, current, latest))
    return rows


def versions_of(session: Session, asset_id: int) -> list[VideoVersion]:
    return list(session.scalars(select(VideoVersion).where(VideoVersion.asset_id == asset_id)
                                .order_by(VideoVersion.number.desc())))


def set_subtitles(session: Session, blobs: BlobStore, actor: Actor, version_id: int,
                  data: bytes | None) -> VideoVersion:
    """Give a ready version its WebVTT subtitles (checked against its length), replace them, or take
    them away (`data` None). The video itself never changes; students' players pick the subtitles up
    at their next open."""
    version = session.get(VideoVersion, version_id)
    if version is None or version.status != VideoStatus.READY or not version.prefix:
        raise Refused("not_ready", "只有转码完成的版本可以添加字幕。")
    before = version.subtitles_key
    if data is None:
        version.subtitles_key = None
    else:
        try:
            checked = check_subtitles(data, version.seconds)
        except NotSubtitles as refused:
            raise Refused(f"subtitles_{refused.code}", refused.message) from None
        # A new name for new text: a player that cached the old file never mixes the two.
        digest = hashlib.sha256(checked.text.encode()).hexdigest()[:12]
        version.subtitles_key = f"{version.prefix}subtitles-{digest}.vtt"
        blobs.put(version.subtitles_key, checked.text.encode(), "text/vtt; charset=utf-8")
    record_audit(session, actor, "lecture.subtitles", "video_version", version.id,
                 before={"subtitles": before}, after={"subtitles": version.subtitles_key})
    session.flush()
    return version
