"""Lectures: a topic's video asset, its versions (each an uploaded file and the HLS ladder made from it), uploads."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow
from models.status import VideoStatus


class VideoAsset(Base):
    """The lecture of one topic of one course, across the course's catalog versions (a new catalog
    version keeps its lectures). `current_version_id` is the published version students watch;
    without one, the topic's catalog video (an https:// URL or a demo clip) plays."""

    __tablename__ = "video_assets"

    id: Mapped[int] = mapped_column(primary_key=True)
    course_code: Mapped[str] = mapped_column(String(64))
    topic_code: Mapped[str] = mapped_column(String(64))
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("video_versions.id", use_alter=True, name="fk_video_assets_current_version_id_video_versions"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("course_code", "topic_code"),)


class VideoVersion(Base):
    """One uploaded lecture file and what was made from it. Never changed once ready: a new upload is
    a new version, so students mid-watch keep the files their player opened."""

    __tablename__ = "video_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("video_assets.id"))
    number: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default=VideoStatus.UPLOADING)
    error: Mapped[str | None] = mapped_column(String(300))  # why it failed, in Chinese, for staff
    file_name: Mapped[str] = mapped_column(String(200))
    size_bytes: Mapped[int] = mapped_column(BigInteger)  # lectures reach 4 GB
    uploaded_by: Mapped[str] = mapped_column(String(100))
    source_key: Mapped[str | None] = mapped_column(String(200))  # the assembled upload, in the blob store
    # What the probe found.
    seconds: Mapped[float | None]
    width: Mapped[int | None]
    height: Mapped[int | None]
    codecs: Mapped[str | None] = mapped_column(String(60))
    # The ladder: blob prefix of master.m3u8, <rung>/…, poster.jpg, fallback.mp4; each rung's figures.
    prefix: Mapped[str | None] = mapped_column(String(200))
    renditions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    progress_seconds: Mapped[float] = mapped_column(default=0.0)
    # Optional WebVTT subtitles (video/subtitles.py checked them), in the blob store beside the ladder.
    subtitles_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ready_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("asset_id", "number"),)


class VideoUpload(Base):
    """A resumable upload: the file arrives in numbered chunks (each a blob under `uploads/<id>/`),
    any of them sent again after a dropped connection; complete when every chunk is there."""

    __tablename__ = "video_uploads"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(32), unique=True)  # in the upload's URLs
    version_id: Mapped[int] = mapped_column(ForeignKey("video_versions.id"))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    chunk_bytes: Mapped[int]
    received: Mapped[list[int]] = mapped_column(JSON, default=list)  # chunk numbers stored so far
    completed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def chunk_count(self) -> int:
        return max(1, -(-self.size_bytes // self.chunk_bytes))
