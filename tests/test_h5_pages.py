"""What students read on the H5 pages: progress after a failure, finished courses, 学习进度, WeChat's own sign-in."""
from __future__ import annotations

from database import get_database
from tests.factories import CSRF, verify
from tests.factories import sign_in as cert_sign_in
from web import clock


def test_a_failed_topic_says_so_on_the_list_and_the_result_page(app, client, site) -> None:  # type: ignore[no-untyped-def]
    verify(client, site["school"])
    watch = client.post("/h5/api/watch", data=dict(course="demo-course", topic="t01", csrf_token=CSRF)).get_json()
    for seq in range(1, 4):
        clock.advance(app, 4)
        client.post("/h5/api/heartbeat", data=dict(watch_id=watch["watch_id"], seq=seq, position=min(10, seq * 4),
                                                   csrf_token=CSRF))
    client.get("/h5/courses/demo-course/topics/t01/test")
    from models import QuizAttempt

    with get_database(app).sessions() as session:
        attempt_id = session.query(QuizAttempt.id).scalar()
    client.post(f"/h5/attempts/{attempt_id}", data={"csrf_token": CSRF})
    result = client.get(f"/h5/attempts/{attempt_id}").get_data(as_text=True)
    assert "专题1 · 专题一" in result and "重新观看视频" in result and "继续下一" not in result
    listing = client.get("/h5/courses/demo-course").get_data(as_text=True)
    assert "未通过（0 分）· 请重看视频" in listing


def test_my_progress_opens_the_course_being_taken(client, site) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/h5/progress").headers["Location"].endswith("/h5/")
    verify(client, site["school"])
    client.get("/h5/courses/demo-course")  # enrols
    assert client.get("/h5/progress").headers["Location"].endswith("/h5/courses/demo-course")


def test_inside_wechat_there_is_no_sign_out_button(client, site) -> None:  # type: ignore[no-untyped-def]
    wechat_ua = {"User-Agent": "Mozilla/5.0 (iPhone) MicroMessenger/8.0.50 NetType/WIFI"}
    assert "退出登录" not in client.get("/h5/", headers=wechat_ua).get_data(as_text=True)
    assert "退出登录" in client.get("/h5/").get_data(as_text=True)
    assert "共 2 个专题" in client.get("/h5/").get_data(as_text=True)


def test_the_claim_page_prices_every_choice_before_it_is_chosen(app, client, graduates) -> None:  # type: ignore[no-untyped-def]

    cert_sign_in(client, graduates[0], "o_cert_0")
    page = client.get("/h5/courses/demo-course/certificate").get_data(as_text=True)
    electronic, paper, both = (page.split(f'data-channel="{c}"')[1].split("</label>")[0]
                               for c in ("electronic", "paper", "both"))
    assert "免费" in electronic
    assert "¥20.00" in paper and "邮费 ¥10.00" in paper and "¥30.00" in paper
    assert "¥30.00" in both and "邮费" in both
