"""Published lectures for tests: a generated lecture, transcoded once (kept between runs), as a ready version."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path

from flask import Flask
from sqlalchemy import func, select

from content.videos import make_lecture
from database import get_database
from handlers.lectures.versions import TYPES
from models import VideoAsset, VideoVersion
from models.status import VideoStatus
from video.transcode import DEFAULT_LADDER, parse_ladder, transcode
from web.blobs import get_blob_store

ROOT = Path(__file__).resolve().parent.parent
# A ladder is a minute or two of CPU, and every run (both passes, and the next clone on this
# machine) wants the same one: kept outside the checkout, like pip's cache, under a key that
# covers the code that makes it. XINWEI_TEST_CACHE moves it.
CACHE = Path(os.environ.get("XINWEI_TEST_CACHE") or Path.home() / ".cache" / "xinwei-tests") / "lecture-cache"


def ladder_folder(seconds: int, width: int = 1280, height: int = 720, ladder: str = DEFAULT_LADDER) -> Path:
    """A folder holding a transcoded `seconds`-long lecture (master.m3u8, rungs, poster, fallback)."""
    code = b"".join((ROOT / name).read_bytes() for name in ("content/videos.py", "video/transcode.py"))
    key = hashlib.sha256(code + f"{seconds}:{width}:{height}:{ladder}".encode()).hexdigest()[:16]
    folder = CACHE / key
    if (folder / "renditions.json").exists():
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    # Two test processes at once (scripts/test.sh runs the real-time tests beside the SQLite pass)
    # make it once: the second waits for the first.
    with (CACHE / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "renditions.json").exists():
            return folder
        work = CACHE / f"{key}.work-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        source = make_lecture(work / "source.mp4", seconds=seconds, width=width, height=height)
        made = transcode(source, work / "ladder", parse_ladder(ladder), float(seconds))
        rows = [{"name": r.rung.name, "width": r.width, "height": r.height, "kbps": r.rung.video_kbps,
                 "bytes": r.bytes, "segments": r.segments} for r in made.renditions]
        (work / "ladder" / "renditions.json").write_text(json.dumps(rows))
        (work / "ladder").rename(folder)  # whole or not at all
        shutil.rmtree(work, ignore_errors=True)
    return folder


def publish(app: Flask, folder: Path, course: str = "demo-course", topic: str = "t01",
            seconds: float | None = None) -> int:
    """The ladder in `folder` as the topic's newly published lecture version; its id."""
    rows = json.loads((folder / "renditions.json").read_text())
    with get_database(app).sessions() as session:
        asset = session.scalar(select(VideoAsset).where(VideoAsset.course_code == course,
                                                        VideoAsset.topic_code == topic))
        if asset is None:
            asset = VideoAsset(course_code=course, topic_code=topic)
            session.add(asset)
            session.flush()
        number = (session.scalar(select(func.max(VideoVersion.number)).where(VideoVersion.asset_id == asset.id))
                  or 0) + 1
        prefix = f"lectures/{asset.id}/v{number}/"
        store = get_blob_store(app)
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name != "renditions.json":
                with path.open("rb") as handle:
                    store.put(prefix + path.relative_to(folder).as_posix(), handle,
                              TYPES.get(path.suffix, "application/octet-stream"))
        length = seconds if seconds is not None else _length(folder)
        version = VideoVersion(asset_id=asset.id, number=number, status=VideoStatus.READY, file_name="第一讲.mp4",
                               size_bytes=1, uploaded_by="test", seconds=length, width=rows[-1]["width"],
                               height=rows[-1]["height"], prefix=prefix, renditions=rows, progress_seconds=length)
        session.add(version)
        session.flush()
        asset.current_version_id = version.id
        session.commit()
        return version.id


def _length(folder: Path) -> float:
    """The lecture's length from its lowest rung's playlist (the sum of its segments)."""
    first = sorted(p for p in folder.iterdir() if p.is_dir())[0]
    return sum(float(line.split(":")[1].rstrip(",")) for line in (first / "index.m3u8").read_text().splitlines()
               if line.startswith("#EXTINF:"))
