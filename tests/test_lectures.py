"""Lecture uploads in the console: resumable chunks (out of order, sent twice, cut short), the probe's
refusals, the transcode job, and the published ladder in the blob store."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from content.videos import make_lecture
from database import get_database
from handlers.lectures import uploads
from jobs.queue import get_queue
from models import AuditEntry, ConsoleAccount, Job, VideoAsset, VideoUpload, VideoVersion
from tests.console_helpers import make_staff, sign_in
from web.blobs import get_blob_store

CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def lecture_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lecture(tmp_path_factory.mktemp("lectures") / "第一讲.mp4", seconds=12, width=640, height=360)


@pytest.fixture
def staff(app, monkeypatch, site):  # type: ignore[no-untyped-def]
    """A staff member signed in to the console (the demo catalog loaded)."""
    monkeypatch.setattr(uploads, "CHUNK_BYTES", CHUNK)
    get_queue(app).kick = lambda ids, delay=None: None  # type: ignore[method-assign]  # jobs run by hand below
    client = app.test_client()
    token = sign_in(client, app, make_staff(app))
    return {"client": client, "headers": {"X-CSRF-Token": token}}


def _start(client, staff, name: str, size: int, topic: str = "t01"):  # type: ignore[no-untyped-def]
    return client.post(f"/console/lectures/demo-course/{topic}/uploads", json={"file_name": name, "size": size},
                       headers=staff["headers"])


def _put(client, staff, state, index: int, data: bytes):  # type: ignore[no-untyped-def]
    return client.put(state["chunk_url"] + str(index), data=data, headers=staff["headers"],
                      content_type="application/octet-stream")


def _run_jobs(app) -> list[str]:  # type: ignore[no-untyped-def]
    outcomes = []
    for _ in range(4):
        with get_database(app).sessions() as session:
            pending = list(session.scalars(select(Job.id).where(Job.status == "pending", Job.kind.like("lectures.%"))))
        if not pending:
            break
        outcomes += [get_queue(app).execute(job_id) for job_id in pending]
    return outcomes


def test_an_upload_out_of_order_and_resent_is_transcoded_and_published(app, staff, lecture_file) -> None:  # type: ignore[no-untyped-def]
    client = staff["client"]
    data = lecture_file.read_bytes()
    started = _start(client, staff, lecture_file.name, len(data))
    assert started.status_code == 201
    state = started.get_json()
    count = state["chunks"]
    assert count == -(-len(data) // CHUNK) > 3
    chunks = [data[i * CHUNK:(i + 1) * CHUNK] for i in range(count)]
    # The last chunk first, then every other one; one chunk twice (a retry after a dropped answer).
    for index in [count - 1, *range(0, count - 1, 2), 0]:
        assert _put(client, staff, state, index, chunks[index]).status_code == 200
    early = client.post(state["complete_url"], headers=staff["headers"])
    assert early.status_code == 400 and "还有" in early.get_json()["message"]
    # The connection dropped: the page asks what arrived and sends the rest.
    resumed = client.get(state["state_url"]).get_json()
    assert resumed["received"] == sorted({count - 1, *range(0, count - 1, 2)})
    for index in sorted(set(range(count)) - set(resumed["received"])):
        assert _put(client, staff, state, index, chunks[index]).status_code == 200
    completed = client.post(state["complete_url"], headers=staff["headers"])
    assert completed.status_code == 200 and completed.get_json()["status"] == "probing"
    assert client.post(state["complete_url"], headers=staff["headers"]).status_code == 200  # asked twice: once
    assert _put(client, staff, state, 0, chunks[0]).status_code == 400  # nothing more after completion
    assert _run_jobs(app) == ["done", "done"]  # ingest, then transcode
    blobs = get_blob_store(app)
    with get_database(app).sessions() as session:
        version = session.scalars(select(VideoVersion)).one()
        asset = session.get(VideoAsset, version.asset_id)
        assert (version.status, version.number, version.width, version.height) == ("ready", 1, 640, 360)
        assert 11.5 <= version.seconds <= 12.5 and asset.current_version_id == version.id
        assert [r["name"] for r in version.renditions] == ["360p"]  # a 360p source is never upscaled
        assert blobs.get(version.source_key) == data  # the assembled file is the uploaded one, byte for byte
        assert blobs.get(version.prefix + "master.m3u8").startswith(b"#EXTM3U")
        assert blobs.size(version.prefix + "fallback.mp4") and blobs.size(version.prefix + "poster.jpg")
        upload = session.scalars(select(VideoUpload)).one()
        actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert not list(blobs.list(f"uploads/{upload.id}/"))  # the chunks are gone
    assert actions == ["lecture.upload", "lecture.uploaded", "lecture.published"]
    page = client.get("/console/lectures/demo-course/t01").get_data(as_text=True)
    assert "第 1 版（已发布）" in page and "已就绪" in page


def test_chunks_that_do_not_fit_are_refused_and_nothing_is_kept(app, staff, lecture_file) -> None:  # type: ignore[no-untyped-def]
    client = staff["client"]
    data = lecture_file.read_bytes()
    state = _start(client, staff, lecture_file.name, len(data)).get_json()
    short = _put(client, staff, state, 0, data[:CHUNK - 1])  # cut short by a dropped connection
    assert short.status_code == 400 and "应为" in short.get_json()["message"]
    assert _put(client, staff, state, state["chunks"], b"x").status_code == 400  # past the end
    assert client.put(state["chunk_url"] + "-1", data=b"x", headers=staff["headers"]).status_code == 404
    assert client.get(state["state_url"]).get_json()["received"] == []
    busy = _start(client, staff, "another.mp4", 10)
    assert busy.status_code == 409 and "还在上传" in busy.get_json()["message"]  # one upload per topic at a time
    no_csrf = client.put(state["chunk_url"] + "0", data=data[:CHUNK], content_type="application/octet-stream")
    assert no_csrf.status_code == 400


@pytest.mark.parametrize("name,size,code", [("slides.pdf", 10, "not_video"), ("lecture.mp4", 0, "empty"),
                                            ("lecture.mp4", 5 * 1024 ** 3, "too_big")])
def test_hopeless_uploads_are_refused_before_a_byte_is_sent(app, staff, name, size, code) -> None:  # type: ignore[no-untyped-def]
    client = staff["client"]
    refused = _start(client, staff, name, size)
    assert refused.status_code == 400 and refused.get_json()["error"] == code
    assert _start(client, staff, "x.mp4", 10, topic="no-such-topic").status_code == 404


def test_a_file_that_is_not_a_lecture_fails_with_the_probes_reason(app, staff) -> None:  # type: ignore[no-untyped-def]
    client = staff["client"]
    fake = ("这不是视频。\n" * 20000).encode()  # named .mp4, but text
    state = _start(client, staff, "伪装.mp4", len(fake)).get_json()
    for index in range(state["chunks"]):
        assert _put(client, staff, state, index, fake[index * CHUNK:(index + 1) * CHUNK]).status_code == 200
    assert client.post(state["complete_url"], headers=staff["headers"]).status_code == 200
    assert _run_jobs(app) == ["done"]  # probed and refused: nothing queued after it
    with get_database(app).sessions() as session:
        version = session.scalars(select(VideoVersion)).one()
        asset = session.get(VideoAsset, version.asset_id)
        assert version.status == "failed" and "无法识别" in version.error and asset.current_version_id is None
    assert not list(get_blob_store(app).list("uploads/")) and not list(get_blob_store(app).list("lectures/"))
    page = client.get("/console/lectures/demo-course/t01").get_data(as_text=True)
    assert "未通过" in page and "无法识别" in page
    # A new upload may follow at once.
    assert _start(client, staff, "第一讲.mp4", 100).status_code == 201


def test_staff_upload_a_lecture_in_the_browser_through_a_dropped_chunk(app, live_server, browser, staff,
                                                                        lecture_file) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    from tests.conftest import ARTIFACTS
    from tests.console_helpers import PASSWORD

    with get_database(app).sessions() as session:
        username = session.scalars(select(ConsoleAccount.username)).one()
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(15_000)
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    dropped: list[str] = []

    def drop_once(route) -> None:  # type: ignore[no-untyped-def]
        if not dropped:  # the connection breaks on chunk 1 once; the page sends it again
            dropped.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/chunks/1", drop_once)
    try:
        page.goto(f"{live_server.url}/console/lectures/demo-course/t01")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{live_server.url}/console/lectures/demo-course/t01")
        page.set_input_files("#upload-file", str(lecture_file))
        page.get_by_role("button", name="开始上传").click()
        expect(page.locator("#upload-text")).to_contain_text("检查文件", timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "console-lecture-uploaded.png"), full_page=True)
        assert _run_jobs(app) == ["done", "done"]
        expect(page.locator("tr[data-status=ready]")).to_contain_text("第 1 版（已发布）", timeout=15_000)
        page.screenshot(path=str(ARTIFACTS / "console-lecture-ready.png"), full_page=True)
        page.goto(f"{live_server.url}/console/lectures/")
        expect(page.locator("table.data")).to_contain_text("第 1 版 · 12 秒")
        page.screenshot(path=str(ARTIFACTS / "console-lectures.png"), full_page=True)
    finally:
        context.close()
    assert dropped and refused == []
    with get_database(app).sessions() as session:
        assert get_blob_store(app).get(session.scalars(select(VideoVersion)).one().source_key) == \
            lecture_file.read_bytes()


def test_chunks_sent_in_parallel_are_all_recorded(app, live_server, staff, lecture_file) -> None:  # type: ignore[no-untyped-def]
    """Several chunks at once over real HTTP (the page sends three at a time): each lands once, none
    is written away by another's update of the list."""
    import threading

    import requests

    client, data = staff["client"], lecture_file.read_bytes()
    state = _start(client, staff, lecture_file.name, len(data)).get_json()
    cookies = {c.key: c.value for c in client._cookies.values()}  # the staff member's signed-in browser
    errors: list[int] = []

    def send(index: int) -> None:
        response = requests.put(live_server.url + state["chunk_url"] + str(index), cookies=cookies, timeout=30,
                                data=data[index * CHUNK:(index + 1) * CHUNK], headers=staff["headers"])
        if response.status_code != 200:
            errors.append(response.status_code)

    threads = [threading.Thread(target=send, args=(index,)) for index in range(state["chunks"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert client.get(state["state_url"]).get_json()["received"] == list(range(state["chunks"]))
    assert client.post(state["complete_url"], headers=staff["headers"]).status_code == 200
