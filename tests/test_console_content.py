"""Loading a course catalog in the console: problems shown by line, a preview, then an audited load."""
from __future__ import annotations

import io
import re

from sqlalchemy import select

from database import get_database
from models import AuditEntry, Course
from tests.console_helpers import make_staff, sign_in
from tests.factories import course, line_of, q, to_toml


def upload(client, token: str, text: str | bytes, name: str = "demo.toml"):  # type: ignore[no-untyped-def]
    data = text.encode("utf-8") if isinstance(text, str) else text
    return client.post("/console/content/preview", data={"csrf_token": token, "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def problems_of(body: str) -> list[tuple[str, str]]:
    return re.findall(r"<tr><td>([^<]+)</td><td class=\"wrap\">([^<]+)</td>", body)


def test_preview_then_load_a_new_version(app, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    text = to_toml(course())
    preview = upload(client, token, text)
    body = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "示例课程" in body and "2 个专题，4 道题" in body and "新课程" in body
    digest = re.search(r'name="digest" value="([0-9a-f]+)"', body).group(1)
    with get_database(app).sessions() as session:
        assert session.scalar(select(Course)) is None  # a preview loads nothing

    loaded = client.post("/console/content/load", data={"csrf_token": token, "text": text, "source": "demo.toml",
                                                          "digest": digest})
    assert loaded.status_code == 200 and "已载入为第 1 版" in loaded.get_data(as_text=True)
    changed = to_toml(course(title="示例课程（修订）"))
    body = upload(client, token, changed).get_data(as_text=True)
    assert "当前为第 1 版" in body and "确认载入为第 2 版" in body
    digest2 = re.search(r'name="digest" value="([0-9a-f]+)"', body).group(1)
    client.post("/console/content/load", data={"csrf_token": token, "text": changed, "source": "demo.toml",
                                               "digest": digest2})
    with get_database(app).sessions() as session:
        assert session.scalar(select(Course.current_version).where(Course.code == "demo-course")) == 2
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "content.load")
                                       .order_by(AuditEntry.id)))
    assert [(e.before, e.after["version"], e.after["created"]) for e in entries] == [
        ({"version": None}, 1, True), ({"version": 1}, 2, True)]
    assert entries[1].after["content_hash"] == digest2 and entries[1].subject_id == "demo-course"
    # The same file again: the preview says so, and loading it changes nothing.
    assert "与当前版本相同" in upload(client, token, changed).get_data(as_text=True)
    listing = client.get("/console/content/").get_data(as_text=True)
    assert "示例课程（修订）" in listing and "第 2 版" in listing


def test_a_load_of_text_other_than_the_previewed_is_refused(app, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    text = to_toml(course())
    digest = re.search(r'name="digest" value="([0-9a-f]+)"', upload(client, token, text).get_data(as_text=True)).group(
        1
    )
    tampered = text.replace("示例课程", "别的课程")
    refused = client.post("/console/content/load", data={"csrf_token": token, "text": tampered, "digest": digest})
    assert refused.status_code == 422 and "与预览时不一致" in refused.get_data(as_text=True)
    broken = client.post("/console/content/load", data={"csrf_token": token, "text": "[course", "digest": digest})
    assert broken.status_code == 422 and "未通过校验" in broken.get_data(as_text=True)
    with get_database(app).sessions() as session:
        assert session.scalar(select(Course)) is None
        assert session.scalar(select(AuditEntry).where(AuditEntry.action == "content.load")) is None


def test_problems_are_shown_with_their_lines(app, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    data = course(pass_mark=120)
    data["topics"][1]["video"]["url"] = "ftp://example.cn/t02.mp4"
    data["topics"][1]["questions"][0] = q("t02-q1", 40, "single", ["Z"])
    del data["topics"][0]["summary"]
    text = to_toml(data)
    response = upload(client, token, text)
    assert response.status_code == 422
    shown = problems_of(response.get_data(as_text=True))
    by_message = {message: line for line, message in shown}
    # The messages of handlers/catalog.py (the CLI prints the same), escaped once by the template.
    expected = {
        "课程设置（[course]）：及格分（pass_mark）须在 1 到 100 之间（总分 100 分），现为 120": line_of(
            text, "pass_mark = 120"
        ),
        "专题 1（code=t01）：缺少专题简介（summary）": line_of(text, "[[topics]]"),
        "专题 2（code=t02）的视频（[topics.video]）：视频地址（url）须以 https:// 开头，"
        "或写成 demo:名称（小写字母、数字和 -），"
        "现为 &#34;ftp://example.cn/t02.mp4&#34;": line_of(text, 'url = "ftp://'),
        "专题 2（code=t02）的第 1 题（code=t02-q1）：答案（answer）中的 &#34;Z&#34; "
        "不是本题的选项（选项有 A、B、C、D）": line_of(
            text, 'answer = ["Z"]'
        ),
    }
    for message, line in expected.items():
        assert by_message.get(message) == str(line), (message, shown)
    assert len(shown) == len(expected)


def test_a_toml_syntax_error_names_its_line(app, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    text = to_toml(course()).replace('title = "专题二"', 'title = "专题二', 1)
    response = upload(client, token, text)
    assert response.status_code == 422
    [(line, message)] = problems_of(response.get_data(as_text=True))
    assert line == str(line_of(text, 'title = "专题二'))
    assert message == ("TOML 格式错误，第 %d 行第 13 列：字符串缺少结尾的英文双引号 &#34;（一行内的文字须在本行结束）"
                       % line_of(text, 'title = "专题二'))


def test_a_question_without_a_code_and_a_whole_file_problem(app, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    data = course()
    del data["topics"][0]["questions"][1]["code"]
    data["topics"][1]["questions"][0]["points"] = 30
    text = to_toml(data)
    shown = problems_of(upload(client, token, text).get_data(as_text=True))
    assert shown == [(str(line_of(text, "[[topics.questions]]", after='code = "t01-q1"')),
                      "专题 1（code=t01）的第 2 题：缺少题目编号（code）"),
                     ("全文", "全部题目的分值合计 90 分，应为 100 分")]


def test_bad_uploads_are_refused_clearly(app, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    gbk = upload(client, token, to_toml(course()).encode("gbk"))
    assert gbk.status_code == 422 and "不是 UTF-8 编码" in gbk.get_data(as_text=True)
    none = client.post("/console/content/preview", data={"csrf_token": token}, content_type="multipart/form-data")
    assert none.status_code == 422 and "请选择要上传的课程文件" in none.get_data(as_text=True)
    # A UTF-8 BOM (Windows editors) is fine.
    assert upload(client, token, "\ufeff" + to_toml(course())).status_code == 200


def test_a_script_in_the_catalog_is_shown_as_text(app, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    script = "<script>alert(1)</script>"
    body = upload(client, token, to_toml(course(title=script)), name=f"{script}.toml").get_data(as_text=True)
    assert script not in body and "&lt;script&gt;" in body


def test_a_script_in_a_problem_is_shown_as_text(app, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    data = course()
    data["topics"][0]["code"] = "<script>alert(1)</script>"
    body = upload(client, token, to_toml(data)).get_data(as_text=True)
    assert "<script>alert(1)" not in body
    assert "专题 1（code=&lt;script&gt;alert(1)&lt;/script&gt;）：专题编号（code）只能用英文字母" in body
