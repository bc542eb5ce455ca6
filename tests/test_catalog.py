"""The course catalog: files validated rule by rule, loaded as versions, never overwritten."""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from handlers.catalog import CatalogError, current_version, list_courses, load_catalog, parse_catalog
from models import Course, CourseVersion, Question
from web.database import get_database

COURSES = Path(__file__).resolve().parent.parent / "content" / "courses"


def q(code: str, points: int, kind: str = "single", answer: list[str] | None = None,
      options: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"code": code, "kind": kind, "points": points, "text": f"题目 {code}",
            "options": options or [{"key": k, "text": f"选项{k}"} for k in "ABCD"],
            "answer": answer or ["C"], "explanation": "解析"}


def course(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "course": {"code": "demo-course", "title": "示例课程", "description": "说明", "pass_mark": 85,
                   "topic_pass_percent": 60, "on_topic_failed": "rewatch", "on_course_failed": "redo_all",
                   "watch_threshold": 0.9},
        "topics": [
            {"code": "t01", "title": "专题一", "summary": "概要", "video": {"url": "demo:demo-t01", "seconds": 10},
             "questions": [q("t01-q1", 30), q("t01-q2", 20, "multiple", ["A", "B"])]},
            {"code": "t02", "title": "专题二", "summary": "概要", "video": {"url": "https://cdn.example.cn/t02.mp4", "seconds": 60},
             "questions": [q("t02-q1", 40), q("t02-q2", 10, "judge", ["错"], [{"key": "对", "text": "对"}, {"key": "错", "text": "错"}])]},
        ],
    }
    data["course"].update(overrides)
    return data


def to_toml(data: dict[str, Any]) -> str:
    """A tiny TOML writer for these fixtures (the catalog itself is hand-written)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(v)

    lines = ["[course]"] + [f"{k} = {value(v)}" for k, v in data["course"].items()]
    for topic in data.get("topics", []):
        lines.append("\n[[topics]]")
        lines += [f"{k} = {value(v)}" for k, v in topic.items() if k not in ("video", "questions")]
        if "video" in topic:
            lines.append("[topics.video]")
            lines += [f"{k} = {value(v)}" for k, v in topic["video"].items()]
        for question in topic.get("questions", []):
            lines.append("[[topics.questions]]")
            lines += [f"{k} = {value(v)}" for k, v in question.items()]
    return "\n".join(lines) + "\n"


def test_fixture_round_trips() -> None:
    assert tomllib.loads(to_toml(course())) == course()


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(CatalogError) as err:
        parse_catalog(to_toml(data), "demo.toml")
    return err.value.problems


def broken(change) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    data = copy.deepcopy(course())
    change(data)
    return data


@pytest.mark.parametrize("change,expected", [
    (lambda d: d["topics"][0]["questions"][0].update(points=31), "points add up to 101, not 100"),
    (lambda d: d["topics"][1].update(code="t01"), "duplicate topic code"),
    (lambda d: d["topics"][1]["questions"][0].update(code="t01-q1"), "duplicate question code"),
    (lambda d: d["topics"][0]["questions"][0].update(answer=["E"]), "answer ['E'] is not an option"),
    (lambda d: d["topics"][0]["questions"][0].update(answer=["A", "B"]), "a single question has exactly one answer"),
    (lambda d: d["topics"][0]["questions"][1].update(answer=["A"]), "a multiple question has two or more answers"),
    (lambda d: d["topics"][1]["questions"][1].update(options=[{"key": "是", "text": "是"}, {"key": "错", "text": "错"}]),
     "exactly the options 对 and 错"),
    (lambda d: d["topics"][0]["questions"][0].update(options=[{"key": "A", "text": "x"}, {"key": "A", "text": "y"}], answer=["A"]),
     "duplicate option key"),
    (lambda d: d["topics"][0].pop("video"), "topic 1 (t01): no [topics.video]"),
    (lambda d: d["topics"][0]["video"].update(url="javascript:alert(1)"), "video url must be https:// or demo:<name>"),
    (lambda d: d["topics"][0]["video"].update(url="http://cdn.example.cn/x.mp4"), "video url must be https://"),
    (lambda d: d["topics"][0]["video"].update(seconds=0), "video seconds must be positive"),
    (lambda d: d["topics"][0].update(questions=[]), "topic 1 (t01): no questions"),
    (lambda d: d["course"].update(code="Bad Code"), "lower-case letters"),
    (lambda d: d["course"].update(pass_mark=True), "pass_mark missing or not int"),
    (lambda d: d["course"].update(on_course_failed="shrug"), "on_course_failed must be one of"),
    (lambda d: d["topics"][0]["questions"][0].update(text="   "), "text is empty"),
])
def test_each_rule_names_its_place(change, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert any(expected in p for p in problems_of(broken(change))), problems_of(broken(change))


def test_every_problem_is_reported_at_once() -> None:
    def many(d: dict[str, Any]) -> None:
        d["topics"][0]["questions"][0].update(answer=["Z"])
        d["topics"][1].pop("video")
        d["topics"][1]["questions"][0]["points"] = 41
    assert len(problems_of(broken(many))) == 3  # the answer, the video, the points


def test_bad_toml_is_a_clear_error() -> None:
    with pytest.raises(CatalogError, match="not valid TOML"):
        parse_catalog("[course\ncode = ", "broken.toml")


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
    assert "  - topic 1 (t01) question t01-q1: answer ['Z'] is not an option" in result.output


def test_cli_load_is_all_or_nothing(app, runner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "good.toml"
    good.write_text(to_toml(course()), "utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(to_toml(broken(lambda d: d["course"].update(code="other", pass_mark=0))), "utf-8")
    assert runner.invoke(args=["content", "load", str(good), str(bad)]).exit_code == 1
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
