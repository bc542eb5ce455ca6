"""The pushes page in a browser: a school admin makes a bind link, binds on the phone, reads the delivery history."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from database import get_database
from models import ConsoleAccount, PushDelivery, User
from models.base import utcnow
from tests.conftest import ARTIFACTS
from tests.console_helpers import PASSWORD, make_school, make_school_admin
from tests.factories import decode_qr


def test_bind_and_history_in_a_browser(app, live_server, browser, phone, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    app.config["PUBLIC_URL"] = live_server.url
    school_id = make_school(app, "毫末示范大学")
    account_id = make_school_admin(app, school_id)
    with get_database(app).sessions() as session:
        username = session.get(ConsoleAccount, account_id).username
    desktop = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = desktop.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/console/school/pushes")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.get_by_text("未绑定").wait_for()
    page.get_by_role("button", name="生成绑定链接").click()
    bind_url = page.locator("#bind-url").inner_text()
    assert bind_url.startswith(f"{live_server.url}/h5/push-bind/")
    assert page.locator("svg[aria-label=绑定二维码]").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-pushes-link.png"), full_page=True)
    assert decode_qr(ARTIFACTS / "console-pushes-link.png") == [bind_url]  # the QR on screen scans to the link

    # The admin's phone opens the link in WeChat: OAuth through the fake, then confirms.
    phone.context.add_cookies([{"name": "fake_wechat_openid", "value": "o_admin_browser", "url": live_server.url}])
    phone.goto(bind_url)
    phone.get_by_text("毫末示范大学").wait_for()
    phone.screenshot(path=str(ARTIFACTS / "push-bind.png"), full_page=True)
    phone.get_by_role("button", name="确认绑定").click()
    phone.get_by_text("绑定成功").first.wait_for()
    assert phone.get_by_text("请先关注公众号，否则收不到推送").count() == 1

    # A history to show: one of each outcome.
    with get_database(app).sessions() as session:
        user = session.scalar(select(User).where(User.openid == "o_admin_browser"))
        now = utcnow()
        for i, (kind, status, errcode, errmsg, summary) in enumerate(
            [
                (
                    "digest",
                    "delivered",
                    None,
                    None,
                    "11月28日：新认证 12 人，完成专题 40 个，通过考核 5 人，颁发证书 5 张",
                ),
                ("pass_notice", "sent", None, None, "3 名学生通过考核：张三、李四、<b>王五</b>"),
                ("approval_notice", "failed", 43004, "require subscribe", "2 名学生等待审核：赵六、钱七"),
                (
                    "pass_notice",
                    "queued",
                    None,
                    "WeChat /cgi-bin/message/template/send: timed out after 5.0 s",
                    "1 名学生通过考核：孙八",
                ),
                (
                    "digest",
                    "rejected",
                    None,
                    "user block",
                    "11月27日：新认证 3 人，完成专题 9 个，通过考核 1 人，颁发证书 1 张",
                ),
            ]
        ):
            session.add(
                PushDelivery(
                    account_id=account_id,
                    openid=user.openid,
                    school_id=school_id,
                    kind=kind,
                    template_id="tpl",
                    client_msg_id=f"xwbrowser{i}",
                    payload={"summary": summary},
                    status=status,
                    errcode=errcode,
                    errmsg=errmsg,
                    attempts=2 if status == "queued" else 1,
                    created_at=now - timedelta(minutes=50 - i * 10),
                )
            )
        session.commit()
    page.goto(f"{live_server.url}/console/school/pushes")
    page.get_by_text("推送记录").wait_for()
    assert page.locator("table.data tbody tr").count() == 5
    assert page.get_by_text("请先关注公众号，否则收不到推送").count() == 1
    assert page.get_by_text("未关注公众号，收不到推送：请先关注公众号").count() == 1
    assert page.get_by_text("<b>王五</b>").count() == 1  # shown as text, not markup
    first_row = page.locator("table.data tbody tr").first.inner_text()
    assert "11月27日" in first_row and "未送达" in first_row and "屏蔽" in first_row  # newest first
    page.screenshot(path=str(ARTIFACTS / "console-pushes.png"), full_page=True)
    desktop.close()
