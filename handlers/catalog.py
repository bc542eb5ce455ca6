"""The course catalog: validating catalog files and loading them as new course versions."""
from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from models import Course, CourseVersion, Question, Topic

CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
ITEM_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
KINDS = {"single", "multiple", "judge"}
JUDGE_KEYS = ["对", "错"]
# rewatch: a failed topic test needs the video again; retry: answer again at once.
# redo_all: a total under the pass mark starts every topic over (a new round).
POLICIES = {"on_topic_failed": {"rewatch", "retry"}, "on_course_failed": {"redo_all"}}
TOTAL_POINTS = 100


class CatalogError(ValueError):
    """A catalog file that cannot be loaded; `problems` lists every reason, each located."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


@dataclass(frozen=True)
class LoadResult:
    code: str
    version: int
    created: bool  # False: the file matched the current version, nothing changed


def parse_catalog(text: str, source: str) -> dict[str, Any]:
    """Parse and validate one catalog file; raise CatalogError naming every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(source, [f"not valid TOML: {exc}"]) from exc
    problems = _problems(data)
    if problems:
        raise CatalogError(source, problems)
    return data


def _problems(data: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    course = data.get("course")
    if not isinstance(course, dict):
        return ["missing [course] table"]

    def need(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
        value = table.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            problems.append(f"{where}: {key} missing or not {getattr(kind, '__name__', kind)}")
            return None
        if isinstance(value, str) and not value.strip():
            problems.append(f"{where}: {key} is empty")
        return value

    code = need(course, "code", str, "course")
    if code and not CODE.match(code):
        problems.append(f"course: code {code!r} must be lower-case letters, digits and '-'")
    need(course, "title", str, "course")
    need(course, "description", str, "course")
    pass_mark = need(course, "pass_mark", int, "course")
    if isinstance(pass_mark, int) and not 1 <= pass_mark <= TOTAL_POINTS:
        problems.append(f"course: pass_mark must be between 1 and {TOTAL_POINTS}")
    percent = need(course, "topic_pass_percent", int, "course")
    if isinstance(percent, int) and not 0 <= percent <= 100:
        problems.append("course: topic_pass_percent must be between 0 and 100")
    for key, allowed in POLICIES.items():
        value = need(course, key, str, "course")
        if value and value not in allowed:
            problems.append(f"course: {key} must be one of {', '.join(sorted(allowed))}")
    threshold = need(course, "watch_threshold", (int, float), "course")
    if isinstance(threshold, (int, float)) and not 0.5 <= threshold <= 1:
        problems.append("course: watch_threshold must be between 0.5 and 1")

    topics = data.get("topics")
    if not isinstance(topics, list) or not topics:
        problems.append("no [[topics]]")
        return problems
    topic_codes: set[str] = set()
    question_codes: set[str] = set()
    total = 0
    for t_index, topic in enumerate(topics, 1):
        where = f"topic {t_index}"
        if not isinstance(topic, dict):
            problems.append(f"{where}: not a table")
            continue
        t_code = need(topic, "code", str, where)
        if t_code:
            where = f"topic {t_index} ({t_code})"
            if not ITEM_CODE.match(t_code):
                problems.append(f"{where}: code must be letters, digits, '-' or '_'")
            if t_code in topic_codes:
                problems.append(f"{where}: duplicate topic code")
            topic_codes.add(t_code)
        need(topic, "title", str, where)
        need(topic, "summary", str, where)
        video = topic.get("video")
        if not isinstance(video, dict):
            problems.append(f"{where}: no [topics.video]")
        else:
            url = need(video, "url", str, where + " video")
            if url and not (url.startswith("https://") or re.fullmatch(r"demo:[a-z0-9-]+", url)):
                problems.append(f"{where}: video url must be https:// or demo:<name>")
            seconds = need(video, "seconds", int, where + " video")
            if isinstance(seconds, int) and seconds <= 0:
                problems.append(f"{where}: video seconds must be positive")
        questions = topic.get("questions")
        if not isinstance(questions, list) or not questions:
            problems.append(f"{where}: no questions")
            continue
        for q_index, question in enumerate(questions, 1):
            q_where = f"{where} question {q_index}"
            if not isinstance(question, dict):
                problems.append(f"{q_where}: not a table")
                continue
            q_code = need(question, "code", str, q_where)
            if q_code:
                q_where = f"{where} question {q_code}"
                if not ITEM_CODE.match(q_code):
                    problems.append(f"{q_where}: code must be letters, digits, '-' or '_'")
                if q_code in question_codes:
                    problems.append(f"{q_where}: duplicate question code")
                question_codes.add(q_code)
            kind = need(question, "kind", str, q_where)
            if kind and kind not in KINDS:
                problems.append(f"{q_where}: kind must be single, multiple or judge")
            points = need(question, "points", int, q_where)
            if isinstance(points, int):
                if points <= 0:
                    problems.append(f"{q_where}: points must be positive")
                total += points
            need(question, "text", str, q_where)
            need(question, "explanation", str, q_where)
            problems.extend(_option_problems(question, kind, q_where))
    if total != TOTAL_POINTS:
        problems.append(f"points add up to {total}, not {TOTAL_POINTS}")
    return problems


def _option_problems(question: dict[str, Any], kind: str | None, where: str) -> list[str]:
    problems: list[str] = []
    options = question.get("options")
    if not isinstance(options, list) or len(options) < 2:
        return [f"{where}: needs at least two options"]
    keys: list[str] = []
    for option in options:
        if not isinstance(option, dict) or not isinstance(option.get("key"), str) \
                or not isinstance(option.get("text"), str) or not option["text"].strip():
            problems.append(f"{where}: every option needs a key and a text")
            continue
        if option["key"] in keys:
            problems.append(f"{where}: duplicate option key {option['key']!r}")
        keys.append(option["key"])
    answer = question.get("answer")
    if not isinstance(answer, list) or not answer or not all(isinstance(a, str) for a in answer):
        return problems + [f"{where}: answer must list option keys"]
    unknown = [a for a in answer if a not in keys]
    if unknown:
        problems.append(f"{where}: answer {unknown} is not an option")
    if len(set(answer)) != len(answer):
        problems.append(f"{where}: answer repeats a key")
    if kind in ("single", "judge") and len(answer) != 1:
        problems.append(f"{where}: a {kind} question has exactly one answer")
    if kind == "multiple" and len(answer) < 2:
        problems.append(f"{where}: a multiple question has two or more answers")
    if kind == "judge" and sorted(keys) != sorted(JUDGE_KEYS):
        problems.append(f"{where}: a judge question has exactly the options 对 and 错")
    return problems


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
        source=source[:200],
    )
    session.add(version)
    session.flush()
    for position, topic in enumerate(data["topics"], 1):
        row = Topic(version_id=version.id, position=position, code=topic["code"], title=topic["title"],
                    summary=topic["summary"], video_url=topic["video"]["url"],
                    video_seconds=topic["video"]["seconds"])
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


def current_version(session: Session, course_code: str) -> CourseVersion | None:
    """The version students take now, with its topics and questions loaded."""
    return session.scalar(
        select(CourseVersion)
        .join(Course, Course.id == CourseVersion.course_id)
        .where(Course.code == course_code, CourseVersion.number == Course.current_version)
        .options(selectinload(CourseVersion.topics).selectinload(Topic.questions))
    )


def list_courses(session: Session) -> list[CourseVersion]:
    """Every course's current version, in code order."""
    return list(session.scalars(
        select(CourseVersion).join(Course, Course.id == CourseVersion.course_id)
        .where(CourseVersion.number == Course.current_version).order_by(Course.code)
    ))
