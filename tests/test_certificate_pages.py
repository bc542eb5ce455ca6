"""Certificate pages: claim, view, download, the public verify page, and 我的 → 显示证书."""
from __future__ import annotations

import re
import time

from sqlalchemy import select

from database import get_database
from models import Certificate, User
from tests.conftest import ARTIFACTS
from tests.factories import CSRF, get_file, sign_in


def test_claim_view_download(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, graduates[0], "o_cert_0")
    page = client.get("/h5/courses/demo-course/certificate").get_data(as_text=True)
    assert "电子版" in page and "学校已支付" in page and "纸质版" in page
    assert client.post("/h5/courses/demo-course/certificate", data={"channel": "electronic"}).status_code == 400
    claimed = client.post("/h5/courses/demo-course/certificate", data={"channel": "electronic", "csrf_token": CSRF})
    assert claimed.status_code == 302
    show = client.get(claimed.headers["Location"]).get_data(as_text=True)
    assert re.search(r"XW-\d{4}-000001", show) and "长按图片可保存到手机相册" in show
    cert_id = int(claimed.headers["Location"].rsplit("/", 1)[1])
    # Each file is a short-lived signed link to the blob store (here the app's own /blobs/ route).
    link = client.get(f"/h5/certificates/{cert_id}.png")
    assert link.status_code == 302 and "/certificates/" in link.headers["Location"]
    assert link.headers["Cache-Control"] == "no-store"
    png = get_file(client, f"/h5/certificates/{cert_id}.png")
    pdf = get_file(client, f"/h5/certificates/{cert_id}.pdf")
    assert png.mimetype == "image/png" and png.data.startswith(b"\x89PNG")
    assert (
        pdf.mimetype == "application/pdf"
        and pdf.data.startswith(b"%PDF")
        and "attachment" in pdf.headers["Content-Disposition"]
    )
    assert client.get(f"/h5/certificates/{cert_id}.exe").status_code == 404
    # Claiming again goes to the same certificate.
    again = client.get("/h5/courses/demo-course/certificate")
    assert again.status_code == 302 and again.headers["Location"].endswith(f"/h5/certificates/{cert_id}")


def test_another_students_certificate_is_not_found(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, graduates[0], "o_cert_0")
    cert = client.post("/h5/courses/demo-course/certificate", data={"channel": "both", "csrf_token": CSRF})
    cert_id = int(cert.headers["Location"].rsplit("/", 1)[1])
    other = app.test_client()
    sign_in(other, graduates[1], "o_cert_1")
    for path in (f"/h5/certificates/{cert_id}", f"/h5/certificates/{cert_id}.pdf", f"/h5/certificates/{cert_id}.png"):
        assert other.get(path).status_code == 404


def test_verify_page_is_public_and_masked(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, graduates[2], "o_cert_2")
    client.post("/h5/courses/demo-course/certificate", data={"channel": "electronic", "csrf_token": CSRF})
    with get_database(app).sessions() as session:
        certificate = session.scalars(select(Certificate)).one()
    anyone = app.test_client()
    page = anyone.get(f"/verify/{certificate.verify_token}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "证书有效" in text and 'data-field="签名">有效' in text
    assert "林**三" in text and "林小满三" not in text
    assert "C002" not in text and "13800000000" not in text  # never the full number or the phone
    assert anyone.get("/verify/not-a-token").status_code == 404
    # The serial alone finds nothing (serials are sequential: they could be walked); with the
    # holder's full name it leads to the certificate.
    assert anyone.get(f"/verify?serial={certificate.serial}").status_code == 404
    assert anyone.get(f"/verify?serial={certificate.serial}&name=林小满").status_code == 404
    found = anyone.get(f"/verify?serial={certificate.serial.lower()}&name= 林小满三 ")
    assert found.status_code == 302 and found.headers["Location"].endswith(certificate.verify_token)
    assert anyone.get("/verify?serial=XW-2026-999999").status_code == 404
    assert anyone.get("/verify?serial=<script>").status_code == 404
    assert "<script>" not in anyone.get("/verify?serial=<script>").get_data(as_text=True)


def post_click(client, wechat, openid: str):  # type: ignore[no-untyped-def]
    d = wechat.deliver(wechat.event(openid, "CLICK", "MY_CERTIFICATE"))
    return wechat.open_reply(client.post("/wechat?" + d.query, data=d.body).get_data())


def test_my_certificate_answers_by_state(app, client, graduates, wechat) -> None:  # type: ignore[no-untyped-def]
    assert "还没有你的学习记录" in post_click(client, wechat, "o_nobody")["Content"]
    with get_database(app).sessions() as session:
        session.add(User(openid="o_fresh"))
        session.commit()
    assert "还没有开始学习" in post_click(client, wechat, "o_fresh")["Content"]
    claim_page = post_click(client, wechat, "o_cert_3")
    assert claim_page["MsgType"] == "news" and claim_page["Articles"]["item"]["Url"].endswith(
        "/h5/courses/demo-course/certificate"
    )
    sign_in(client, graduates[3], "o_cert_3")
    client.post("/h5/courses/demo-course/certificate", data={"channel": "electronic", "csrf_token": CSRF})
    # A new event (a later CreateTime): the answer now links to the certificate itself.
    d = wechat.deliver(wechat.event("o_cert_3", "CLICK", "MY_CERTIFICATE", created=int(time.time()) + 1))
    mine = wechat.open_reply(client.post("/wechat?" + d.query, data=d.body).get_data())
    assert mine["Articles"]["item"]["Title"] == "我的证书" and "/h5/certificates/" in mine["Articles"]["item"]["Url"]


def test_claim_view_verify_in_a_browser(app, live_server, phone, graduates) -> None:  # type: ignore[no-untyped-def]
    app.config["PUBLIC_URL"] = live_server.url
    phone.context.add_cookies([{"name": "fake_wechat_openid", "value": "o_cert_4", "url": live_server.url}])
    phone.goto(f"{live_server.url}/h5/courses/demo-course/certificate")  # through (fake) WeChat OAuth
    phone.get_by_text("请选择证书类型").wait_for()
    phone.get_by_role("button", name="领取证书").click()
    phone.get_by_text("长按图片可保存到手机相册").wait_for()
    phone.wait_for_function("() => document.querySelector('img').naturalWidth > 1000")
    ARTIFACTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(ARTIFACTS / "certificate-page.png"), full_page=True)
    phone.get_by_role("link", name="查看验证页").click()
    phone.get_by_text("证书有效").wait_for()
    phone.screenshot(path=str(ARTIFACTS / "certificate-verify.png"), full_page=True)


def test_a_student_files_a_correction_from_the_certificate_page(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    from models import CorrectionRequest

    sign_in(client, graduates[4], "o_cert_4")
    claimed = client.post("/h5/courses/demo-course/certificate", data={"channel": "electronic", "csrf_token": CSRF})
    cert_path = claimed.headers["Location"]
    assert "提交更正申请" in client.get(cert_path).get_data(as_text=True)
    bad = client.post(cert_path + "/correction", data={"csrf_token": CSRF, "reason": "x"})
    assert bad.status_code == 400 and "请填写需要更正的内容" in bad.get_data(as_text=True)
    assert (
        client.post(cert_path + "/correction", data={"student_number": "C0044", "reason": "学号错"}).status_code == 400
    )
    done = client.post(cert_path + "/correction", data={"csrf_token": CSRF, "student_number": "C0044",
                                                         "reason": "<b>学号少写一位</b>"})
    assert done.status_code == 302
    page = client.get(cert_path).get_data(as_text=True)
    assert "正在等待工作人员处理" in page and "&lt;b&gt;学号少写一位" in page
    with get_database(app).sessions() as session:
        request = session.scalars(select(CorrectionRequest)).one()
        assert request.changes == {"student_number": "C0044"} and request.status == "pending"


def test_the_channel_changes_until_the_paper_copy_is_paid(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    sign_in(client, graduates[1], "o_cert_1")
    claimed = client.post("/h5/courses/demo-course/certificate", data={"channel": "paper", "csrf_token": CSRF})
    path = claimed.headers["Location"]
    assert "纸质证书：等待支付" in client.get(path).get_data(as_text=True)
    assert client.post(path + "/channel", data={"channel": "electronic", "csrf_token": CSRF}).status_code == 302
    assert "等待支付" not in client.get(path).get_data(as_text=True)
    assert client.post(path + "/channel", data={"channel": "both", "csrf_token": CSRF}).status_code == 302
    with get_database(app).sessions() as session:
        cert = session.scalars(select(Certificate)).one()
        assert (cert.channel, cert.paper_status) == ("both", "awaiting_payment")
        session.execute(update(Certificate).values(paper_status="paid"))  # what a payment does
        session.commit()
    refused = client.post(path + "/channel", data={"channel": "electronic", "csrf_token": CSRF})
    assert refused.status_code == 409 and "联系工作人员" in refused.get_data(as_text=True)
    assert client.post(path + "/channel", data={"channel": "teleport", "csrf_token": CSRF}).status_code == 409
