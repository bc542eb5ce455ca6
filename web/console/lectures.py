"""Staff console: each topic's lecture video — upload a new version (resumable, in chunks), watch it being processed."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, abort, flash, jsonify, redirect, request, url_for

from database import get_session
from handlers.audit import Actor
from handlers.catalog.loader import list_courses
from handlers.errors import Refused
from handlers.lectures import uploads, versions
from models import VideoAsset, VideoVersion
from video.subtitles import MAX_BYTES
from web.blobs import get_blob_store
from web.boundary import on_refused
from web.clock import now
from web.console import STAFF_ROLES, console_required, current_account, register_nav, render_console

bp = Blueprint("console_lectures", __name__, url_prefix="/console/lectures", template_folder="../templates")

register_nav("讲座视频", "console_lectures.index", STAFF_ROLES, 51)

STATUS_NAMES = {"uploading": "上传中", "probing": "检查文件", "transcoding": "转码中", "ready": "已就绪",
                "failed": "未通过"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.add_template_global(STATUS_NAMES, "lecture_status_names")


def _actor() -> Actor:
    account = current_account()
    assert account is not None
    return Actor.of(account)


def _json_refused(refused: Refused, **_: Any) -> tuple[Response, int]:
    return jsonify(error=refused.code, message=refused.message), 409 if refused.code == "busy" else 400


def _state(upload: Any) -> dict[str, Any]:
    return {"token": upload.token, "size": upload.size_bytes, "chunk_bytes": upload.chunk_bytes,
            "chunks": upload.chunk_count, "received": upload.received, "complete": upload.completed_at is not None,
            "chunk_url": url_for(".chunk", token=upload.token, index=0)[:-1],
            "complete_url": url_for(".complete", token=upload.token),
            "state_url": url_for(".upload_state", token=upload.token)}


@bp.get("/")
@console_required(*STAFF_ROLES)
def index() -> Response:
    session = get_session()
    courses = [(c, versions.topics_of(session, c.course.code)) for c in list_courses(session)]
    return render_console("console/lectures/index.html", courses=courses)


@bp.get("/<course>/<topic>")
@console_required(*STAFF_ROLES)
def topic(course: str, topic: str) -> Response:
    return _topic_page(course, topic)


def _topic_page(course: str, topic: str, error: str | None = None) -> Response:
    session = get_session()
    found = next((t for t in versions.topics_of(session, course) if t.code == topic), None)
    if found is None:
        abort(404)
    history = versions.versions_of(session, found.asset.id) if found.asset else []
    return render_console("console/lectures/topic.html", 400 if error else 200, course=course, topic=found,
                          history=history, error=error, subtitles_max_kb=MAX_BYTES // 1024)


def _subtitles_refused(refused: Refused, course: str, topic: str, **_: Any) -> Response:
    return _topic_page(course, topic, refused.message)


def _version_of(course: str, topic: str, version_id: int) -> tuple[VideoVersion, VideoAsset]:
    """A version of this course topic's lecture, or 404 (an id from another topic is not found)."""
    session = get_session()
    version = session.get(VideoVersion, version_id)
    asset = session.get(VideoAsset, version.asset_id) if version else None
    if version is None or asset is None or (asset.course_code, asset.topic_code) != (course, topic):
        abort(404)
    return version, asset


@bp.post("/<course>/<topic>/versions/<int:version_id>/subtitles")
@console_required(*STAFF_ROLES)
@on_refused(_subtitles_refused)
def subtitles(course: str, topic: str, version_id: int) -> Any:
    """Add, replace or remove the published version's WebVTT subtitles (a plain form: the file is small)."""
    session = get_session()
    version, asset = _version_of(course, topic, version_id)
    if request.form.get("action") == "remove":
        versions.set_subtitles(session, get_blob_store(), _actor(), version.id, None)
        flash("字幕已删除")
    else:
        upload = request.files.get("subtitles")
        if upload is None or not upload.filename:
            raise Refused("no_file", "请选择字幕文件（.vtt）。")
        data = upload.stream.read(MAX_BYTES + 1)  # never more than the cap into memory
        versions.set_subtitles(session, get_blob_store(), _actor(), version.id, data)
        flash("字幕已保存，学员下次打开视频时生效")
    return redirect(url_for(".topic", course=course, topic=topic))


@bp.get("/<course>/<topic>/versions/<int:version_id>")
@console_required(*STAFF_ROLES)
def version_state(course: str, topic: str, version_id: int) -> Response:
    """What the page polls while a version is processed."""
    version, asset = _version_of(course, topic, version_id)
    return jsonify(status=version.status, label=STATUS_NAMES.get(version.status, version.status),
                   progress=version.progress_seconds, seconds=version.seconds, error=version.error,
                   current=asset.current_version_id == version.id)


@bp.post("/<course>/<topic>/uploads")
@console_required(*STAFF_ROLES)
@on_refused(_json_refused)
def start(course: str, topic: str) -> tuple[Response, int]:
    body = request.get_json(silent=True) or {}
    try:
        size = int(body.get("size", 0))
    except (TypeError, ValueError):
        raise Refused("bad_size", "文件大小不正确。") from None
    upload = uploads.start_upload(get_session(), _actor(), course, topic, str(body.get("file_name", "")), size,
                                  now=now())
    return jsonify(_state(upload)), 201


@bp.get("/uploads/<token>")
@console_required(*STAFF_ROLES)
def upload_state(token: str) -> Response:
    """Which chunks arrived: a page reloaded after a dropped connection resumes from here."""
    return jsonify(_state(uploads.upload_of(get_session(), token)))


@bp.put("/uploads/<token>/chunks/<int:index>")
@console_required(*STAFF_ROLES)
@on_refused(_json_refused)
def chunk(token: str, index: int) -> Response:
    data = request.get_data(cache=False)
    upload = uploads.receive_chunk(get_session(), get_blob_store(), token, index, data)
    return jsonify(received=len(upload.received), chunks=upload.chunk_count)


@bp.post("/uploads/<token>/complete")
@console_required(*STAFF_ROLES)
@on_refused(_json_refused)
def complete(token: str) -> Response:
    version = uploads.complete(get_session(), _actor(), token, now=now())
    return jsonify(version_id=version.id, status=version.status)
