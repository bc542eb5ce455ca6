"""bench/video, delivery half: first frame, stalls and rebuffer ratio in a throttled Chromium, ladder against single file.

The app runs on the embedded default (SQLite, local blob store) over real HTTP on loopback. One
topic plays the transcoded ladder through the real topic page and player (hls.js); another plays
today's single-file path: the top rung's picture as one progressive MP4 (+faststart), served by
the app with byte ranges, as a catalog `demo:` video is. Each (network, path) pair gets a fresh
phone-sized browser context throttled with Network.emulateNetworkConditions, opens the page once to
warm its static files (a student opens 14 topics; the scripts are fetched once), then loads it
again and plays at 1× for `window` seconds:

- time to first frame: from the second load's navigation start to the first `playing` event;
- stalls: `waiting` events after playback began; rebuffer ratio: time spent waiting over
  (time waiting + time playing) in the window;
- for the ladder, the rung it started on and the rung it ended on.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

NETWORKS = (("400k", 400), ("1.5M", 1500), ("5M", 5000))
LATENCY_MS = 60  # a campus Wi-Fi's round trip to a CDN in the same province
CHROMIUM = "/usr/bin/chromium"


def _MEDIA(url: str) -> bool:  # noqa: N802 - a route matcher, named like the patterns it stands for
    return any(part in url for part in (".m3u8", ".ts?", ".mp4", "/blobs/"))
# Recorded by the page from its own events, so the browser's clock measures the browser.
_PROBE = """() => {
  const v = document.getElementById('player');
  const s = window.benchState = {first: null, stalls: 0, waiting: 0, since: null, playing: false};
  v.addEventListener('playing', () => {
    const now = performance.now();
    if (s.first === null) s.first = now;
    if (s.since !== null) { s.waiting += now - s.since; s.since = null; }
    s.playing = true;
  });
  v.addEventListener('waiting', () => {
    if (s.first !== null && s.since === null) { s.stalls += 1; s.since = performance.now(); }
  });
  v.muted = true;
  v.play().catch(() => {});
}"""
_READ = """() => { const s = window.benchState, now = performance.now();
  const waiting = s.waiting + (s.since !== null ? now - s.since : 0);
  const info = window.xinweiPlayerInfo ? window.xinweiPlayerInfo() : null;
  return {first: s.first, stalls: s.stalls, waiting: waiting, now: now,
          position: document.getElementById('player').currentTime, info: info}; }"""


def measure(ladder: Path, single: Path, seconds: float, window: float,
            networks: tuple[tuple[str, int], ...] = NETWORKS, browser: Any = None) -> list[dict[str, Any]]:
    """Rows of figures, one per network and path, in one run on this machine. `browser`: a running
    Playwright Chromium to use (a test's); else one is started here."""
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    work = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    try:
        app, user_id = _site(work, ladder, single, seconds)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        quiet = logging.getLogger("werkzeug")
        level, quiet.level = quiet.level, logging.ERROR
        rows = []
        def play_all(browser: Any) -> None:
            for name, kbps in networks:
                for path, code in (("ladder", "bench-ladder"), ("single file", "bench-single")):
                    row = _play(browser, app, base, user_id, code, kbps, window)
                    rows.append({"network": name, "path": path, **row})
                    print(f"  {name:>5} {path:<11} {row}", flush=True)
        try:
            if browser is not None:
                play_all(browser)
            else:
                with sync_playwright() as pw:
                    own = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-quic"])
                    play_all(own)
                    own.close()
        finally:
            quiet.level = level
            server.shutdown()
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _site(work: Path, ladder: Path, single: Path, seconds: float) -> tuple[Any, int]:
    """A fresh embedded app and a verified student: one course plays the published ladder, one the single file."""
    from alembic import command

    from app import create_app
    from cli import alembic_config
    from database import get_database
    from handlers.catalog.loader import load_catalog, parse_catalog
    from tests.factories import course, q, to_toml, verified_student
    from tests.lecture_media import publish

    url = f"sqlite:///{work / 'bench.db'}"
    cfg = alembic_config(url)
    cfg.attributes["configure_logging"] = False
    command.upgrade(cfg, "head")
    videos = work / "videos"
    videos.mkdir()
    shutil.copy(single, videos / "bench-single.mp4")
    app = create_app({"DATABASE_URL": url, "XINWEI_ENV": "development", "INSTANCE_PATH": str(work),
                      "TESTING": True, "QUEUE_SQLITE_PATH": str(work / "huey.db"), "DEMO_VIDEO_DIR": str(videos)})
    with get_database(app).sessions() as session:
        # Two one-topic courses, so each path is a first topic, open to the student at once.
        for code, title, video in (("bench-ladder", "讲座（多码率）", "demo:bench-unused"),
                                   ("bench-single", "讲座（单文件）", "demo:bench-single")):
            data = course(code=code, title=title)
            data["topics"] = [{"code": "t01", "title": title, "summary": "基准测试",
                               "video": {"url": video, "seconds": round(seconds)},
                               "questions": [q("t01-q1", 60), q("t01-q2", 40)]}]
            load_catalog(session, parse_catalog(to_toml(data), f"{code}.toml"), f"{code}.toml")
        user_id = verified_student(session, "基准大学", "o_bench_video", "B001", "周九")
        session.commit()
    publish(app, ladder, "bench-ladder", "t01", seconds)
    return app, user_id


def _play(browser: Any, app: Any, base: str, user_id: int, code: str, kbps: int, window: float) -> dict[str, Any]:
    from tests.browser import ANDROID_WECHAT_UA, phone_page, throttle
    from tests.factories import browser_sign_in

    with phone_page(browser, ANDROID_WECHAT_UA, 120_000) as (page, _):
        browser_sign_in(app, page, base, user_id, "o_bench_video")
        throttle(page, kbps, LATENCY_MS)
        url = f"{base}/h5/courses/{code}/topics/t01"
        # Warm the static files, as the student's earlier topics did, but not the lecture: no
        # media request may reach the cache before the measured load.
        page.route(_MEDIA, lambda route: route.abort())
        page.goto(url)
        page.wait_for_function("() => window.xinweiReady && window.xinweiReady()")
        page.goto("about:blank")
        page.unroute(_MEDIA)
        page.goto(url, wait_until="commit")
        page.wait_for_function("() => document.getElementById('player') && window.xinweiReady"
                               " && window.xinweiReady()")
        page.evaluate(_PROBE)
        started = time.monotonic()
        page.wait_for_function("() => window.benchState.first !== null", timeout=120_000)
        first_info = page.evaluate(_READ)["info"]
        time.sleep(max(0.0, window - (time.monotonic() - started)))
        state = page.evaluate(_READ)
        played = state["now"] - state["first"]
        row: dict[str, Any] = {
            "first_frame_s": round(state["first"] / 1000, 2),
            "stalls": state["stalls"],
            "rebuffer_ratio": round(state["waiting"] / played, 4) if played > 0 else None,
            "position_s": round(state["position"], 1),
        }
        if state["info"]:
            row["started_on"] = f"{first_info['height']}p" if first_info else None
            row["ended_on"] = f"{state['info']['height']}p"
            row["switches"] = state["info"]["switches"]
        return row
