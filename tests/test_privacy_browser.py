"""The privacy pages on a phone (390×844, WeChat's browser): consent asked before learning, the notice,
我的数据 with a copy to download, withdrawing with its consequence said first, and 注销 with its
cooling-off — screenshots in test-artifacts/privacy-*.png."""
from __future__ import annotations

import io
import zipfile

import pytest
from sqlalchemy import select

from database import get_database
from handlers.privacy import requests
from jobs.queue import get_queue
from models import Consent, DataRequest, Job
from tests.conftest import ARTIFACTS
from tests.factories import browser_sign_in


def _screen(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"privacy-{name}.png"), full_page=True)
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{name}: the page scrolls sideways by {overflow}px"


def _run_copy_jobs(app) -> None:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        ids = list(session.scalars(select(Job.id).where(Job.kind == requests.COPY_JOB, Job.status == "pending")))
    for job_id in ids:
        assert get_queue(app).execute(job_id) == "done"


@pytest.mark.no_auto_consent
def test_consent_my_data_and_erasure_on_a_phone(shop, phone) -> None:  # type: ignore[no-untyped-def]
    app, live = shop["app"], shop["live"]
    app.config["PUBLIC_URL"] = live.url
    browser_sign_in(app, phone, live.url, shop["user_id"], "o_cert_0")

    # A verified student who never consented is asked before the course opens; nothing is ticked.
    phone.goto(live.url + "/h5/courses/demo-course")
    phone.get_by_text("请阅读隐私政策").wait_for()
    assert not phone.locator("#agree_notice").is_checked() and not phone.locator("#agree_sharing").is_checked()
    _screen(phone, "1-consent")
    phone.get_by_role("button", name="同意并继续").click()
    phone.get_by_text("请阅读并勾选同意《隐私政策》").wait_for()
    _screen(phone, "2-consent-missing")
    phone.locator("#agree_notice").check()
    phone.locator("#agree_sharing").check()
    phone.get_by_role("button", name="同意并继续").click()
    phone.wait_for_url("**/h5/courses/demo-course")

    # The notice, from every page's footer.
    phone.get_by_role("link", name="隐私政策").click()
    phone.get_by_role("heading", name="谁能看到你的信息").wait_for()
    _screen(phone, "3-notice")

    # 我的数据: the record, a copy built by the worker, then downloaded through a short-lived link.
    phone.goto(live.url + "/h5/my-data")
    phone.get_by_role("button", name="生成数据副本").click()
    phone.locator(".copy-row[data-status=pending]").wait_for()
    _run_copy_jobs(app)
    # The page watches the copy being built and shows the download by itself.
    phone.locator(".copy-row[data-status=done]").wait_for(timeout=15_000)
    phone.locator(".data-part[data-table=student_profiles] summary").click()
    phone.get_by_text("林小满一").first.wait_for()
    _screen(phone, "4-my-data")
    with phone.expect_download() as download:
        phone.locator(".copy-row[data-status=done]").get_by_role("link", name="下载").click()
    archive = zipfile.ZipFile(io.BytesIO(open(download.value.path(), "rb").read()))  # noqa: SIM115
    assert {"data.json", "index.html"} <= set(archive.namelist())

    # Withdrawing says what follows before it happens; cancelling leaves it as it was.
    phone.locator("[data-purpose=school_sharing]").get_by_role("button", name="撤回").click()
    phone.get_by_text("学校管理员将不再看到你的姓名和学习详情").first.wait_for()
    _screen(phone, "5-withdraw-dialog")
    phone.get_by_role("button", name="取消").click()
    phone.get_by_role("button", name="撤回").first.wait_for()
    with get_database(app).sessions() as session:
        assert session.scalar(select(Consent.id).where(Consent.granted.is_(False))) is None
    phone.locator("[data-purpose=school_sharing]").get_by_role("button", name="撤回").click()
    phone.get_by_role("button", name="确定撤回").click()
    phone.get_by_text("已撤回同意").wait_for()

    # 注销: the consequences, a box to tick, then seven days in which it can be taken back.
    phone.get_by_role("link", name="注销账号并删除个人信息").click()
    phone.get_by_text("注销后会发生什么").wait_for()
    _screen(phone, "6-erase")
    phone.get_by_role("button", name="申请注销").click()
    phone.get_by_text("请先勾选确认。").wait_for()
    phone.locator("#confirm").check()
    phone.get_by_role("button", name="申请注销").click()
    phone.get_by_text("注销申请已提交").wait_for()
    _screen(phone, "7-erase-pending")
    phone.get_by_role("button", name="撤销注销申请").click()
    phone.get_by_text("注销后会发生什么").wait_for()
    with get_database(app).sessions() as session:
        assert session.scalar(select(DataRequest.status).where(DataRequest.kind == "erase")) == "cancelled"
