"""A student's lecture links: the signed playlist paths a player is given, and the views that answer them.

The player gets `/h5/lectures/<token>/master.m3u8`. The token names the student, the lecture
version and an expiry, with an HMAC under a key derived from SECRET_KEY; the rung playlists sit
under the same path (the master's URIs are relative), and each lists its segments as the blob
store's own short-lived links (S3 presigned URLs, or the app's signed /blobs/ links).

Why a token in the path and not only the session cookie: iOS plays HLS natively, and its media
stack does not reliably send a web view's cookies with playlist requests. So the token is the
credential, and it is refused when it has expired, is altered, or the request carries the session
of another student (a link handed to a classmate). A copied link dies with its expiry:
LECTURE_LINK_SECONDS beyond the lecture's length, long enough to watch it through at 1× without a
renewal; a player paused longer asks for fresh links (POST /h5/api/watch/media) and carries on.
"""
from __future__ import annotations

import gzip
import hashlib
import hmac
import time
from dataclasses import asdict
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, request, url_for

from database import get_session
from handlers.lectures import delivery
from models import VideoVersion
from models.status import VideoStatus
from web.auth import current_user_id
from web.blobs import get_blob_store

bp = Blueprint("lectures", __name__, url_prefix="/h5/lectures")

_CONTEXT = b"xinwei lecture link v1"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
TEXTS = "xinwei.lecture_playlists"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _key() -> bytes:
    secret = current_app.config["SECRET_KEY"]
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(raw, _CONTEXT, hashlib.sha256).digest()


def _sign(payload: str) -> str:
    return hmac.new(_key(), payload.encode(), hashlib.sha256).hexdigest()[:32]


def issue(user_id: int, version_id: int, expires: int) -> str:
    payload = f"{int(user_id)}.{int(version_id)}.{int(expires)}"
    return f"{payload}.{_sign(payload)}"


def verify(token: str, now: float) -> tuple[int, int] | None:
    """(user id, version id) of a genuine, unexpired token; None otherwise."""
    parts = token.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() for p in parts[:3]) or len(parts[2]) > 12:
        return None
    user_id, version_id, expires, signature = parts
    if not hmac.compare_digest(_sign(f"{user_id}.{version_id}.{expires}"), signature) or now > int(expires):
        return None
    return int(user_id), int(version_id)


def link_seconds(version: VideoVersion) -> int:
    return int(current_app.config["LECTURE_LINK_SECONDS"]) + delivery.seconds_of(version)


def _texts() -> delivery.PlaylistTexts:
    texts = current_app.extensions.get(TEXTS)
    if texts is None or texts.blobs is not get_blob_store():
        texts = current_app.extensions[TEXTS] = delivery.PlaylistTexts(get_blob_store())
    return texts  # type: ignore[no-any-return]


def media(version: VideoVersion, user_id: int) -> dict[str, Any]:
    """What the topic page's player needs for this lecture, signed for this student."""
    life = link_seconds(version)
    token = issue(user_id, version.id, int(time.time()) + life)
    store = get_blob_store()
    return {
        "kind": "hls",
        "version": version.id,
        "master": url_for("lectures.master", token=token),
        "fallback": store.signed_url(delivery.fallback_key(version), life, content_type="video/mp4", inline=True),
        "poster": store.signed_url(delivery.poster_key(version), life, content_type="image/jpeg", inline=True),
        "subtitles": url_for("lectures.subtitles", token=token) if version.subtitles_key else None,
        "qualities": [asdict(q) for q in delivery.qualities(version)],
        "expires_in": life,
    }


def _version(token: str) -> VideoVersion:
    found = verify(token, time.time())
    if found is None:
        abort(403, "链接已过期，请返回专题页重新打开视频。")
    user_id, version_id = found
    signed_in = current_user_id()
    if signed_in is not None and signed_in != user_id:
        abort(403, "这个视频链接属于其他同学。")
    version = get_session().get(VideoVersion, version_id)
    if version is None or version.status != VideoStatus.READY or not version.prefix:
        abort(404)
    return version


def _playlist(text: str) -> Response:
    body = text.encode()
    # A rung playlist is a signed link per segment (150 for a 10-minute lecture, 60 KB with S3's
    # signatures): on a 400 kbit/s phone that is a second and a half before the first segment is
    # asked for. The links compress four to one.
    if "gzip" in request.headers.get("Accept-Encoding", "") and len(body) > 256:
        response = Response(gzip.compress(body, compresslevel=5), mimetype=PLAYLIST_TYPE)
        response.headers["Content-Encoding"] = "gzip"
        response.headers["Vary"] = "Accept-Encoding"
    else:
        response = Response(body, mimetype=PLAYLIST_TYPE)
    # The links inside expire: no cache may keep them past that, or hand them to someone else.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/<token>/master.m3u8")
def master(token: str) -> Response:
    return _playlist(delivery.master_playlist(_texts(), _version(token)))


@bp.get("/<token>/<rung>/index.m3u8")
def rung(token: str, rung: str) -> Response:
    version = _version(token)
    if rung not in delivery.rung_names(version):
        abort(404)
    life, store = link_seconds(version), get_blob_store()
    text = delivery.rung_playlist(_texts(), version, rung,
                                  lambda key, ctype: store.signed_url(key, life, content_type=ctype, inline=True))
    return _playlist(text)


@bp.get("/<token>/subtitles.vtt")
def subtitles(token: str) -> Response:
    """Served by the app, not linked to the store: a <track> must be same-origin (or CORS-enabled),
    and the file is small."""
    version = _version(token)
    if not version.subtitles_key:
        abort(404)
    response = Response(get_blob_store().get(version.subtitles_key), mimetype="text/vtt")
    response.headers["Cache-Control"] = "private, max-age=300"
    return response
