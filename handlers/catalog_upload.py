"""A catalog file uploaded in the console: its problems located by line, a preview, and an audited load."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers import catalog
from handlers.console_accounts import Actor, record_audit
from handlers.learning import Refused
from models import Course

MAX_BYTES = 2 * 1024 * 1024
_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"-]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")
_STRING_VALUE = re.compile(r"^\s*[A-Za-z0-9_-]+\s*=\s*\"((?:[^\"\\]|\\.)*)\"")
_TOML_AT = re.compile(r"\(at line (\d+), column \d+\)")
_WHERE = re.compile(r"^(course|topic (\d+)(?: \([^)]*\))?(?: video)?(?: question (.+?))?): (.*)$")


@dataclass
class _Block:
    line: int
    keys: dict[str, int] = field(default_factory=dict)
    code: str | None = None


@dataclass
class _Topic(_Block):
    video: _Block | None = None
    questions: list[_Block] = field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    line: int | None  # 1-based; None when the problem is the file as a whole
    message: str


def _outline(text: str) -> tuple[_Block | None, list[_Topic]]:
    """Where each table of the catalog starts and where each of its keys is, from the text itself
    (tomllib keeps no positions). Only headers and `key =` at a line start count, so the lines of a
    multi-line options array never look like keys."""
    course: _Block | None = None
    topics: list[_Topic] = []
    current: _Block | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        header = _HEADER.match(raw)
        if header:
            name = header.group(2).replace('"', "")
            current = None
            if name == "course":
                current = course = _Block(number)
            elif name == "topics":
                topic = _Topic(number)
                topics.append(topic)
                current = topic
            elif name == "topics.video" and topics:
                current = topics[-1].video = _Block(number)
            elif name == "topics.questions" and topics:
                current = _Block(number)
                topics[-1].questions.append(current)
            continue
        key = _KEY.match(raw)
        if key and current is not None and key.group(1) not in current.keys:
            current.keys[key.group(1)] = number
            if key.group(1) == "code":
                value = _STRING_VALUE.match(raw)
                current.code = value.group(1) if value else None
    return course, topics


def locate(text: str, problems: list[str]) -> list[Problem]:
    """Each validation problem with the line it is about (the key's line, else its table's)."""
    course, topics = _outline(text)
    located = []
    for problem in problems:
        located.append(Problem(_line_of(problem, course, topics), problem))
    return located


def _line_of(problem: str, course: _Block | None, topics: list[_Topic]) -> int | None:
    at = _TOML_AT.search(problem)
    if at:
        return int(at.group(1))
    match = _WHERE.match(problem)
    if not match:
        return None
    where, topic_index, question, rest = match.groups()
    block: _Block | None
    if where == "course":
        block = course
    else:
        index = int(topic_index) - 1
        if not 0 <= index < len(topics):
            return None
        topic = topics[index]
        block = topic
        if question is not None:
            block = next((q for q in topic.questions if q.code == question), None)
            if block is None and question.isdigit() and 0 < int(question) <= len(topic.questions):
                block = topic.questions[int(question) - 1]
            if block is None:
                block = topic
        elif " video" in where:
            block = topic.video or topic
    if block is None:
        return None
    words = rest.split(" ")
    if words[0] == "video" and isinstance(block, _Topic) and block.video is not None and len(words) > 1:
        block, words = block.video, words[1:]  # "video url must be …" is about the video table's url
    return block.keys.get(words[0].strip(":"), block.line)


@dataclass(frozen=True)
class Preview:
    source: str
    data: dict[str, Any]
    code: str
    title: str
    topics: list[dict[str, Any]]  # title, code, questions, points, video seconds
    questions: int
    current_version: int | None  # the course's version now (None: a new course)
    unchanged: bool  # the file is the current version already
    digest: str


def check(session: Session, text: str, source: str) -> Preview | list[Problem]:
    """The preview of a valid catalog file, or its problems with their lines."""
    try:
        data = catalog.parse_catalog(text, source)
    except catalog.CatalogError as error:
        return locate(text, error.problems)
    digest = catalog.content_hash(data)
    course = session.scalar(select(Course).where(Course.code == data["course"]["code"]))
    current = course.current_version if course is not None else None
    unchanged = False
    if course is not None:
        version = catalog.current_version(session, course.code)
        unchanged = version is not None and version.content_hash == digest
    topics = [{"code": t["code"], "title": t["title"], "questions": len(t["questions"]),
               "points": sum(q["points"] for q in t["questions"]), "seconds": t["video"]["seconds"]}
              for t in data["topics"]]
    return Preview(source, data, data["course"]["code"], data["course"]["title"], topics,
                   sum(t["questions"] for t in topics), current, unchanged, digest)


def decode(raw: bytes) -> str:
    if len(raw) > MAX_BYTES:
        raise Refused("too_big", "文件太大（最大 2 MB）。")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise Refused("not_utf8", "文件不是 UTF-8 编码，请另存为 UTF-8 后重试。") from error


def load(session: Session, actor: Actor, text: str, source: str, expected_digest: str) -> catalog.LoadResult:
    """Load the previewed file as the course's next version — only if it is still what was previewed."""
    checked = check(session, text, source)
    if isinstance(checked, list):
        raise Refused("invalid", "文件未通过校验，请重新上传。")
    if checked.digest != expected_digest:
        raise Refused("changed", "文件与预览时不一致，请重新预览。")
    result = catalog.load_catalog(session, checked.data, source)
    record_audit(session, actor, "content.load", "course", result.code,
                 before={"version": checked.current_version},
                 after={"version": result.version, "created": result.created, "content_hash": checked.digest,
                        "source": source[:200], "topics": len(checked.topics), "questions": checked.questions})
    return result
