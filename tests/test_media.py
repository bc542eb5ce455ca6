"""Demo clips (H.264 MP4, moov first, timer), their generation from the catalog, and serving them with ranges."""
from __future__ import annotations

import http.client
import shutil
import struct
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import av
import pytest
from flask import Flask
from playwright.sync_api import Page, sync_playwright

from content.videos import ensure_demo_clips, make_demo_clip
from tests.browser import ARGS, CHROMIUM, WECHAT_UA
from web import media

SECONDS = 3


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short, small clip shared by the module's tests (generating is the slow part)."""
    return make_demo_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", title="心理委员MOOC\n心理委员的角色与职责",
                          subtitle="专题 t01 · 演示视频", seconds=SECONDS, width=320, height=180)


def top_level_boxes(data: bytes) -> list[str]:
    """The types of an MP4's top-level boxes, in file order."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if size == 1:  # a 64-bit size follows the type
            size = struct.unpack(">Q", data[offset + 8:offset + 16])[0]
        elif size == 0:  # the box runs to the end of the file
            size = len(data) - offset
        assert size >= 8, f"malformed box at {offset}"
        boxes.append(kind.decode("latin-1"))
        offset += size
    assert offset == len(data)
    return boxes


# --- the clip -------------------------------------------------------------------------------


def test_clip_is_h264_yuv420p_of_the_asked_length(clip: Path) -> None:
    with av.open(str(clip)) as container:
        assert container.format.name.startswith("mov,mp4")
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 180)
        assert abs(container.duration / av.time_base - SECONDS) <= 1
        assert sum(1 for _ in container.decode(stream)) == SECONDS * 12


def test_clip_is_faststart_moov_before_mdat(clip: Path) -> None:
    boxes = top_level_boxes(clip.read_bytes())
    assert boxes[0] == "ftyp"
    assert boxes.index("moov") < boxes.index("mdat")


def test_clip_is_small(clip: Path) -> None:
    # 3 s at 320x180; the 640x360 default is about 150 KB for 20 s.
    assert clip.stat().st_size < 60_000


def test_clip_shows_its_progress(clip: Path) -> None:
    """The progress bar fills from left to right: at 75% of the width it is track-coloured in the
    first frame and bar-coloured in the last."""
    with av.open(str(clip)) as container:
        frames = [frame.to_image() for frame in container.decode(video=0)]
    x, y = 320 * 3 // 4, 180 * 11 // 12 - 1
    first, last = frames[0].getpixel((x, y)), frames[-1].getpixel((x, y))

    def near(pixel: tuple[int, ...], colour: tuple[int, int, int]) -> bool:
        return all(abs(a - b) <= 30 for a, b in zip(pixel, colour))

    assert near(first, (60, 96, 110)) and near(last, (242, 176, 60)), (first, last)
    assert frames[0] != frames[len(frames) // 2]


def test_same_arguments_give_the_same_bytes(clip: Path, tmp_path: Path) -> None:
    again = make_demo_clip(tmp_path / "again.mp4", title="心理委员MOOC\n心理委员的角色与职责",
                           subtitle="专题 t01 · 演示视频", seconds=SECONDS, width=320, height=180)
    assert again.read_bytes() == clip.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["again.mp4"]  # no temporary file left behind


@pytest.mark.parametrize("kwargs", [{"seconds": 0}, {"seconds": 1, "width": 321}, {"seconds": 1, "fps": 0}])
def test_make_demo_clip_refuses_bad_sizes(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        make_demo_clip(tmp_path / "x.mp4", title="t", subtitle="s", **kwargs)
    assert not list(tmp_path.iterdir())


# --- the catalog ------------------------------------------------------------------------------


def write_course(directory: Path, filename: str, code: str, title: str,
                 topics: list[tuple[str, str, str, int]]) -> None:
    """A course file following content/README.md, with one question per topic."""
    parts = [textwrap.dedent(f"""\
        [course]
        code = "{code}"
        title = "{title}"
        description = "测试课程"
        pass_mark = 85
        topic_pass_percent = 60
        on_topic_failed = "rewatch"
        on_course_failed = "redo_all"
        watch_threshold = 0.9
        """)]
    for index, (topic_code, topic_title, url, seconds) in enumerate(topics):
        points = 100 - 10 * (len(topics) - 1) if index == 0 else 10
        parts.append(textwrap.dedent(f"""
            [[topics]]
            code = "{topic_code}"
            title = "{topic_title}"
            summary = "……"

            [topics.video]
            url = "{url}"
            seconds = {seconds}

            [[topics.questions]]
            code = "{topic_code}-q1"
            kind = "judge"
            points = {points}
            text = "心理委员可以替代心理咨询师。"
            options = [{{ key = "对", text = "对" }}, {{ key = "错", text = "错" }}]
            answer = ["错"]
            """))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / filename).write_text("".join(parts), encoding="utf-8")


def test_ensure_demo_clips_creates_missing_ones_once(tmp_path: Path) -> None:
    catalog, out = tmp_path / "courses", tmp_path / "videos"
    write_course(catalog, "a.toml", "xinwei-mooc", "心理委员MOOC", [
        ("t01", "心理委员的角色与职责", "demo:xinwei-mooc-t01", 2),
        ("t02", "倾听与共情", "https://cdn.example.com/t02.mp4", 600),
    ])
    write_course(
        catalog, "b.toml", "therapy-mooc", "心理疗法MOOC", [("t01", "认知行为疗法", "demo:therapy-mooc-t01", 1)]
    )
    (catalog / "notes.txt").write_text("not a course")

    created = ensure_demo_clips(catalog, out)
    assert created == [out / "xinwei-mooc-t01.mp4", out / "therapy-mooc-t01.mp4"]
    assert sorted(p.name for p in out.iterdir()) == ["therapy-mooc-t01.mp4", "xinwei-mooc-t01.mp4"]
    with av.open(str(out / "xinwei-mooc-t01.mp4")) as container:
        assert abs(container.duration / av.time_base - 2) <= 1
        assert (container.streams.video[0].width, container.streams.video[0].height) == (640, 360)

    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert ensure_demo_clips(catalog, out) == []
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps

    # Only the missing clip is made again.
    (out / "therapy-mooc-t01.mp4").unlink()
    assert ensure_demo_clips(catalog, out) == [out / "therapy-mooc-t01.mp4"]
    assert (out / "xinwei-mooc-t01.mp4").stat().st_mtime_ns == stamps["xinwei-mooc-t01.mp4"]


def test_ensure_demo_clips_with_no_catalog_yet(tmp_path: Path) -> None:
    assert ensure_demo_clips(tmp_path / "courses", tmp_path / "videos") == []


@pytest.mark.parametrize("url", ["demo:../x", "demo:T01", "demo:", "demo:a/b"])
def test_ensure_demo_clips_refuses_bad_demo_names(tmp_path: Path, url: str) -> None:
    write_course(tmp_path / "courses", "a.toml", "c", "课程", [("t01", "专题", url, 1)])
    with pytest.raises(ValueError, match="a.toml: topic 't01'"):
        ensure_demo_clips(tmp_path / "courses", tmp_path / "videos")
    assert not (tmp_path / "videos").exists()


# --- serving ----------------------------------------------------------------------------------


@pytest.fixture
def media_app(app: Flask, clip: Path, tmp_path: Path) -> Flask:
    """The test app serving tmp_path/videos, which holds the clip. Decoys sit one level up and
    beside it under names the route must refuse, so only the name check stands between them
    and a request (on a case-sensitive filesystem a missing file would 404 anyway)."""
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(clip, videos / "clip.mp4")
    shutil.copy(clip, tmp_path / "secret.mp4")
    for decoy in ("CLIP.mp4", "Clip.mp4", "clip.mp4.mp4", "..secret.mp4", "clip .mp4", "..mp4", "clip.MP4"):
        shutil.copy(clip, videos / decoy)
    app.config["DEMO_VIDEO_DIR"] = str(videos)
    if "media" not in app.blueprints:  # until create_app registers it
        app.register_blueprint(media.bp)
    return app


@pytest.fixture
def media_client(media_app: Flask):  # type: ignore[no-untyped-def]
    return media_app.test_client()


def test_full_get(media_client, clip: Path) -> None:  # type: ignore[no-untyped-def]
    data = clip.read_bytes()
    response = media_client.get("/media/videos/clip.mp4")
    assert response.status_code == 200
    assert response.data == data
    assert response.headers["Content-Type"] == "video/mp4"
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] and response.headers["Last-Modified"]
    assert response.cache_control.public and response.cache_control.max_age == media.MAX_AGE
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_head(media_client, clip: Path) -> None:  # type: ignore[no-untyped-def]
    response = media_client.head("/media/videos/clip.mp4")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(clip.stat().st_size)
    assert response.data == b""


@pytest.mark.parametrize("header, start, end", [
    ("bytes=0-99", 0, 99),
    ("bytes=1000-", 1000, None),
    ("bytes=-500", -500, None),
    ("bytes=100-999999999", 100, None),  # an end past the file is cut to it (RFC 9110 14.1.1)
])
def test_range(media_client, clip: Path, header: str, start: int,  # type: ignore[no-untyped-def]
               end: int | None) -> None:
    data = clip.read_bytes()
    size = len(data)
    first = start if start >= 0 else size + start
    last = end if end is not None else size - 1
    response = media_client.get("/media/videos/clip.mp4", headers={"Range": header})
    assert response.status_code == 206
    assert response.data == data[first:last + 1]
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
    assert response.headers["Content-Length"] == str(last - first + 1)
    assert response.headers["Content-Type"] == "video/mp4"
    assert response.headers["Accept-Ranges"] == "bytes"


def test_range_of_the_first_100_bytes(media_client, clip: Path) -> None:  # type: ignore[no-untyped-def]
    response = media_client.get("/media/videos/clip.mp4", headers={"Range": "bytes=0-99"})
    assert response.status_code == 206
    assert len(response.data) == 100
    assert response.headers["Content-Range"] == f"bytes 0-99/{clip.stat().st_size}"


@pytest.mark.parametrize("header", ["bytes={size}-", "bytes={size}-{beyond}", "bytes={beyond}-"])
def test_unsatisfiable_range(media_client, clip: Path, header: str) -> None:  # type: ignore[no-untyped-def]
    size = clip.stat().st_size
    response = media_client.get("/media/videos/clip.mp4",
                                headers={"Range": header.format(size=size, beyond=size + 100)})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{size}"


def test_revalidation_and_if_range(media_client, clip: Path) -> None:  # type: ignore[no-untyped-def]
    etag = media_client.get("/media/videos/clip.mp4").headers["ETag"]
    assert media_client.get("/media/videos/clip.mp4", headers={"If-None-Match": etag}).status_code == 304
    # A player resuming a download gets the rest only while the file is the one it started.
    same = media_client.get("/media/videos/clip.mp4", headers={"Range": "bytes=10-", "If-Range": etag})
    assert same.status_code == 206
    changed = media_client.get("/media/videos/clip.mp4", headers={"Range": "bytes=10-", "If-Range": '"old"'})
    assert changed.status_code == 200 and len(changed.data) == clip.stat().st_size


def test_default_directory_is_instance_videos(app: Flask) -> None:
    app.config.pop("DEMO_VIDEO_DIR", None)
    assert media.video_dir(app) == Path(app.instance_path) / "videos"
    app.config["DEMO_VIDEO_DIR"] = "/srv/videos"
    assert media.video_dir(app) == Path("/srv/videos")


BAD_PATHS = [
    "/media/videos/missing.mp4",
    "/media/videos/..%2Fsecret.mp4",
    "/media/videos/..%2fsecret.mp4",
    "/media/videos/%2e%2e%2Fsecret.mp4",
    "/media/videos/%2e%2e.mp4",
    "/media/videos/..secret.mp4",
    "/media/videos/CLIP.mp4",
    "/media/videos/Clip.mp4",
    "/media/videos/clip.mp4.mp4",
    "/media/videos/clip.MP4",
    "/media/videos/clip%00.mp4",
    "/media/videos/clip%20.mp4",
    "/media/videos/.mp4",
    "/media/videos/clip",
    "/media/videos/%2Ftmp%2Fsecret.mp4",
    "/media/videos/..%5Csecret.mp4",
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_bad_names_are_not_found(media_client, path: str) -> None:  # type: ignore[no-untyped-def]
    assert media_client.get(path).status_code == 404


def test_bad_names_are_not_found_over_http(media_app: Flask, live_server) -> None:  # type: ignore[no-untyped-def]
    """The same paths sent raw to a real HTTP server (no client-side normalisation)."""
    host, port = live_server.url.removeprefix("http://").split(":")
    for path in BAD_PATHS + ["/media/videos/../secret.mp4", "/media/../secret.mp4"]:
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        assert response.status == 404, (path, response.status)
        assert b"ftyp" not in body, path
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request("GET", "/media/videos/clip.mp4", headers={"Range": "bytes=0-99"})
    response = connection.getresponse()
    assert response.status == 206 and len(response.read()) == 100
    connection.close()


# --- video_url --------------------------------------------------------------------------------


@pytest.mark.parametrize("url, expected", [
    ("demo:t01", "/media/videos/t01.mp4"),
    ("demo:xinwei-mooc-t14", "/media/videos/xinwei-mooc-t14.mp4"),
    ("https://cdn.example.com/v/t01.mp4", "https://cdn.example.com/v/t01.mp4"),
    ("https://cdn.example.com/v/t01.mp4?sign=abc&t=1#x", "https://cdn.example.com/v/t01.mp4?sign=abc&t=1#x"),
])
def test_video_url(url: str, expected: str) -> None:
    assert media.video_url(url) == expected


@pytest.mark.parametrize("url", [
    "javascript:alert(1)",
    "JAVASCRIPT:alert(1)",
    "http://cdn.example.com/t01.mp4",
    "HTTPS://cdn.example.com/t01.mp4",
    "https://",
    "https:///path-only.mp4",
    "https://cdn.example.com/a b.mp4",
    "https://cdn.example.com/\"onerror=\"x",
    "https://[::1/t01.mp4",
    " https://cdn.example.com/t01.mp4",
    "//cdn.example.com/t01.mp4",
    "/media/videos/t01.mp4",
    "data:video/mp4;base64,AAAA",
    "demo:../x",
    "demo:..",
    "demo:T01",
    "demo:t01.mp4",
    "demo:a/b",
    "demo:",
    "",
])
def test_video_url_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        media.video_url(url)


# --- a real browser ---------------------------------------------------------------------------


def on_phone(drive: Callable[[Page], None]) -> None:
    """Run `drive` on a phone-sized chromium page (tests/browser.py's settings) in a thread of its own.

    Every module importing tests.browser's session-scoped `browser` gets its own copy, and a
    second sync Playwright in one thread fails ("Sync API inside the asyncio loop"); a thread
    has no loop. Launching here also lets players start without a user gesture.
    """
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with sync_playwright() as pw:
                chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=[*ARGS, "--autoplay-policy=no-user-gesture-required"])
                try:
                    context = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                                   user_agent=WECHAT_UA, locale="zh-CN", is_mobile=True,
                                                   has_touch=True)
                    page = context.new_page()
                    page.set_default_timeout(10_000)
                    drive(page)
                finally:
                    chromium.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="media-browser")
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the browser test hung"
    if failure:
        raise failure[0]


def test_chromium_plays_the_served_clip(media_app: Flask, live_server) -> None:  # type: ignore[no-untyped-def]
    """Debian's chromium decodes our H.264 MP4: it plays past one second and seeks (what resume does)."""
    result: dict = {}

    def drive(phone: Page) -> None:
        phone.goto(live_server.url + "/media/videos/clip.mp4")  # chromium's own media document
        result.update(phone.evaluate("""async () => {
            const video = document.querySelector('video');
            const canPlay = video.canPlayType('video/mp4; codecs="avc1.4D401E"');  // Main, level 3.0
            video.muted = true;
            await video.play();
            const started = performance.now();
            while (video.currentTime <= 1.1 && performance.now() - started < 8000) {
                await new Promise(resolve => setTimeout(resolve, 50));
            }
            const played = video.currentTime;
            video.pause();
            const seeked = new Promise(resolve => video.addEventListener('seeked', resolve, {once: true}));
            video.currentTime = 2.5;
            await seeked;
            return {canPlay, played, seekedTo: video.currentTime, duration: video.duration,
                    width: video.videoWidth, error: video.error && video.error.message};
        }"""))

    on_phone(drive)
    assert result["error"] is None
    assert result["canPlay"] == "probably"
    assert result["played"] > 1
    assert abs(result["seekedTo"] - 2.5) < 0.1
    assert abs(result["duration"] - SECONDS) <= 1 and result["width"] == 320
