"""Uploading a lecture: a resumable upload in numbered chunks (a dropped chunk is sent again, not the file)."""
from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import PurePosixPath

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from blobstore import BlobStore
from handlers.audit import Actor, record_audit
from handlers.catalog.loader import current_version
from handlers.errors import Refused
from handlers.outbox import record_job
from models import VideoAsset, VideoUpload, VideoVersion
from models.status import VideoStatus
from video.probe import MAX_BYTES

# 8 MiB: a chunk lost on a weak connection costs seconds to send again, and a 4 GB lecture is 512 requests.
CHUNK_BYTES = 8 * 1024 * 1024
EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv")
INGEST_JOB = "lectures.ingest"
ATTEMPTS = 3  # jobs/lectures.py marks the version failed when the last one fails
BUSY = (VideoStatus.UPLOADING, VideoStatus.PROBING, VideoStatus.TRANSCODING)


def chunk_key(upload: VideoUpload, index: int) -> str:
    return f"uploads/{upload.id}/{index:06d}"


def asset_for(session: Session, course_code: str, topic_code: str, *, now: datetime) -> VideoAsset:
    """The lecture asset of a topic of the course's current catalog version, created on first use."""
    version = current_version(session, course_code)
    if version is None or topic_code not in {topic.code for topic in version.topics}:
        raise Refused("not_found", "没有这个专题。")
    asset = session.scalar(select(VideoAsset).where(VideoAsset.course_code == course_code,
                                                    VideoAsset.topic_code == topic_code).with_for_update())
    if asset is None:
        asset = VideoAsset(course_code=course_code, topic_code=topic_code, created_at=now)
        session.add(asset)
        session.flush()
    return asset


def start_upload(session: Session, actor: Actor, course_code: str, topic_code: str, file_name: str, size: int, *,
                 now: datetime) -> VideoUpload:
    """A new version of the topic's lecture, waiting for its chunks. One upload per topic at a time: a
    second staff member is told the first is still on its way."""
    name = PurePosixPath(file_name.replace("\\", "/")).name.strip()[:200]
    if not name.lower().endswith(EXTENSIONS):
        raise Refused("not_video", "请上传 MP4、MOV 或 MKV 格式的视频文件。")
    if size <= 0:
        raise Refused("empty", "文件是空的（0 字节），请重新选择视频文件。")
    if size > MAX_BYTES:
        raise Refused("too_big", "视频超过 4 GB，请压缩或分段后再上传。")
    asset = asset_for(session, course_code, topic_code, now=now)  # locks the asset: one start at a time
    busy = session.scalar(select(VideoVersion).where(VideoVersion.asset_id == asset.id,
                                                     VideoVersion.status.in_(BUSY)))
    if busy is not None:
        raise Refused("busy", f"第 {busy.number} 版（{busy.file_name}）还在上传或处理中，请等它完成后再上传。")
    number = (session.scalar(select(func.max(VideoVersion.number)).where(VideoVersion.asset_id == asset.id)) or 0) + 1
    version = VideoVersion(asset_id=asset.id, number=number, status=VideoStatus.UPLOADING, file_name=name,
                           size_bytes=size, uploaded_by=actor.name[:100], created_at=now)
    session.add(version)
    session.flush()
    upload = VideoUpload(token=secrets.token_urlsafe(16), version_id=version.id, size_bytes=size,
                         chunk_bytes=CHUNK_BYTES, received=[], created_at=now)
    session.add(upload)
    session.flush()
    record_audit(session, actor, "lecture.upload", "video_version", version.id,
                 after={"course": course_code, "topic": topic_code, "number": number, "file_name": name,
                        "size_bytes": size})
    return upload


def upload_of(session: Session, token: str, *, lock: bool = False) -> VideoUpload:
    query = select(VideoUpload).where(VideoUpload.token == token[:32])
    if lock:
        # Read afresh under the lock: a copy loaded earlier in this session would hide the chunks
        # that parallel requests recorded meanwhile, and this one would write their numbers away.
        query = query.with_for_update().execution_options(populate_existing=True)
    upload = session.scalar(query)
    if upload is None:
        raise Refused("not_found", "上传不存在或已过期。")
    return upload


def receive_chunk(session: Session, blobs: BlobStore, token: str, index: int, data: bytes) -> VideoUpload:
    """Keep chunk `index`. Sent again (a retry after a dropped connection), it replaces itself; sent
    in any order, or several at once, each lands once. The bytes go to the store before the row is
    locked, so parallel chunks do not wait on each other's transfer."""
    upload = upload_of(session, token)
    version = session.get(VideoVersion, upload.version_id)
    if version is None or version.status != VideoStatus.UPLOADING or upload.completed_at is not None:
        raise Refused("not_uploading", "这次上传已结束，不能再添加内容。")
    if not 0 <= index < upload.chunk_count:
        raise Refused("bad_chunk", f"分块编号应在 0 到 {upload.chunk_count - 1} 之间。")
    expected = upload.chunk_bytes if index < upload.chunk_count - 1 else \
        upload.size_bytes - upload.chunk_bytes * (upload.chunk_count - 1)
    if len(data) != expected:
        raise Refused("bad_chunk_size", f"第 {index} 块应为 {expected} 字节，收到 {len(data)} 字节，请重新发送。")
    blobs.put(chunk_key(upload, index), data)
    upload = upload_of(session, token, lock=True)
    upload.received = sorted(set(upload.received) | {index})
    session.flush()
    return upload


def complete(session: Session, actor: Actor, token: str, *, now: datetime) -> VideoVersion:
    """Every chunk is here: the job assembles, probes and (if it is a lecture) transcodes the file."""
    upload = upload_of(session, token, lock=True)
    version = session.get(VideoVersion, upload.version_id)
    assert version is not None
    if upload.completed_at is not None:
        return version  # asked twice (a retried request): already on its way
    missing = upload.chunk_count - len(upload.received)
    if missing:
        raise Refused("incomplete", f"还有 {missing} 块没有收到，请继续上传。")
    upload.completed_at = now
    version.status = VideoStatus.PROBING
    record_job(session, INGEST_JOB, {"version_id": version.id}, dedup_key=f"lecture-ingest:{version.id}",
               max_attempts=ATTEMPTS)
    record_audit(session, actor, "lecture.uploaded", "video_version", version.id, after={"number": version.number})
    session.flush()
    return version
