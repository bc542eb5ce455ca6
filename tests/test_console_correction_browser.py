"""In a real browser: staff sign in, find a certificate with a pending correction, approve it, and see version 2."""
from __future__ import annotations

from playwright.sync_api import Browser, expect
from sqlalchemy import select

from database import get_database
from models import Certificate, ConsoleAccount
from tests.conftest import ARTIFACTS
from tests.console_helpers import PASSWORD, make_staff
from tests.factories import ask, audit, claim_as, course, to_toml


def test_staff_approve_a_correction_in_the_browser(app, live_server, browser: Browser, graduates) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[2])
    ask(app, graduates[2], first.id, {"holder_name": "林晓满"}, "身份证上是「晓」字")
    staff = make_staff(app)
    with get_database(app).sessions() as session:
        username = session.get(ConsoleAccount, staff).username
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{live_server.url}/console/certificates/")  # anonymous: off to sign-in, then back
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/console/certificates/")
        expect(page.get_by_role("link", name="更正申请（待处理 1）")).to_be_visible()

        page.fill("input[name=q]", "林小满三")
        page.get_by_role("button", name="查询").click()
        page.get_by_role("link", name=first.serial).click()
        expect(page.locator("#corrections")).to_contain_text("身份证上是「晓」字")
        page.fill("#corrections textarea[name=note]", "已核对身份证")
        page.get_by_role("button", name="批准并签发新版本").click()

        expect(page.get_by_role("status")).to_contain_text("已批准更正")
        expect(page.locator("h2").first).to_contain_text("当前版本：第 2 版")
        expect(page.locator("#current-status")).to_have_text("有效")
        expect(page.locator("#corrections")).to_contain_text("已核对身份证")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "console-correction.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(ARTIFACTS / "console-correction-phone.png"), full_page=True)
    finally:
        context.close()
    with get_database(app).sessions() as session:
        newest = session.scalar(select(Certificate).where(Certificate.serial == first.serial)
                                .order_by(Certificate.version.desc()).limit(1))
        assert newest.version == 2 and newest.holder_name == "林晓满" and newest.status == "valid"
    [entry] = audit(app, "certificate.correction_approve")
    assert entry.account_id == staff and entry.note == "已核对身份证"


def test_staff_load_a_catalog_in_the_browser(app, live_server, browser: Browser, tmp_path) -> None:  # type: ignore[no-untyped-def]

    staff = make_staff(app)
    with get_database(app).sessions() as session:
        username = session.get(ConsoleAccount, staff).username
    bad = course(pass_mark=120)
    bad["topics"][1]["questions"][0]["answer"] = ["Z"]
    (tmp_path / "bad.toml").write_text(to_toml(bad), encoding="utf-8")
    (tmp_path / "good.toml").write_text(to_toml(course()), encoding="utf-8")
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{live_server.url}/console/content/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/console/content/")
        page.set_input_files("input[name=file]", str(tmp_path / "bad.toml"))
        page.get_by_role("button", name="校验并预览").click()
        expect(page.locator("#problems")).to_contain_text("bad.toml 未通过校验：2 个问题")
        expect(page.locator("#problems")).to_contain_text("pass_mark = 120")
        expect(page.locator("#problems tbody tr").first).to_contain_text(
            "课程设置（[course]）：及格分（pass_mark）须在 1 到 100 之间（总分 100 分），现为 120")
        expect(page.locator("#problems tbody tr").nth(1)).to_contain_text(
            "专题 2（code=t02）的第 1 题（code=t02-q1）：答案（answer）中的 \"Z\" 不是本题的选项")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "console-content-problems.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(ARTIFACTS / "console-content-problems-phone.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.set_input_files("input[name=file]", str(tmp_path / "good.toml"))
        page.get_by_role("button", name="校验并预览").click()
        expect(page.locator("#preview")).to_contain_text("2 个专题，4 道题")
        page.screenshot(path=str(ARTIFACTS / "console-content-preview.png"), full_page=True)
        page.get_by_role("button", name="确认载入").click()
        expect(page.get_by_role("status")).to_contain_text("已载入为第 1 版")
    finally:
        context.close()
    assert [e.after["version"] for e in audit(app, "content.load")] == [1]
