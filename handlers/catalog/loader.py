"""The course catalog: validating catalog files and loading them as new course versions."""
from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from handlers.catalog.problems import TYPE_NAMES, Issue, Place, Problem, locate, shown, toml_problem
from models import Course, CourseVersion, Question, Topic

CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
ITEM_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
KINDS = {"single", "multiple", "judge"}
JUDGE_KEYS = ["对", "错"]
# rewatch: a failed topic test needs the video again; retry: answer again at once.
# redo_all: a total under the pass mark starts every topic over (a new round).
POLICIES = {"on_topic_failed": {"rewatch", "retry"}, "on_course_failed": {"redo_all"}}
POLICY_NAMES = {"rewatch": "重看视频后再答", "retry": "直接重答", "redo_all": "全部专题重来"}
# Optional course keys with their default: what a failed test's result shows (wrong_questions:
# the score and which questions were wrong; score_only), and when the right answers and
# explanations are shown (after_pass: once the topic is passed; never).
OPTIONAL_POLICIES = {"review_on_fail": ({"wrong_questions", "score_only"}, "wrong_questions"),
                     "review_answers": ({"after_pass", "never"}, "after_pass")}
OPTIONAL_POLICY_NAMES = {"wrong_questions": "分数和答错的题目", "score_only": "只显示分数",
                         "after_pass": "专题通过后显示", "never": "从不显示"}
MAX_PLAYBACK_RATE = 2.0  # the default of the course key max_playback_rate
KIND_NAMES = {"single": "单选题", "multiple": "多选题", "judge": "判断题"}
TOTAL_POINTS = 100


class CatalogError(ValueError):
    """A catalog file that cannot be loaded; `problems` lists every reason, each located by line."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        super().__init__(f"{source}: " + "; ".join(str(p) for p in problems))
        self.source = source
        self.problems = problems


@dataclass(frozen=True)
class LoadResult:
    code: str
    version: int
    created: bool  # False: the file matched the current version, nothing changed


def parse_catalog(text: str, source: str) -> dict[str, Any]:
    """Parse and validate one catalog file; raise CatalogError naming every problem and its line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(source, [toml_problem(exc, text)]) from exc
    issues = _Checker().check(data)
    if issues:
        raise CatalogError(source, locate(text, issues))
    return data


_COURSE = Place("course")


class _Checker:
    """Every rule of a catalog file, each broken one an Issue with its place and key."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def add(self, place: Place, key: str | None, detail: str) -> None:
        self.issues.append(Issue(place, key, detail))

    def need(self, table: dict[str, Any], key: str, kind: type | tuple[type, ...], place: Place) -> Any:
        value = table.get(key)
        if key not in table:
            self.add(place, key, f"缺少{place.name(key)}")
            return None
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            self.add(place, key, f"{place.name(key)}应为{TYPE_NAMES.get(kind, kind)}，现为 {shown(value)}")
            return None
        if isinstance(value, str) and not value.strip():
            self.add(place, key, f"{place.name(key)}不能为空")
        return value

    def check(self, data: dict[str, Any]) -> list[Issue]:
        course = data.get("course")
        if not isinstance(course, dict):
            self.add(Place(), None, "缺少课程设置 [course]（应写在文件开头）")
            return self.issues
        self._course(course)
        topics = data.get("topics")
        if not isinstance(topics, list) or not topics:
            self.add(Place(), None, "文件里没有专题：每个专题以 [[topics]] 开头")
            return self.issues
        topic_codes: dict[str, int] = {}
        question_codes: dict[str, Place] = {}
        total = 0
        for t_index, topic in enumerate(topics, 1):
            if not isinstance(topic, dict):
                self.add(Place.of_topic(t_index), None, "格式不对，应为以 [[topics]] 开头的表")
                continue
            total += self._topic(topic, Place.of_topic(t_index, topic.get("code")), topic_codes, question_codes)
        if total != TOTAL_POINTS:
            self.add(Place(), None, f"全部题目的分值合计 {total} 分，应为 {TOTAL_POINTS} 分")
        return self.issues

    def _course(self, course: dict[str, Any]) -> None:
        place = _COURSE
        code = self.need(course, "code", str, place)
        if code and not CODE.match(code):
            self.add(place, "code", f"{place.name('code')}只能用小写英文字母、数字和 -，最长 64 个字符，"
                                    f"现为 {shown(code)}")
        self.need(course, "title", str, place)
        self.need(course, "description", str, place)
        pass_mark = self.need(course, "pass_mark", int, place)
        if isinstance(pass_mark, int) and not 1 <= pass_mark <= TOTAL_POINTS:
            self.add(place, "pass_mark", f"{place.name('pass_mark')}须在 1 到 {TOTAL_POINTS} 之间（总分 "
                                         f"{TOTAL_POINTS} 分），现为 {pass_mark}")
        percent = self.need(course, "topic_pass_percent", int, place)
        if isinstance(percent, int) and not 0 <= percent <= 100:
            self.add(place, "topic_pass_percent", f"{place.name('topic_pass_percent')}须在 0 到 100 之间，"
                                                  f"现为 {percent}")
        for key, allowed in POLICIES.items():
            value = self.need(course, key, str, place)
            if value and value not in allowed:
                choices = "、".join(f"{a}（{POLICY_NAMES[a]}）" for a in sorted(allowed))
                self.add(place, key, f"{place.name(key)}只能是 {choices}，现为 {shown(value)}")
        threshold = self.need(course, "watch_threshold", (int, float), place)
        if isinstance(threshold, (int, float)) and not 0.5 <= threshold <= 1:
            self.add(place, "watch_threshold", f"{place.name('watch_threshold')}须在 0.5 到 1 之间（如 0.9 "
                                               f"即须看完 90%），现为 {shown(threshold)}")
        if "order" in course:
            order = self.need(course, "order", int, place)
            if isinstance(order, int) and not 1 <= order <= 999:
                self.add(place, "order", f"{place.name('order')}须在 1 到 999 之间（小的排在前面），现为 {order}")
        if "max_playback_rate" in course:
            rate = self.need(course, "max_playback_rate", (int, float), place)
            if isinstance(rate, (int, float)) and not 1 <= rate <= 3:
                self.add(place, "max_playback_rate", f"{place.name('max_playback_rate')}须在 1 到 3 之间"
                                                     f"（如 2 即最快两倍速），现为 {shown(rate)}")
        for key, (allowed, _) in OPTIONAL_POLICIES.items():
            if key not in course:
                continue
            value = self.need(course, key, str, place)
            if value and value not in allowed:
                choices = "、".join(f"{a}（{OPTIONAL_POLICY_NAMES[a]}）" for a in sorted(allowed))
                self.add(place, key, f"{place.name(key)}只能是 {choices}，现为 {shown(value)}")

    def _topic(self, topic: dict[str, Any], place: Place, topic_codes: dict[str, int],
               question_codes: dict[str, Place]) -> int:
        """Check one topic and its questions; return the points of its questions."""
        t_code = self.need(topic, "code", str, place)
        if t_code:
            if not ITEM_CODE.match(t_code):
                self.add(place, "code", f"{place.name('code')}只能用英文字母、数字、- 和 _，最长 32 个字符")
            if t_code in topic_codes:
                self.add(place, "code", f"{place.name('code')}与专题 {topic_codes[t_code]} 重复，都是 {shown(t_code)}")
            else:
                topic_codes[t_code] = place.topic or 0
        self.need(topic, "title", str, place)
        self.need(topic, "summary", str, place)
        video = topic.get("video")
        if not isinstance(video, dict):
            self.add(place, "video", "缺少视频：在专题下写 [topics.video]，包含 url 和 seconds")
        else:
            v_place = place.video()
            url = self.need(video, "url", str, v_place)
            if url and not (url.startswith("https://") or re.fullmatch(r"demo:[a-z0-9-]+", url)):
                self.add(v_place, "url", f"{v_place.name('url')}须以 https:// 开头，或写成 demo:名称"
                                         f"（小写字母、数字和 -），现为 {shown(url)}")
            seconds = self.need(video, "seconds", int, v_place)
            if isinstance(seconds, int) and seconds <= 0:
                self.add(v_place, "seconds", f"{v_place.name('seconds')}须为大于 0 的秒数，现为 {seconds}")
        questions = topic.get("questions")
        if not isinstance(questions, list) or not questions:
            self.add(place, "questions", "没有题目：每道题以 [[topics.questions]] 开头")
            return 0
        points: list[int] = []
        for q_index, question in enumerate(questions, 1):
            if not isinstance(question, dict):
                self.add(place.of_question(q_index), None, "格式不对，应为以 [[topics.questions]] 开头的表")
                continue
            points.append(self._question(question, place.of_question(q_index, question.get("code")),
                                         question_codes))
        if "test_questions" not in topic:
            return sum(points)
        # A test that draws some of the bank: every draw must be worth the same, so the
        # questions share one point value and the course total counts the drawn ones.
        draw = self.need(topic, "test_questions", int, place)
        if not isinstance(draw, int):
            return sum(points)
        if not 1 <= draw <= len(questions):
            self.add(place, "test_questions", f"{place.name('test_questions')}须在 1 到 {len(questions)} 之间"
                                              f"（本专题共 {len(questions)} 道题），现为 {draw}")
            return sum(points)
        if len(set(points)) > 1:
            self.add(place, "test_questions", f"设置了{place.name('test_questions')}时，本专题每道题的分值须相同"
                                              f"（现有 {'、'.join(str(p) for p in sorted(set(points)))} 分）")
            return sum(points)
        return draw * (points[0] if points else 0)

    def _question(self, question: dict[str, Any], place: Place, question_codes: dict[str, Place]) -> int:
        q_code = self.need(question, "code", str, place)
        if q_code:
            if not ITEM_CODE.match(q_code):
                self.add(place, "code", f"{place.name('code')}只能用英文字母、数字、- 和 _，最长 32 个字符")
            first = question_codes.get(q_code)
            if first is not None:
                self.add(place, "code", f"{place.name('code')}与专题 {first.topic} 的第 {first.question} 题重复，"
                                        f"都是 {shown(q_code)}（题目编号在整个课程中不能重复）")
            else:
                question_codes[q_code] = place
        kind = self.need(question, "kind", str, place)
        if kind and kind not in KINDS:
            self.add(place, "kind", f"{place.name('kind')}只能是 single（单选）、multiple（多选）或 judge（判断），"
                                    f"现为 {shown(kind)}")
        points = self.need(question, "points", int, place)
        if isinstance(points, int) and points <= 0:
            self.add(place, "points", f"{place.name('points')}须大于 0，现为 {points}")
        self.need(question, "text", str, place)
        self.need(question, "explanation", str, place)
        self._options(question, kind, place)
        return points if isinstance(points, int) else 0

    def _options(self, question: dict[str, Any], kind: str | None, place: Place) -> None:
        options = question.get("options")
        name = place.name("options")
        if not options:
            self.add(place, "options", f"缺少{name}，至少要有两个选项")
            return
        if not isinstance(options, list):
            self.add(place, "options", f"{name}应为列表，如 [{{ key = \"A\", text = \"……\" }}, …]")
            return
        if len(options) < 2:
            self.add(place, "options", f"{name}至少要有两个，现只有 1 个")
            return
        keys: list[str] = []
        for number, option in enumerate(options, 1):
            if not isinstance(option, dict) or not isinstance(option.get("key"), str) \
                    or not isinstance(option.get("text"), str) or not option["text"].strip():
                self.add(place, "options", f"第 {number} 个选项须有 key 和 text，如 {{ key = \"A\", text = \"……\" }}")
                continue
            if option["key"] in keys:
                self.add(place, "options", f"选项的 key {shown(option['key'])} 重复")
            keys.append(option["key"])
        answer = question.get("answer")
        name = place.name("answer")
        if not isinstance(answer, list) or not answer or not all(isinstance(a, str) for a in answer):
            self.add(place, "answer", f"{name}须列出正确选项的 key，如 [\"A\"]" if "answer" in question
                     else f"缺少{name}：列出正确选项的 key，如 [\"A\"]")
            return
        unknown = [a for a in answer if a not in keys]
        if unknown:
            self.add(place, "answer", f"{name}中的 {'、'.join(shown(a) for a in unknown)} 不是本题的选项"
                                      f"（选项有 {'、'.join(keys) or '无'}）")
        if len(set(answer)) != len(answer):
            self.add(place, "answer", f"{name}中有重复的 key")
        if kind in ("single", "judge") and len(answer) != 1:
            self.add(place, "answer", f"{KIND_NAMES[kind]}的{name}只能有一个，现有 {len(answer)} 个")
        if kind == "multiple" and len(answer) < 2:
            self.add(place, "answer", f"多选题的{name}至少要有两个")
        if kind == "judge" and sorted(keys) != sorted(JUDGE_KEYS):
            self.add(place, "options", "判断题的选项只能是「对」和「错」两个")


def content_hash(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def load_catalog(session: Session, data: dict[str, Any], source: str) -> LoadResult:
    """Record validated catalog `data` as the course's new current version (flush only).

    An unchanged file is a no-op. A changed one becomes version N+1; earlier versions, and
    the attempts that point into them, are never touched."""
    info = data["course"]
    digest = content_hash(data)
    course = session.scalar(select(Course).where(Course.code == info["code"]))
    if course is None:
        course = Course(code=info["code"], current_version=0)
        session.add(course)
        session.flush()
    existing = session.scalar(select(CourseVersion).where(
        CourseVersion.course_id == course.id, CourseVersion.content_hash == digest))
    if existing is not None:
        if course.current_version != existing.number:
            course.current_version = existing.number  # a file put back as it was
            session.flush()
            return LoadResult(course.code, existing.number, created=True)
        return LoadResult(course.code, existing.number, created=False)
    latest = session.scalar(select(CourseVersion.number).where(CourseVersion.course_id == course.id)
                            .order_by(CourseVersion.number.desc()).limit(1)) or 0
    version = CourseVersion(
        course_id=course.id, number=latest + 1, content_hash=digest, title=info["title"],
        description=info["description"], pass_mark=info["pass_mark"],
        topic_pass_percent=info["topic_pass_percent"], on_topic_failed=info["on_topic_failed"],
        on_course_failed=info["on_course_failed"], watch_threshold=float(info["watch_threshold"]),
        max_playback_rate=float(info.get("max_playback_rate", MAX_PLAYBACK_RATE)),
        review_on_fail=info.get("review_on_fail", OPTIONAL_POLICIES["review_on_fail"][1]),
        review_answers=info.get("review_answers", OPTIONAL_POLICIES["review_answers"][1]),
        display_order=int(info.get("order", 100)),
        source=source[:200],
    )
    session.add(version)
    session.flush()
    for position, topic in enumerate(data["topics"], 1):
        row = Topic(version_id=version.id, position=position, code=topic["code"], title=topic["title"],
                    summary=topic["summary"], video_url=topic["video"]["url"],
                    video_seconds=topic["video"]["seconds"], test_questions=topic.get("test_questions"))
        session.add(row)
        session.flush()
        for q_position, q in enumerate(topic["questions"], 1):
            session.add(Question(
                topic_id=row.id, position=q_position, code=q["code"], kind=q["kind"], points=q["points"],
                text=q["text"], options=[{"key": o["key"], "text": o["text"]} for o in q["options"]],
                answer=list(q["answer"]), explanation=q["explanation"],
            ))
    course.current_version = version.number
    session.flush()
    return LoadResult(course.code, version.number, created=True)


def load_catalog_file(session: Session, path: Path) -> LoadResult:
    data = parse_catalog(path.read_text(encoding="utf-8"), path.name)
    return load_catalog(session, data, path.name)


def current_version(session: Session, course_code: str, *, questions: bool = True) -> CourseVersion | None:
    """The version students take now, with its topics loaded, and their questions unless
    `questions=False` (a page that shows progress needs none: see `test_points`)."""
    topics = selectinload(CourseVersion.topics)
    return session.scalar(
        select(CourseVersion)
        .join(Course, Course.id == CourseVersion.course_id)
        .where(Course.code == course_code, CourseVersion.number == Course.current_version)
        .options(topics.selectinload(Topic.questions) if questions else topics)
    )


# A version never changes once recorded (a changed file is a new version), so what each topic's
# test is worth is kept per content hash for the life of the process: the progress every H5 page
# shows then loads no question rows (a course's pool is hundreds of them).
_TEST_POINTS: dict[str, dict[str, int]] = {}
_TEST_POINTS_KEPT = 64


def test_points(session: Session, version: CourseVersion) -> dict[str, int]:
    """What one test of each topic of `version` is worth, by topic code: all its questions, or
    the drawn number of them. One aggregate query, then kept (see above)."""
    found = _TEST_POINTS.get(version.content_hash)
    if found is not None:
        return found
    rows = session.execute(
        select(Topic.code, Topic.test_questions, func.sum(Question.points), func.min(Question.points))
        .outerjoin(Question, Question.topic_id == Topic.id)
        .where(Topic.version_id == version.id)
        .group_by(Topic.id, Topic.code, Topic.test_questions))
    # With a drawn number of questions every question has the same points (the catalog checks it).
    found = {code: (drawn * each if drawn is not None and each is not None else int(total or 0))
             for code, drawn, total, each in rows}
    if len(_TEST_POINTS) >= _TEST_POINTS_KEPT:
        _TEST_POINTS.clear()
    _TEST_POINTS[version.content_hash] = found
    return found


def list_courses(session: Session) -> list[CourseVersion]:
    """Every course's current version: the catalog's `order` first (the main course), then code."""
    return list(session.scalars(
        select(CourseVersion).join(Course, Course.id == CourseVersion.course_id)
        .where(CourseVersion.number == Course.current_version).order_by(CourseVersion.display_order, Course.code)
    ))
