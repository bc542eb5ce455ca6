"""The course catalog: files validated rule by rule, loaded as versions, never overwritten."""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from database import get_database
from handlers.catalog.loader import CatalogError, current_version, list_courses, load_catalog, parse_catalog
from handlers.catalog.problems import Problem
from models import Course, CourseVersion, Question
from tests.factories import course, line_of, problems_of, to_toml

COURSES = Path(__file__).resolve().parent.parent / "content" / "courses"


def test_fixture_round_trips() -> None:
    assert tomllib.loads(to_toml(course())) == course()


def broken(change) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    data = copy.deepcopy(course())
    change(data)
    return data


@pytest.mark.parametrize(
    "change,expected",
    [
        (lambda d: d["topics"][0]["questions"][0].update(points=31), "全部题目的分值合计 101 分，应为 100 分"),
        (lambda d: d["topics"][1].update(code="t01"), '专题 2（code=t01）：专题编号（code）与专题 1 重复，都是 "t01"'),
        (
            lambda d: d["topics"][1]["questions"][0].update(code="t01-q1"),
            "专题 2（code=t02）的第 1 题（code=t01-q1）：题目编号（code）与专题 1 的第 1 题重复",
        ),
        (
            lambda d: d["topics"][0]["questions"][0].update(answer=["E"]),
            '专题 1（code=t01）的第 1 题（code=t01-q1）：答案（answer）中的 "E" 不是本题的选项',
        ),
        (
            lambda d: d["topics"][0]["questions"][0].update(answer=["A", "B"]),
            "单选题的答案（answer）只能有一个，现有 2 个",
        ),
        (
            lambda d: d["topics"][0]["questions"][1].update(answer=["A"]),
            "专题 1（code=t01）的第 2 题（code=t01-q2）：多选题的答案（answer）至少要有两个",
        ),
        (
            lambda d: d["topics"][1]["questions"][1].update(
                options=[{"key": "是", "text": "是"}, {"key": "错", "text": "错"}]
            ),
            "专题 2（code=t02）的第 2 题（code=t02-q2）：判断题的选项只能是「对」和「错」两个",
        ),
        (
            lambda d: d["topics"][0]["questions"][0].update(
                options=[{"key": "A", "text": "x"}, {"key": "A", "text": "y"}], answer=["A"]
            ),
            '选项的 key "A" 重复',
        ),
        (lambda d: d["topics"][0].pop("video"), "专题 1（code=t01）：缺少视频"),
        (
            lambda d: d["topics"][0]["video"].update(url="javascript:alert(1)"),
            "专题 1（code=t01）的视频（[topics.video]）：视频地址（url）须以 https:// 开头，或写成 demo:名称",
        ),
        (
            lambda d: d["topics"][0]["video"].update(url="http://cdn.example.cn/x.mp4"),
            '视频地址（url）须以 https:// 开头，或写成 demo:名称（小写字母、数字和 -），现为 "http://cdn.example.cn/x.mp4"',
        ),
        (lambda d: d["topics"][0]["video"].update(seconds=0), "视频时长（seconds）须为大于 0 的秒数，现为 0"),
        (lambda d: d["topics"][0].update(questions=[]), "专题 1（code=t01）：没有题目"),
        (lambda d: d["course"].update(code="Bad Code"), "课程设置（[course]）：课程编号（code）只能用小写英文字母"),
        (lambda d: d["course"].update(pass_mark=True), "及格分（pass_mark）应为整数，现为 true"),
        (
            lambda d: d["course"].update(on_course_failed="shrug"),
            '总分不及格时的做法（on_course_failed）只能是 redo_all（全部专题重来），现为 "shrug"',
        ),
        (
            lambda d: d["topics"][0]["questions"][0].update(text="   "),
            "专题 1（code=t01）的第 1 题（code=t01-q1）：题干（text）不能为空",
        ),
    ],
)
def test_each_rule_names_its_place(change, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert any(expected in p.message for p in problems_of(broken(change))), problems_of(broken(change))


def test_every_problem_is_reported_at_once() -> None:
    def many(d: dict[str, Any]) -> None:
        d["topics"][0]["questions"][0].update(answer=["Z"])
        d["topics"][1].pop("video")
        d["topics"][1]["questions"][0]["points"] = 41
    assert len(problems_of(broken(many))) == 3  # the answer, the video, the points


def test_representative_problems_in_chinese_on_their_lines() -> None:
    data = course(pass_mark=120)
    del data["topics"][0]["summary"]  # a missing field: the topic's header line
    data["topics"][1]["video"]["url"] = "ftp://example.cn/t02.mp4"
    data["topics"][1]["questions"][1]["code"] = "t01-q2"  # the same code as topic 1's second question
    del data["topics"][1]["questions"][0]["options"]
    text = to_toml(data)
    with pytest.raises(CatalogError) as err:
        parse_catalog(text, "demo.toml")
    assert err.value.problems == [
        Problem(line_of(text, "pass_mark = 120"),
                "课程设置（[course]）：及格分（pass_mark）须在 1 到 100 之间（总分 100 分），现为 120"),
        Problem(line_of(text, "[[topics]]"), "专题 1（code=t01）：缺少专题简介（summary）"),
        Problem(line_of(text, 'url = "ftp://'),
                "专题 2（code=t02）的视频（[topics.video]）：视频地址（url）须以 https:// 开头，或写成 demo:名称"
                "（小写字母、数字和 -），现为 \"ftp://example.cn/t02.mp4\""),
        Problem(line_of(text, "[[topics.questions]]", after='code = "t02"'),
                "专题 2（code=t02）的第 1 题（code=t02-q1）：缺少选项（options），至少要有两个选项"),
        Problem(line_of(text, 'code = "t01-q2"', after='code = "t02"'),
                "专题 2（code=t02）的第 2 题（code=t01-q2）：题目编号（code）与专题 1 的第 2 题重复，"
                "都是 \"t01-q2\"（题目编号在整个课程中不能重复）"),
    ]


def test_a_duplicate_topic_code_is_on_the_second_topics_code_line() -> None:
    text = to_toml(broken(lambda d: d["topics"][1].update(code="t01")))
    with pytest.raises(CatalogError) as err:
        parse_catalog(text, "demo.toml")
    assert err.value.problems == [Problem(line_of(text, 'code = "t01"', after='title = "专题一"'),
                                          "专题 2（code=t01）：专题编号（code）与专题 1 重复，都是 \"t01\"")]


def test_whole_file_problems_have_no_line() -> None:
    text = to_toml(broken(lambda d: d["topics"][0]["questions"][0].update(points=31)))
    with pytest.raises(CatalogError) as err:
        parse_catalog(text, "demo.toml")
    assert err.value.problems == [Problem(None, "全部题目的分值合计 101 分，应为 100 分")]
    with pytest.raises(CatalogError) as err:
        parse_catalog('[[topics]]\ncode = "t01"\n', "demo.toml")
    assert err.value.problems == [Problem(None, "缺少课程设置 [course]（应写在文件开头）")]


def test_questions_without_codes_are_named_by_number() -> None:
    data = course()
    del data["topics"][0]["questions"][1]["code"]
    text = to_toml(data)
    with pytest.raises(CatalogError) as err:
        parse_catalog(text, "demo.toml")
    assert err.value.problems == [Problem(line_of(text, "[[topics.questions]]", after='code = "t01-q1"'),
                                          "专题 1（code=t01）的第 2 题：缺少题目编号（code）")]


@pytest.mark.parametrize(
    "text,line,message",
    [
        ('[course\ncode = "x"\n', 1, "TOML 格式错误，第 1 行第 8 列：表头缺少结尾的 ]"),
        (
            '[course]\ncode = "demo\ntitle = "示例"\n',
            2,
            'TOML 格式错误，第 2 行第 13 列：字符串缺少结尾的英文双引号 "（一行内的文字须在本行结束）',
        ),
        (
            "[course]\ntitle = “示例”\n",
            2,
            'TOML 格式错误，第 2 行第 9 列：值不合法：文字须用英文双引号 " 括起'
            "（不能用中文引号“ ”），数字和 true/false 不加引号",
        ),
        ('[course]\ncode = "a"\ncode = "b"\n', 3, "TOML 格式错误，第 3 行第 11 列：同一个键重复赋值"),
        ("[course]\n[course]\n", 2, "TOML 格式错误，第 2 行第 8 列：表 [course] 重复声明"),
        ('[course]\nanswer = ["A", "B"\n', 2, "TOML 格式错误，文件末尾：数组缺少结尾的 ]，或数组元素之间缺少逗号"),
    ],
)
def test_toml_syntax_errors_in_chinese_with_line_and_column(text: str, line: int, message: str) -> None:
    with pytest.raises(CatalogError) as err:
        parse_catalog(text, "broken.toml")
    assert err.value.problems == [Problem(line, message)]


def test_loading_makes_versions_and_never_overwrites(app) -> None:  # type: ignore[no-untyped-def]
    sessions = get_database(app).sessions
    data = parse_catalog(to_toml(course()), "demo.toml")
    with sessions() as session:
        first = load_catalog(session, data, "demo.toml")
        session.commit()
    assert (first.version, first.created) == (1, True)
    with sessions() as session:
        assert load_catalog(session, copy.deepcopy(data), "demo.toml").created is False
        session.commit()
        old_question_ids = sorted(session.scalars(select(Question.id)))

    changed = copy.deepcopy(data)
    changed["topics"][0]["questions"][0]["text"] = "改过的题目"
    with sessions() as session:
        second = load_catalog(session, changed, "demo.toml")
        session.commit()
    assert (second.version, second.created) == (2, True)
    with sessions() as session:
        # Version 1's questions are untouched: attempts drawn from them stay valid.
        v1 = session.scalars(select(Question).where(Question.id.in_(old_question_ids))).all()
        assert len(v1) == 4 and v1[0].text == "题目 t01-q1"
        current = current_version(session, "demo-course")
        assert current is not None and current.number == 2
        assert [t.code for t in current.topics] == ["t01", "t02"]
        assert current.topics[0].questions[0].text == "改过的题目"
        assert [v.number for v in list_courses(session)] == [2]
        assert session.scalar(select(Course.current_version)) == 2
        assert len(session.scalars(select(CourseVersion)).all()) == 2

    with sessions() as session:  # the old file put back: version 1 is current again, no copy made
        back = load_catalog(session, copy.deepcopy(data), "demo.toml")
        session.commit()
    assert (back.version, back.created) == (1, True)


def test_cli_check_lists_problems_line_by_line(runner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text(to_toml(broken(lambda d: d["topics"][0]["questions"][0].update(answer=["Z"]))), "utf-8")
    good = tmp_path / "good.toml"
    good.write_text(to_toml(course()), "utf-8")
    result = runner.invoke(args=["content", "check", str(good), str(bad)])
    assert result.exit_code == 1
    assert "good.toml: ok (2 topics, 4 questions)" in result.output
    assert "bad.toml: 1 problem(s)" in result.output
    # The console's message, and its line: file:line: message.
    line = line_of(bad.read_text("utf-8"), 'answer = ["Z"]')
    assert (f"  bad.toml:{line}: 专题 1（code=t01）的第 1 题（code=t01-q1）：答案（answer）中的 \"Z\" "
            "不是本题的选项（选项有 A、B、C、D）") in result.output
    broken_toml = tmp_path / "broken.toml"
    broken_toml.write_text('[course]\ncode = "demo\n', "utf-8")
    result = runner.invoke(args=["content", "check", str(broken_toml)])
    assert result.exit_code == 1
    assert (
        '  broken.toml:2: TOML 格式错误，第 2 行第 13 列：字符串缺少结尾的英文双引号 "（一行内的文字须在本行结束）'
        in result.output
    )


def test_cli_load_is_all_or_nothing(app, runner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.toml"
    good.write_text(to_toml(course()), "utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(to_toml(broken(lambda d: d["course"].update(code="other", pass_mark=0))), "utf-8")
    failed = runner.invoke(args=["content", "load", str(good), str(bad)])
    assert failed.exit_code == 1 and "bad.toml: not loaded" in failed.output
    assert (
        f"  bad.toml:{line_of(bad.read_text('utf-8'), 'pass_mark = 0')}: 课程设置（[course]）：及格分（pass_mark）"
        in failed.output
    )
    with get_database(app).sessions() as session:
        assert session.scalars(select(Course)).all() == []
    result = runner.invoke(args=["content", "load", str(good)])
    assert result.exit_code == 0 and "demo-course: version 1 loaded" in result.output
    assert "unchanged (version 1)" in runner.invoke(args=["content", "load", str(good)]).output


def test_the_shipped_courses_are_the_guides() -> None:
    """心理委员MOOC: 14 topics, 50 questions, 100 points, pass at 85; and 心理疗法MOOC."""
    mooc = parse_catalog((COURSES / "xinwei-mooc.toml").read_text("utf-8"), "xinwei-mooc.toml")
    assert mooc["course"]["title"] == "心理委员MOOC" and mooc["course"]["pass_mark"] == 85
    assert len(mooc["topics"]) == 14
    assert sum(len(t["questions"]) for t in mooc["topics"]) == 50
    therapy = parse_catalog((COURSES / "therapy-mooc.toml").read_text("utf-8"), "therapy-mooc.toml")
    assert therapy["course"]["title"] == "心理疗法MOOC"


def test_the_shipped_courses_load(app, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(args=["content", "load"])
    assert result.exit_code == 0, result.output
    with get_database(app).sessions() as session:
        version = current_version(session, "xinwei-mooc")
        assert version is not None and len(version.topics) == 14
        assert sum(q.points for t in version.topics for q in t.questions) == 100
