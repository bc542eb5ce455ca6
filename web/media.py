"""Topic video media: the demo clips served with byte ranges, and topic video URLs for pages."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, send_file
from flask.typing import ResponseReturnValue

bp = Blueprint("media", __name__)

VIDEO_PATH = "/media/videos/"
DEMO_PREFIX = "demo:"
# The same rule content/README.md sets for demo names; nothing else reaches the filesystem.
_NAME = re.compile(r"[a-z0-9-]+")
# Clips are regenerated only when missing, so a day of caching is safe; the ETag and
# Last-Modified change with the file and let a player revalidate cheaply after that.
MAX_AGE = 24 * 3600
# Refused in an https URL: it ends up in an HTML attribute and in players' requests.
_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f\"'<>\\`]")


def video_dir(app: Flask | None = None) -> Path:
    """Where the demo clips live: DEMO_VIDEO_DIR, else <instance_path>/videos."""
    app = app or current_app
    configured = app.config.get("DEMO_VIDEO_DIR")
    return Path(configured) if configured else Path(app.instance_path) / "videos"


@bp.get(VIDEO_PATH + "<name>.mp4")
def video(name: str) -> ResponseReturnValue:
    """One demo clip. conditional=True gives Range (206/416), ETag and If-Modified-Since (304)."""
    # The route's converter already refuses "/", so "..%2F" never arrives here; the pattern
    # refuses "..", dots, uppercase and a doubled ".mp4" (name "x.mp4").
    if not _NAME.fullmatch(name):
        abort(404)
    path = video_dir() / f"{name}.mp4"
    if not path.is_file():
        abort(404)
    response = send_file(path, mimetype="video/mp4", conditional=True, etag=True, max_age=MAX_AGE)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def video_url(url: str) -> str:
    """The URL a page gives its <video>: "demo:<name>" → /media/videos/<name>.mp4; https URLs unchanged.

    Anything else (http, javascript:, relative paths, malformed demo names) raises ValueError.
    """
    if url.startswith(DEMO_PREFIX):
        name = url[len(DEMO_PREFIX):]
        if not _NAME.fullmatch(name):
            raise ValueError(f"demo video name must match [a-z0-9-]+: {url!r}")
        return f"{VIDEO_PATH}{name}.mp4"
    if url.startswith("https://") and not _UNSAFE_URL_CHARS.search(url):
        try:
            host = urlsplit(url).hostname
        except ValueError:  # e.g. an unbalanced "[" in the host
            host = None
        if host:
            return url
    raise ValueError(f"a topic video URL is https:// or demo:<name>, got {url!r}")
