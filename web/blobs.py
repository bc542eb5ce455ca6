"""The app's blob store (one per app), and the signed-link route that serves the local backend's files.

A signed link names its key, its expiry, the file name and type it is served with, and an HMAC of
all four with the app's secret (blobstore.local_signature): a link copied out of WeChat stops
working when it expires, and nobody can widen it to another key or a longer life. Range requests
are answered (video players and download managers seek), and nothing is cached by shared caches.
On S3 the store's own presigned URLs do the same, and this route is never reached.
"""
from __future__ import annotations

import hmac
import mimetypes
import time
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, current_app, request, send_file

from blobstore import BlobStore, LocalStore, content_disposition, local_signature, open_store

EXTENSION = "xinwei.blobs"
bp = Blueprint("blobs", __name__)


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = open_store(app.config, app.instance_path)
    app.register_blueprint(bp)


def get_blob_store(app: Flask | None = None) -> BlobStore:
    return (app or current_app).extensions[EXTENSION]  # type: ignore[no-any-return]


def download(key: str, content_type: str, filename: str | None = None, *, inline: bool = False) -> Response:
    """Send the student (or staff member) to a short-lived link for this blob: saved as `filename`,
    or shown in the page (`inline`, or no name: an image in an <img>)."""
    seconds = int(current_app.config["BLOB_LINK_SECONDS"])
    url = get_blob_store().signed_url(key, seconds, filename=filename, content_type=content_type, inline=inline)
    response = Response(status=302, headers={"Location": url})
    response.headers["Cache-Control"] = "no-store"  # the link expires; never cache the redirect
    return response


@bp.get("/blobs/<path:key>")
def serve(key: str) -> Response:
    store = get_blob_store()
    if not isinstance(store, LocalStore):
        abort(404)
    try:
        expires = int(request.args.get("e", ""))
    except ValueError:
        abort(403)
    name, ctype, inline = request.args.get("n", ""), request.args.get("t", ""), request.args.get("i") == "1"
    try:
        expected = local_signature(store.secret, key, expires, name, ctype, inline)
    except ValueError:
        abort(404)  # not a key at all
    if not hmac.compare_digest(expected, request.args.get("s", "")) or expires < time.time():
        abort(403)
    path: Path = store.path(key)
    if not path.is_file():
        abort(404)
    mimetype = ctype or mimetypes.guess_type(key)[0] or "application/octet-stream"
    response = send_file(path, mimetype=mimetype, conditional=True, etag=True, max_age=0)
    if name:
        response.headers["Content-Disposition"] = content_disposition(name, inline)
    # Private to this link's holder, and only until it expires.
    response.headers["Cache-Control"] = f"private, max-age={max(0, expires - int(time.time()))}"
    return response
