"""A catalog file uploaded in the console: its problems (by line), a preview, and an audited load."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.audit import Actor, record_audit
from handlers.catalog import loader
from handlers.catalog.problems import Problem
from handlers.errors import Refused
from models import Course

MAX_BYTES = 2 * 1024 * 1024


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
        data = loader.parse_catalog(text, source)
    except loader.CatalogError as error:
        return error.problems
    digest = loader.content_hash(data)
    course = session.scalar(select(Course).where(Course.code == data["course"]["code"]))
    current = course.current_version if course is not None else None
    unchanged = False
    if course is not None:
        version = loader.current_version(session, course.code)
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


def load(session: Session, actor: Actor, text: str, source: str, expected_digest: str) -> loader.LoadResult:
    """Load the previewed file as the course's next version — only if it is still what was previewed."""
    checked = check(session, text, source)
    if isinstance(checked, list):
        raise Refused("invalid", "文件未通过校验，请重新上传。")
    if checked.digest != expected_digest:
        raise Refused("changed", "文件与预览时不一致，请重新预览。")
    result = loader.load_catalog(session, checked.data, source)
    record_audit(session, actor, "content.load", "course", result.code,
                 before={"version": checked.current_version},
                 after={"version": result.version, "created": result.created, "content_hash": checked.digest,
                        "source": source[:200], "topics": len(checked.topics), "questions": checked.questions})
    return result
