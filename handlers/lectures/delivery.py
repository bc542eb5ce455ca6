"""A published lecture on its way to a player: the version a topic plays, its playlists with signed segment links."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from threading import Lock

from sqlalchemy import select
from sqlalchemy.orm import Session

from blobstore import BlobStore
from models import VideoAsset, VideoVersion
from models.status import VideoStatus

# A link signer: blob key and content type -> a URL the student's browser may fetch until it expires.
Signer = Callable[[str, str], str]

# What a quality is called in the player's menu, lowest rung first (the ladder is config; a
# longer one shows its extra rungs by their own names).
QUALITY_NAMES = ("流畅", "标清", "高清")


def published(session: Session, course_code: str, topic_code: str) -> VideoVersion | None:
    """The lecture students of this topic are given now, or None (the topic plays its catalog URL)."""
    version = session.scalar(
        select(VideoVersion).join(VideoAsset, VideoAsset.current_version_id == VideoVersion.id)
        .where(VideoAsset.course_code == course_code, VideoAsset.topic_code == topic_code))
    return version if version is not None and version.status == VideoStatus.READY else None


def seconds_of(version: VideoVersion) -> int:
    """The length a watch session holds the student to: the probe's, to the nearest second."""
    return max(1, round(version.seconds or 0))


@dataclass(frozen=True)
class Quality:
    rung: str
    label: str
    height: int


def qualities(version: VideoVersion) -> list[Quality]:
    """The rungs in the order of the master playlist (lowest first), named for the menu."""
    rows = []
    for index, rendition in enumerate(version.renditions):
        name = str(rendition["name"])
        rows.append(Quality(name, QUALITY_NAMES[index] if index < len(QUALITY_NAMES) else name,
                            int(rendition["height"])))
    return rows


def rung_names(version: VideoVersion) -> set[str]:
    return {str(r["name"]) for r in version.renditions}


class PlaylistTexts:
    """The stored playlists, read once per process: a ready version never changes, and every
    student's player asks for the same few files (the master and one playlist per rung)."""

    def __init__(self, blobs: BlobStore, size: int = 512) -> None:
        self.blobs, self.size = blobs, size
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._lock = Lock()

    def get(self, key: str) -> str:
        with self._lock:
            if key in self._texts:
                self._texts.move_to_end(key)
                return self._texts[key]
        text = self.blobs.get(key).decode("utf-8")
        with self._lock:
            self._texts[key] = text
            while len(self._texts) > self.size:
                self._texts.popitem(last=False)
        return text


def master_playlist(texts: PlaylistTexts, version: VideoVersion) -> str:
    """The master playlist as the transcoder wrote it: its rung URIs are relative (`360p/index.m3u8`)
    and resolve under the student's own signed playlist path."""
    return texts.get(f"{version.prefix}master.m3u8")


def rung_playlist(texts: PlaylistTexts, version: VideoVersion, rung: str, sign: Signer) -> str:
    """One rung's media playlist with each segment URI replaced by a signed link to the segment."""
    folder = f"{version.prefix}{rung}/"
    lines = []
    for line in texts.get(folder + "index.m3u8").splitlines():
        if line and not line.startswith("#"):
            line = sign(folder + line, "video/mp2t")
        lines.append(line)
    return "\n".join(lines) + "\n"


def fallback_key(version: VideoVersion) -> str:
    return f"{version.prefix}fallback.mp4"


def poster_key(version: VideoVersion) -> str:
    return f"{version.prefix}poster.jpg"
