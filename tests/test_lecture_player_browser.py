"""The lecture player in a phone-sized Chromium, on real HTTP and a throttled network.

A generated 3-minute 720p lecture, transcoded into the production ladder, published to the topic.
Android WeChat's browser is Chromium with Media Source Extensions, so these pages play through
hls.js (iOS plays the same playlists natively). The network is slowed by the DevTools protocol
(Network.emulateNetworkConditions), as a dormitory's Wi-Fi would slow it.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import Page
from sqlalchemy import select, update

from content.videos import make_lecture
from database import get_database
from handlers.catalog.loader import load_catalog, parse_catalog
from handlers.lectures import uploads
from jobs.queue import get_queue
from models import Job, Question, QuizAttempt, VideoAsset, VideoVersion, WatchSession
from tests.browser import throttle
from tests.conftest import ARTIFACTS
from tests.console_helpers import make_staff
from tests.console_helpers import sign_in as console_sign_in
from tests.factories import browser_sign_in, course, q, to_toml, verified_student
from tests.lecture_media import ladder_folder, publish
from tests.test_training_e2e import watch_some

LECTURE_SECONDS = 180
BEAT_MS = 1000
@pytest.fixture(scope="module")
def lecture() -> Path:
    return ladder_folder(LECTURE_SECONDS)


def student_on_the_topic(app, live_server, page: Page, lecture: Path, throttle_kbps: int | None = None) -> Page:  # type: ignore[no-untyped-def]
    data = course()
    data["topics"] = [{"code": "t01", "title": "专题一 · 心理委员的角色", "summary": "心理委员是什么、做什么。",
                       "video": {"url": "demo:lecture-t01", "seconds": 60},
                       "questions": [q("t01-q1", 60), q("t01-q2", 40)]}]
    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(to_toml(data), "lecture.toml"), "lecture.toml")
        user_id = verified_student(session, "讲座大学", "o_lecture", "L001", "孙八")
        session.commit()
    publish(app, lecture)
    browser_sign_in(app, page, live_server.url, user_id, "o_lecture")
    page.add_init_script(f"window.HEARTBEAT_MS = {BEAT_MS};")
    if throttle_kbps:
        throttle(page, throttle_kbps)
    page.goto(f"{live_server.url}/h5/courses/demo-course/topics/t01")
    page.wait_for_function("() => window.xinweiReady && window.xinweiReady() && window.xinweiPlayerInfo")
    return page


def play(page: Page) -> None:
    page.evaluate("() => { const v = document.getElementById('player'); v.muted = true; return v.play(); }")


def info(page: Page) -> dict:  # type: ignore[type-arg]
    return page.evaluate("() => window.xinweiPlayerInfo()")  # type: ignore[no-any-return]


def count_stalls(page: Page) -> None:
    # "waiting" after playback began is a stall: the picture froze for want of data.
    page.evaluate("""() => { const v = document.getElementById('player'); window.stalls = 0;
        v.addEventListener('playing', () => { window.playing = true; }, {once: true});
        v.addEventListener('waiting', () => { if (window.playing) window.stalls += 1; }); }""")


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"lecture-{name}.png"), full_page=True)


def verified(app) -> WatchSession:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        return session.scalars(select(WatchSession).order_by(WatchSession.id.desc()).limit(1)).one()


@pytest.mark.realtime  # three minutes of real playback: once per suite, beside the SQLite pass (scripts/test.sh)
def test_at_400_kbit_s_the_lecture_starts_on_the_lowest_rung_and_plays_through(app, live_server, android,
                                                                                lecture) -> None:  # type: ignore[no-untyped-def]
    page = student_on_the_topic(app, live_server, android, lecture, throttle_kbps=400)
    count_stalls(page)
    started = time.monotonic()
    play(page)
    page.wait_for_function("() => window.playing === true", timeout=10_000)
    first_frame = time.monotonic() - started
    shot(page, "400k-playing")
    page.get_by_role("link", name="开始测试").wait_for(state="visible", timeout=(LECTURE_SECONDS + 30) * 1000)
    took = time.monotonic() - started
    state = info(page)
    assert state["mode"] == "hls"
    assert state["height"] == 360 and state["level"] == 0, state  # never climbed past what the link carries
    assert page.evaluate("() => window.stalls") == 0
    assert 0.9 * LECTURE_SECONDS <= took <= 0.9 * LECTURE_SECONDS + first_frame + 10
    watch = verified(app)
    assert watch.completed_at is not None and watch.video_seconds == LECTURE_SECONDS
    shot(page, "400k-completed")


def test_unthrottled_the_player_climbs_to_720p_and_the_menu_chooses(app, live_server, android, lecture) -> None:  # type: ignore[no-untyped-def]
    page = student_on_the_topic(app, live_server, android, lecture)
    play(page)
    page.wait_for_function("() => window.xinweiPlayerInfo().height === 720", timeout=30_000)
    assert page.locator("#quality-current").inner_text() == "自动（高清）"
    shot(page, "climbed-720p")
    page.locator("#quality-choices").get_by_role("button", name="流畅").click()
    page.wait_for_function("() => window.xinweiPlayerInfo().height === 360", timeout=15_000)
    assert page.locator("#quality-current").inner_text() == "流畅"
    assert page.locator("#quality-choices button[aria-pressed=true]").inner_text() == "流畅"
    page.locator("#quality-choices").get_by_role("button", name="自动").click()
    assert page.locator("#quality-current").inner_text().startswith("自动")
    assert info(page)["auto"] is True
    shot(page, "menu")


def test_a_reload_resumes_from_the_verified_position(app, live_server, android, lecture) -> None:  # type: ignore[no-untyped-def]
    page = student_on_the_topic(app, live_server, android, lecture)
    play(page)
    page.wait_for_function("() => document.getElementById('player').currentTime >= 8", timeout=20_000)
    page.evaluate("() => window.xinweiBeat()")
    page.wait_for_timeout(300)
    where = verified(app).position
    assert where >= 7
    page.reload()
    page.wait_for_function("() => window.xinweiReady && window.xinweiReady() && window.xinweiPlayerInfo")
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    # hls.js applies its start position a moment after the metadata is in: wait for the seek itself.
    page.wait_for_function("() => document.getElementById('player').currentTime > 0", timeout=10_000)
    resumed = page.evaluate("() => document.getElementById('player').currentTime")
    assert abs(resumed - where) < 1.0, (resumed, where)
    assert "从上次观看的位置继续" in page.locator("#status").inner_text()
    play(page)
    page.wait_for_function(f"() => document.getElementById('player').currentTime >= {where + 2}")
    page.evaluate("() => window.xinweiBeat()")
    page.wait_for_timeout(300)
    assert verified(app).position >= where + 1  # heartbeats count after the reload


@pytest.mark.realtime  # waits for a minute of buffer to run out: beside the SQLite pass, with lenient timeouts
def test_expired_links_are_renewed_and_playback_goes_on(app, live_server, android, lecture) -> None:  # type: ignore[no-untyped-def]
    page = student_on_the_topic(app, live_server, android, lecture)
    play(page)
    page.wait_for_function("() => document.getElementById('player').currentTime >= 2", timeout=20_000)
    # From now on every segment link answers as an expired one would, until the player has asked
    # for fresh links.
    renewed: list[str] = []
    page.on("request", lambda r: renewed.append(r.url) if r.url.endswith("/h5/api/watch/media") else None)

    def expired(route) -> None:  # type: ignore[no-untyped-def]
        if renewed:
            route.continue_()
        else:
            route.fulfill(status=403, body="expired")
    page.route(lambda url: ".ts?" in url, expired)
    page.locator("#player-note").get_by_text("网络不稳定，正在重新连接").wait_for(timeout=60_000)
    shot(page, "reconnecting")
    page.wait_for_function("() => document.getElementById('player-note').hidden", timeout=60_000)
    at = page.evaluate("() => document.getElementById('player').currentTime")
    page.wait_for_function(f"() => document.getElementById('player').currentTime >= {at + 4}", timeout=30_000)
    assert renewed and info(page)["recoveries"] >= 1


def test_a_lecture_uploaded_in_the_console_is_watched_resumed_and_its_test_passed(
        app, live_server, android, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Done means this: staff upload a lecture; minutes later a student watches it through the
    ladder, resumes it after a reload, and passes the topic's test."""
    monkeypatch.setattr(uploads, "CHUNK_BYTES", 256 * 1024)
    get_queue(app).kick = lambda ids, delay=None: None  # type: ignore[method-assign]  # jobs run below, in order
    source = make_lecture(tmp_path / "第一讲.mp4", seconds=16, width=640, height=360)
    page = student_on_the_topic(app, live_server, android, ladder_folder(12, width=640, height=360))
    with get_database(app).sessions() as session:  # the catalog's topic, without the ready-made lecture
        session.execute(update(VideoAsset).values(current_version_id=None))
        session.commit()

    staff = app.test_client()
    headers = {"X-CSRF-Token": console_sign_in(staff, app, make_staff(app))}
    data = source.read_bytes()
    state = staff.post("/console/lectures/demo-course/t01/uploads", json={"file_name": source.name, "size": len(data)},
                       headers=headers).get_json()
    for index in range(state["chunks"]):
        piece = data[index * state["chunk_bytes"]:(index + 1) * state["chunk_bytes"]]
        assert staff.put(state["chunk_url"] + str(index), data=piece, headers=headers,
                         content_type="application/octet-stream").status_code == 200
    assert staff.post(state["complete_url"], headers=headers).status_code == 200
    for _ in range(3):
        with get_database(app).sessions() as session:
            pending = list(session.scalars(select(Job.id).where(Job.status == "pending", Job.kind.like("lectures.%"))))
        for job_id in pending:
            get_queue(app).execute(job_id)
    with get_database(app).sessions() as session:
        uploaded = session.scalar(select(VideoAsset.current_version_id))
        assert session.get(VideoVersion, uploaded).number == 2  # the console's upload, published

    page.reload()
    page.wait_for_function("() => window.xinweiReady && window.xinweiReady() && window.xinweiPlayerInfo")
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    assert info(page)["mode"] == "hls" and verified(app).video_version_id == uploaded
    assert verified(app).video_seconds == 16  # the probe's length, not the catalog's 60 s
    watch_some(app, page, 6)
    page.reload()
    page.get_by_text("从上次观看的位置继续").wait_for()
    state = watch_some(app, page, 16)
    assert state["completed"]
    page.get_by_role("link", name="开始测试").click()
    page.get_by_text("专题测试").wait_for()
    with get_database(app).sessions() as session:
        attempt = session.scalars(select(QuizAttempt)).one()
        keys = [(item["question_id"], session.get(Question, item["question_id"]).answer) for item in attempt.draw]
    for question_id, answer in keys:
        for key in answer:
            page.locator(f"label:has(input[name='q{question_id}'][value='{key}'])").click()
    page.get_by_role("button", name="提交答案").click()
    page.get_by_text("本专题测试通过").wait_for()
    shot(page, "uploaded-then-passed")
