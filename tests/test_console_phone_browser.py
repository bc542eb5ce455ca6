"""Consoles at phone width (390 px): no page scrolls sideways; wide tables scroll inside their own box."""
from __future__ import annotations

import pytest

from database import get_database
from tests.conftest import ARTIFACTS
from tests.console_helpers import PASSWORD, make_school, make_school_admin, make_staff

STAFF_PAGES = ["/console/", "/console/inbox", "/console/certificates/", "/console/certificates/corrections",
               "/console/payments/", "/console/schools/", "/console/audit/", "/console/auto-replies"]
SCHOOL_PAGES = ["/console/", "/console/school/", "/console/school/students", "/console/school/roster",
                "/console/school/approvals", "/console/school/pushes"]


def _username(app, account_id: int) -> str:  # type: ignore[no-untyped-def]
    from models import ConsoleAccount

    with get_database(app).sessions() as session:
        return session.get(ConsoleAccount, account_id).username


@pytest.mark.parametrize("who", ["staff", "school"])
def test_no_console_page_scrolls_sideways_on_a_phone(app, live_server, browser, client, wechat, who) -> None:  # type: ignore[no-untyped-def]
    account = (
        make_staff(app)
        if who == "staff"
        else make_school_admin(app, make_school(app, "内蒙古自治区某某师范大学继续教育学院"))
    )
    # A long message waiting in the inbox: the table must scroll inside its box, not the page.
    for i in range(3):
        delivery = wechat.deliver(wechat.text(f"o_phone_{i}", "证书上的名字写错了，" * 8 + "https://example.cn/a/very/long/link"))
        client.post("/wechat?" + delivery.query, data=delivery.body)
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, locale="zh-CN",
                                  is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/console/sign-in")
    page.get_by_label("用户名").fill(_username(app, account))
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/console/**")
    wide = []
    for path in STAFF_PAGES if who == "staff" else SCHOOL_PAGES:
        page.goto(live_server.url + path)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        # Every menu item is on screen (wrapped, not hidden to the right of a scroller).
        hidden = page.evaluate("() => [...document.querySelectorAll('.side nav a')]"
                               ".filter(a => a.getBoundingClientRect().right > window.innerWidth + 1).length")
        if hidden:
            wide.append((path, f"{hidden} menu items off screen"))
        if overflow > 1:
            wide.append((path, overflow))
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"console-phone-wide-{who}-{path.strip('/').replace('/', '-')}.png"))
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(live_server.url + ("/console/inbox" if who == "staff" else "/console/school/"))
    page.screenshot(path=str(ARTIFACTS / f"console-phone-{who}.png"), full_page=True)
    context.close()
    assert wide == []
