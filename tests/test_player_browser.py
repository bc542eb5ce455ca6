"""Honest players in a phone-sized Chromium, on the server's real clock: real playback of a real clip.

Each test plays the topic's video as a student would (1x, 2x, a pause, a seek back, beats lost
to the network for 20 s, the page frozen in the background) and checks that the server says
"watched" exactly when the playback reached the 90 % threshold: never earlier (that would be
the clock believing more than time allows) and not later than a beat interval after it (that
would be honest time lost). The player beats every 0.5 s here instead of 15 s.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from content.videos import make_demo_clip
from database import get_database
from handlers.accounts.identity import ProfileForm, submit_profile
from handlers.catalog.loader import load_catalog, parse_catalog
from models import RosterEntry, School, User, WatchSession
from models.base import utcnow
from tests.conftest import ARTIFACTS
from tests.factories import browser_sign_in, course, q, to_toml

BEAT_MS = 500


def player_course(seconds: int) -> dict:  # type: ignore[type-arg]
    data = course()
    data["topics"] = [{"code": "t01", "title": "专题一", "summary": "概要",
                       "video": {"url": "demo:player-t01", "seconds": seconds},
                       "questions": [q("t01-q1", 60), q("t01-q2", 40)]}]
    return data


def open_player(app, live_server, phone, tmp_path: Path, seconds: int):  # type: ignore[no-untyped-def]
    """A verified student on the topic page of a `seconds`-long clip, signed in by a test-only cookie."""
    app.config["DEMO_VIDEO_DIR"] = str(tmp_path)
    make_demo_clip(tmp_path / "player-t01.mp4", title="播放测试", subtitle="", seconds=seconds, width=160, height=96)
    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(to_toml(player_course(seconds)), "player.toml"), "player.toml")
        school, student = School(name="播放大学"), User(openid="o_player")
        session.add_all([school, student])
        session.flush()
        session.add(RosterEntry(school_id=school.id, student_number="P001", real_name="郑十"))
        submit_profile(session, student.id, ProfileForm(school.id, "郑十", "心理学院", "P001", "2024级", "13900000000"),
                       now=utcnow())
        session.commit()
        user_id = student.id
    browser_sign_in(app, phone, live_server.url, user_id, "o_player")
    phone.add_init_script(f"window.HEARTBEAT_MS = {BEAT_MS};")
    phone.goto(f"{live_server.url}/h5/courses/demo-course/topics/t01")
    phone.wait_for_function("() => window.xinweiReady && window.xinweiReady()")
    phone.wait_for_function("() => document.getElementById('player').readyState >= 1")
    return phone


def play(page, rate: float = 1.0) -> float:  # type: ignore[no-untyped-def]
    page.evaluate("(r) => { const v = document.getElementById('player'); v.muted = true; v.playbackRate = r;"
                  " return v.play(); }", rate)
    return time.monotonic()


def wait_completed(page, timeout_s: float) -> float:  # type: ignore[no-untyped-def]
    page.get_by_role("link", name="开始测试").wait_for(state="visible", timeout=timeout_s * 1000)
    return time.monotonic()




def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"player-{name}.png"), full_page=True)


def verified(app) -> WatchSession:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        return session.scalars(select(WatchSession).order_by(WatchSession.id.desc()).limit(1)).one()


def no_jump_back(page) -> None:  # type: ignore[no-untyped-def]
    assert "不能跳过" not in page.locator("#status").inner_text()


@pytest.mark.parametrize("rate", [1.0, 2.0])
def test_playing_at_1x_and_2x_completes_when_the_threshold_is_reached(app, live_server, phone, tmp_path, rate) -> None:  # type: ignore[no-untyped-def]
    seconds = 6
    page = open_player(app, live_server, phone, tmp_path, seconds)
    started = play(page, rate)
    done = wait_completed(page, 20)
    took = done - started
    need = 0.9 * seconds / rate
    assert need - 0.05 <= took <= need + 2.5, f"{rate}x: completed after {took:.2f} s, threshold at {need:.2f} s"
    no_jump_back(page)
    shot(page, f"completed-{rate:g}x")


def test_faster_than_the_course_allows_is_held_at_2x(app, live_server, phone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    page = open_player(app, live_server, phone, tmp_path, 6)
    play(page, 4.0)
    assert page.evaluate("() => document.getElementById('player').playbackRate") == 2


def test_pause_and_seek_back_lose_nothing(app, live_server, phone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seconds = 8
    page = open_player(app, live_server, phone, tmp_path, seconds)
    play(page)
    page.wait_for_function("() => document.getElementById('player').currentTime >= 3")
    page.evaluate("() => document.getElementById('player').pause()")
    time.sleep(3)  # paused: earns nothing, loses nothing
    page.evaluate("() => { document.getElementById('player').currentTime = 1; }")  # seek back
    resumed = play(page)
    done = wait_completed(page, 30)
    # From 1 s to the threshold (7.2 s) at 1x, beats every 0.5 s.
    assert 6.2 - 0.05 <= done - resumed <= 6.2 + 2.5
    no_jump_back(page)
    assert verified(app).watched_seconds <= seconds


def test_a_seek_ahead_after_a_pause_is_sent_back(app, live_server, phone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    page = open_player(app, live_server, phone, tmp_path, 8)
    play(page)
    page.wait_for_function("() => document.getElementById('player').currentTime >= 1")
    page.evaluate("() => document.getElementById('player').pause()")
    time.sleep(4)
    page.evaluate("() => { document.getElementById('player').currentTime = 7.5; }")
    play(page)
    page.wait_for_function("() => document.getElementById('player').currentTime < 5")
    page.locator("#status").get_by_text("不能跳过").wait_for()
    page.locator(".weui-toptips_warn").get_by_text("不能跳过").wait_for()  # WeUI's top tips say it too
    shot(page, "seek-ahead-refused")


def test_another_tab_takes_over_and_the_student_may_take_it_back(app, live_server, phone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    page = open_player(app, live_server, phone, tmp_path, 8)
    play(page)
    page.wait_for_function("() => document.getElementById('player').currentTime >= 1")
    other = page.context.new_page()  # the same student opens the video again, in another tab
    other.goto(page.url)
    other.wait_for_function("() => window.xinweiReady && window.xinweiReady()")
    taken = verified(app).id
    page.evaluate("() => window.xinweiBeat()")
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("这里已暂停计时").wait_for()
    assert page.evaluate("() => document.getElementById('player').paused")
    shot(page, "taken-over")
    dialog.get_by_role("button", name="在这里继续").click()
    page.wait_for_function("() => window.xinweiReady && window.xinweiReady()")
    assert dialog.count() == 0
    assert verified(app).id > taken and verified(app).active  # a new watch session here; the other tab's stops earning
    other.close()


def test_beats_lost_for_20_seconds_lose_nothing(app, live_server, phone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seconds = 26
    page = open_player(app, live_server, phone, tmp_path, seconds)
    # Load the whole clip first, so only the heartbeats are cut off.
    page.evaluate("() => { const v = document.getElementById('player'); v.preload = 'auto'; v.load(); }")
    page.wait_for_function("() => { const v = document.getElementById('player'); return v.buffered.length &&"
                           " v.buffered.end(0) >= v.duration - 0.5; }")
    page.wait_for_function("() => window.xinweiReady && window.xinweiReady()")
    started = play(page)
    page.wait_for_function("() => document.getElementById('player').currentTime >= 2")
    page.route("**/h5/api/heartbeat", lambda route: route.abort())
    time.sleep(20)
    page.unroute("**/h5/api/heartbeat")
    done = wait_completed(page, 20)
    need = 0.9 * seconds
    assert need - 0.05 <= done - started <= need + 2.5
    no_jump_back(page)
    shot(page, "after-network-loss")


def test_a_page_frozen_in_the_background_then_shown_again(app, live_server, phone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seconds = 8
    page = open_player(app, live_server, phone, tmp_path, seconds)
    started = play(page)
    page.wait_for_function("() => document.getElementById('player').currentTime >= 2")
    # The phone locks: WeChat pauses the video and the page's scripts stop.
    page.evaluate("() => document.getElementById('player').pause()")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Page.setWebLifecycleState", {"state": "frozen"})
    time.sleep(5)
    cdp.send("Page.setWebLifecycleState", {"state": "active"})
    play(page)
    done = wait_completed(page, 20)
    need = 0.9 * seconds + 5
    assert need - 0.05 <= done - started <= need + 3
    no_jump_back(page)
