"""A published lecture reaches a student's player: signed playlists and segments on both blob stores,
refused when expired, altered or another student's; a replaced lecture never changes under a
student mid-watch, and the next open carries their share of it over."""
from __future__ import annotations

import gzip
import io
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from database import get_database
from handlers.housekeeping import sweep_orphan_blobs
from handlers.learning.enrolment import enroll
from handlers.learning.watching import heartbeat, start_watch
from models import VideoVersion, WatchSession
from models.base import utcnow
from models.status import VideoStatus
from tests.console_helpers import make_staff
from tests.console_helpers import sign_in as console_sign_in
from tests.factories import CSRF, at, audit, fetch_link, sign_in, verify
from tests.lecture_media import ladder_folder, publish
from web import lectures
from web.blobs import get_blob_store


@pytest.fixture(scope="module")
def small_ladder() -> Path:
    return ladder_folder(12, width=640, height=360)


def _open(client, topic: str = "t01"):  # type: ignore[no-untyped-def]
    response = client.post("/h5/api/watch", data={"course": "demo-course", "topic": topic, "csrf_token": CSRF})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _segments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_a_student_plays_the_published_lecture_through_signed_links(app, client, site, small_ladder) -> None:  # type: ignore[no-untyped-def]
    verify(client, site["school"])
    version_id = publish(app, small_ladder)
    page = client.get("/h5/courses/demo-course/topics/t01").get_data(as_text=True)
    assert "hls.light.min.js" in page and 'id="quality"' in page
    assert "/media/videos/" not in page  # the catalog's clip is not offered beside the lecture

    state = _open(client)
    media = state["media"]
    assert media["kind"] == "hls" and media["version"] == version_id
    assert state["video_seconds"] == 12  # the probe's length, not the catalog's 10 s
    assert [q["label"] for q in media["qualities"]] == ["流畅"]  # a 360p source makes one rung
    with get_database(app).sessions() as session:
        watch = session.get(WatchSession, state["watch_id"])
        assert watch.video_version_id == version_id and watch.video_seconds == 12

    master = client.get(media["master"])
    assert master.status_code == 200 and master.mimetype == "application/vnd.apple.mpegurl"
    assert master.headers["Cache-Control"] == "no-store"
    rungs = _segments(master.get_data(as_text=True))
    assert rungs == ["360p/index.m3u8"]
    base = media["master"].rsplit("/", 1)[0]
    playlist = client.get(f"{base}/{rungs[0]}")
    assert playlist.status_code == 200
    segments = _segments(playlist.get_data(as_text=True))
    assert len(segments) == 3 and all("seg-" in s for s in segments)
    packed = client.get(f"{base}/{rungs[0]}", headers={"Accept-Encoding": "gzip, deflate"})
    assert packed.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in packed.headers["Vary"]
    unpacked = gzip.decompress(packed.data).decode()
    assert [line for line in unpacked.splitlines() if line.startswith("#")] == \
        [line for line in playlist.get_data(as_text=True).splitlines() if line.startswith("#")]
    first = fetch_link(client, segments[0])
    assert first.status_code == 200 and first.data[:1] == b"G"  # an MPEG-TS sync byte
    assert first.data == (small_ladder / "360p" / "seg-00000.ts").read_bytes()
    for link in (media["poster"], media["fallback"]):
        assert fetch_link(client, link).status_code == 200


def test_lecture_links_are_refused_when_expired_altered_or_another_students(app, client, site, small_ladder) -> None:  # type: ignore[no-untyped-def]
    verify(client, site["school"])
    version_id = publish(app, small_ladder)
    master = _open(client)["media"]["master"]
    token = master.split("/")[3]
    assert client.get(master).status_code == 200

    with app.test_request_context():
        expired = lectures.issue(site["student"], version_id, int(time.time()) - 1)
        other_version = lectures.issue(site["student"], version_id + 1, int(time.time()) + 60)
    refused = client.get(f"/h5/lectures/{expired}/master.m3u8")
    assert refused.status_code == 403 and "过期" in refused.get_data(as_text=True)
    user_id, version, expires, signature = token.split(".")
    for forged in (f"{user_id}.{version}.{int(expires) + 3600}.{signature}",   # a longer life
                   f"{site['other']}.{version}.{expires}.{signature}",         # another student
                   f"{user_id}.{version}.{expires}.{'0' * 32}", "x", "1.2.3", f"{token}.1"):
        assert client.get(f"/h5/lectures/{forged}/master.m3u8").status_code == 403, forged
    assert client.get(f"/h5/lectures/{other_version}/master.m3u8").status_code == 404  # no such lecture
    assert client.get(f"/h5/lectures/{token}/1080p/index.m3u8").status_code == 404
    assert client.get(f"/h5/lectures/{token}/..%2f..%2fmaster.m3u8/index.m3u8").status_code == 404

    # A classmate given the link is refused; a player without cookies (iOS's media stack) is not.
    classmate = app.test_client()
    sign_in(classmate, site["other"], "o_h5_other")
    assert classmate.get(master).status_code == 403
    assert app.test_client().get(master).status_code == 200

    # A segment link that has expired is refused by the store itself.
    text = client.get(master.replace("master.m3u8", "360p/index.m3u8")).get_data(as_text=True)
    app.config["LECTURE_LINK_SECONDS"] = 1 - 12  # links that live one second
    short = client.get(master.replace("master.m3u8", "360p/index.m3u8")).get_data(as_text=True)
    time.sleep(2.1)
    assert fetch_link(client, _segments(text)[0]).status_code == 200
    assert fetch_link(client, _segments(short)[0]).status_code == 403


def test_a_lecture_not_ready_is_not_served(app, client, site, small_ladder) -> None:  # type: ignore[no-untyped-def]
    verify(client, site["school"])
    version_id = publish(app, small_ladder)
    master = _open(client)["media"]["master"]
    with get_database(app).sessions() as session:
        session.get(VideoVersion, version_id).status = VideoStatus.FAILED
        session.commit()
    assert client.get(master).status_code == 404


def test_fresh_links_are_for_the_same_version_and_only_the_owners(app, client, site, small_ladder) -> None:  # type: ignore[no-untyped-def]
    verify(client, site["school"])
    first = publish(app, small_ladder)
    state = _open(client)
    publish(app, small_ladder, seconds=20)  # replaced while the student watches
    renewed = client.post("/h5/api/watch/media", data={"watch_id": state["watch_id"], "csrf_token": CSRF})
    assert renewed.status_code == 200 and renewed.get_json()["media"]["version"] == first
    classmate = app.test_client()
    sign_in(classmate, site["other"], "o_h5_other")
    for watch_id in (state["watch_id"], "0", "99999999999", "abc", ""):
        refused = classmate.post("/h5/api/watch/media", data={"watch_id": watch_id, "csrf_token": CSRF})
        assert refused.status_code == 404, watch_id
    assert client.post("/h5/api/watch/media", data={"watch_id": state["watch_id"]}).status_code == 400  # no CSRF


def test_a_replaced_lecture_reaches_the_next_open_with_the_same_share_watched(app, client, site, small_ladder) -> None:  # type: ignore[no-untyped-def]
    verify(client, site["school"])
    first = publish(app, small_ladder, seconds=100)
    with get_database(app).sessions() as db:
        enrollment = enroll(db, site["student"], "demo-course")
        watch = start_watch(db, enrollment, "t01", at(0))
        db.commit()
        engine, seq = db.get_bind(), 0
        for t in range(5, 45, 5):  # 40 s of a 100 s lecture at 1×
            seq += 1
            assert heartbeat(engine, site["student"], watch.id, seq, float(t), at(t)).accepted
        second = publish(app, small_ladder, seconds=50)

        # The player that is open keeps its version and its length: the change does not touch it.
        seq += 1
        beat = heartbeat(engine, site["student"], watch.id, seq, 45.0, at(45))
        assert beat.accepted and beat.position == 45.0 and not beat.completed
        db.expire_all()
        assert db.get(WatchSession, watch.id).video_version_id == first

        # The next open plays the new lecture from the same share of it (45 of 100 -> 22.5 of 50).
        again = start_watch(db, enrollment, "t01", at(50))
        db.commit()
        assert (again.video_version_id, again.video_seconds) == (second, 50)
        assert again.position == pytest.approx(22.5) and again.watched_seconds == pytest.approx(22.5)
        # ...and must still watch to 90 % of it at real speed: nothing of the change is credit.
        seq2, t = 0, 50
        while True:
            t += 5
            seq2 += 1
            beat = heartbeat(engine, site["student"], again.id, seq2, min(22.5 + (t - 50), 50.0), at(t))
            assert beat.accepted
            if beat.completed:
                break
        assert 22.5 + (t - 50) >= 45 and t - 50 <= 25


def test_a_shorter_lecture_never_completes_by_the_change_alone(app, client, site, small_ladder) -> None:  # type: ignore[no-untyped-def]
    verify(client, site["school"])
    publish(app, small_ladder, seconds=100)
    with get_database(app).sessions() as db:
        enrollment = enroll(db, site["student"], "demo-course")
        watch = start_watch(db, enrollment, "t01", at(0))
        db.commit()
        for seq, t in enumerate(range(5, 90, 5), start=1):  # 85 of 100 s: just short of 90 %
            heartbeat(db.get_bind(), site["student"], watch.id, seq, float(t), at(t))
        publish(app, small_ladder, seconds=12)
        again = start_watch(db, enrollment, "t01", at(100))
        db.commit()
        assert again.position < 0.9 * 12 and again.completed_at is None
        beat = heartbeat(db.get_bind(), site["student"], again.id, 1, again.position, at(101))
        assert not beat.completed
        assert db.scalar(select(WatchSession.video_seconds).where(WatchSession.id == again.id)) == 12


VTT = ("WEBVTT\n\n00:00:00.500 --> 00:00:03.000\n大家好，欢迎来到心理委员培训。\n\n"
       "00:00:04.000 --> 00:00:08.000\n这一讲介绍心理委员的角色。\n")


def test_staff_add_subtitles_that_students_get_and_bad_files_change_nothing(app, client, site, small_ladder) -> None:  # type: ignore[no-untyped-def]
    verify(client, site["school"])
    version_id = publish(app, small_ladder)
    staff = app.test_client()
    token = console_sign_in(staff, app, make_staff(app))
    url = f"/console/lectures/demo-course/t01/versions/{version_id}/subtitles"

    def send(data: bytes, name: str = "第一讲.vtt"):  # type: ignore[no-untyped-def]
        return staff.post(url, data={"csrf_token": token, "subtitles": (io.BytesIO(data), name)},
                          content_type="multipart/form-data")

    # Refused, with the reason on the page, and nothing stored: GBK text, SRT, a cue past the end, no file.
    for data, words in ((VTT.encode("gbk"), "UTF-8"), (b"1\n00:00:01,000 --> 00:00:02,000\nhi\n", "SRT"),
                        (b"WEBVTT\n\n00:00:30.000 --> 00:00:31.000\nlate\n", "视频只有")):
        refused = send(data)
        assert refused.status_code == 400 and words in refused.get_data(as_text=True), words
    assert staff.post(url, data={"csrf_token": token}).status_code == 400
    assert staff.post(url, data={"subtitles": (io.BytesIO(VTT.encode()), "a.vtt")},
                      content_type="multipart/form-data").status_code in (400, 403)  # no CSRF
    with get_database(app).sessions() as session:
        assert session.get(VideoVersion, version_id).subtitles_key is None

    saved = send(("\ufeff" + VTT.replace("\n", "\r\n")).encode())
    assert saved.status_code == 302
    assert "字幕已保存" in staff.get(saved.headers["Location"]).get_data(as_text=True)
    media = _open(client)["media"]
    track = client.get(media["subtitles"])
    assert track.status_code == 200 and track.mimetype == "text/vtt"
    assert track.get_data(as_text=True) == VTT  # BOM and CRLF normalized
    classmate = app.test_client()
    sign_in(classmate, site["other"], "o_h5_other")
    assert classmate.get(media["subtitles"]).status_code == 403

    # Replaced: the old file becomes an orphan the daily sweep removes; the new one stays.
    with get_database(app).sessions() as session:
        first_key = session.get(VideoVersion, version_id).subtitles_key
    assert send(VTT.replace("大家好", "同学们好").encode()).status_code == 302
    store = get_blob_store(app)
    with get_database(app).sessions() as session:
        second_key = session.get(VideoVersion, version_id).subtitles_key
        assert second_key != first_key
        sweep_orphan_blobs(session, store, utcnow() + timedelta(days=1))
    assert store.size(first_key) is None and store.size(second_key) is not None

    removed = staff.post(url, data={"csrf_token": token, "action": "remove"})
    assert removed.status_code == 302
    assert _open(client)["media"]["subtitles"] is None
    assert [e.after for e in audit(app, "lecture.subtitles")][-1] == {"subtitles": None}
