"""Probing an uploaded lecture with PyAV before anything is queued: what it is, or why it is refused."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

# What a lecture may be. A 4 GB cap on the upload; a lecture between 10 seconds and 4 hours; a
# picture no larger than 4K and no smaller than a thumbnail.
MAX_BYTES = 4 * 1024 ** 3
MIN_SECONDS, MAX_SECONDS = 10.0, 4 * 3600.0
MIN_SIDE, MAX_WIDTH, MAX_HEIGHT = 64, 3840, 2160
CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"}


class NotALecture(ValueError):
    """The file cannot be a lecture; `message` says why, in Chinese, for the staff member."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Probe:
    container: str
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    fps: float
    seconds: float
    size_bytes: int


def probe(path: Path) -> Probe:
    """What the file at `path` holds, after reading its headers and its last packets (a truncated
    file fails here, not an hour into transcoding)."""
    size = path.stat().st_size
    if size == 0:
        raise NotALecture("empty", "文件是空的（0 字节），请重新选择视频文件。")
    if size > MAX_BYTES:
        raise NotALecture("too_big", "视频超过 4 GB，请压缩或分段后再上传。")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError:
        raise NotALecture("not_video", "无法识别的文件：请上传 MP4、MOV 或 MKV 格式的视频。") from None
    with container:
        if container.format.name not in CONTAINERS:
            raise NotALecture("not_video", "无法识别的文件：请上传 MP4、MOV 或 MKV 格式的视频。")
        if not container.streams.video:
            raise NotALecture("no_video", "文件中没有视频画面（可能只有音频），请上传带画面的讲座视频。")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        width, height = int(video.codec_context.width or 0), int(video.codec_context.height or 0)
        if not (MIN_SIDE <= width <= MAX_WIDTH and MIN_SIDE <= height <= MAX_HEIGHT):
            raise NotALecture("resolution", f"画面尺寸 {width}×{height} 不在支持范围内（最大 3840×2160）。")
        seconds = _duration(container, video)
        if not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise NotALecture("duration", f"视频时长 {seconds:.0f} 秒不在支持范围内（10 秒到 4 小时）。")
        _readable_to_the_end(container, video, seconds)
        rate = video.average_rate or video.guessed_rate
        return Probe(container.format.name, video.codec_context.name, audio.codec_context.name if audio else None,
                     width, height, float(rate) if rate else 25.0, seconds, size)


def _duration(container, video) -> float:  # type: ignore[no-untyped-def]
    if video.duration is not None and video.time_base is not None:
        return float(video.duration * video.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _readable_to_the_end(container, video, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Seek near the end and decode a frame: a file cut off mid-upload has headers that promise an
    hour and data that stops."""
    try:
        target = int(max(0.0, seconds - 3.0) / video.time_base)
        container.seek(target, stream=video, any_frame=False, backward=True)
        for frame in container.decode(video):
            if frame.time is not None and frame.time >= max(0.0, seconds - 10.0):
                return
        raise NotALecture("truncated", "视频文件不完整（可能上传中断），请重新上传。")
    except av.error.FFmpegError:
        raise NotALecture("truncated", "视频文件不完整或已损坏，请重新导出后上传。") from None
