"""What a student agreed to: the privacy notice's versions (read from content/), and consents given and withdrawn.

The notice is data: `content/privacy/notice.md`, with its version, date and `consent_from` in a
header: consents to that version or a later one still hold (a wording fix keeps the last material
version's number there; a material change sets it to its own version, asking everyone again).
Each version a student consents to is stored (`privacy_notices`) the first
time anyone consents to it, so what a student agreed to can always be shown again, even after the
file moved on.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers.errors import Refused
from models import Consent, PrivacyNotice

NOTICE_FILE = Path(__file__).resolve().parents[2] / "content" / "privacy" / "notice.md"

# The two consents, asked separately: the notice itself (nothing works without it), and sharing
# study progress with the student's school, which is another handler of it (PIPL art. 23).
NOTICE = "notice"
SCHOOL_SHARING = "school_sharing"
PURPOSES = {NOTICE: "同意《隐私政策》", SCHOOL_SHARING: "同意向所在学校提供身份信息与学习进度"}


@dataclass(frozen=True)
class Section:
    title: str
    paragraphs: tuple[str, ...]
    items: tuple[str, ...]


@dataclass(frozen=True)
class Notice:
    version: int
    effective_on: str
    consent_from: int  # the oldest version whose consents still hold
    title: str
    sections: tuple[Section, ...]
    body: str
    sha256: str


def parse_notice(text: str) -> Notice:
    """The notice file: a `---` header (version, effective_on, consent_from), a `# ` title, `## `
    sections of paragraphs and `- ` items."""
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    if match is None:
        raise ValueError("the notice needs a --- header")
    header = dict(line.split(":", 1) for line in match.group(1).splitlines() if ":" in line)
    header = {k.strip(): v.strip() for k, v in header.items()}
    body = match.group(2).strip() + "\n"
    title, sections = "", []
    current: tuple[str, list[str], list[str]] | None = None
    for line in body.splitlines():
        if line.startswith("# "):
            title = line[2:].strip()
        elif line.startswith("## "):
            current = (line[3:].strip(), [], [])
            sections.append(current)
        elif line.strip():
            if current is None:
                current = ("", [], [])
                sections.append(current)
            (current[2] if line.startswith("- ") else current[1]).append(line.removeprefix("- ").strip())
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", header.get("effective_on", "")):
        raise ValueError("effective_on must be YYYY-MM-DD")
    version = int(header["version"])
    consent_from = int(header.get("consent_from", version))
    if not 1 <= consent_from <= version:
        raise ValueError("consent_from must be a version up to this one")
    return Notice(version=version, effective_on=header["effective_on"], consent_from=consent_from, title=title,
                  sections=tuple(Section(t, tuple(p), tuple(i)) for t, p, i in sections), body=body,
                  sha256=hashlib.sha256(body.encode()).hexdigest())


@lru_cache(maxsize=4)
def _read(path: Path, mtime: float) -> Notice:
    return parse_notice(path.read_text(encoding="utf-8"))


def current_notice(path: Path | None = None) -> Notice:
    """The notice in force (the file, re-read when it changes)."""
    path = path or NOTICE_FILE
    return _read(path, path.stat().st_mtime)


def notice_row(session: Session, notice: Notice) -> PrivacyNotice:
    """The stored copy of this version, stored now if it is the first consent to it. A version whose
    text changed without a new number is refused: what people agreed to must not move under them."""
    row = session.scalar(select(PrivacyNotice).where(PrivacyNotice.version == notice.version))
    if row is None:
        try:
            with session.begin_nested():
                row = PrivacyNotice(version=notice.version, material=notice.consent_from == notice.version,
                                    effective_on=notice.effective_on, body=notice.body, sha256=notice.sha256)
                session.add(row)
        except IntegrityError:  # another request stored it first
            row = session.scalar(select(PrivacyNotice).where(PrivacyNotice.version == notice.version))
    assert row is not None
    if row.sha256 != notice.sha256:
        raise RuntimeError(f"privacy notice version {notice.version} changed without a new version number")
    return row


def latest(session: Session, user_id: int, purpose: str) -> Consent | None:
    return session.scalar(select(Consent).where(Consent.user_id == user_id, Consent.purpose == purpose)
                          .order_by(Consent.id.desc()).limit(1))


@dataclass(frozen=True)
class Standing:
    """Where a student stands: whether each consent holds for the notice in force."""

    notice: bool
    school_sharing: bool
    asked_before: bool  # they agreed to an earlier version: "the notice changed", not "welcome"

    @property
    def complete(self) -> bool:
        return self.notice and self.school_sharing


def standing(session: Session, user_id: int, notice: Notice | None = None) -> Standing:
    notice = notice or current_notice()
    need = notice.consent_from
    held = {}
    for purpose in PURPOSES:
        row = latest(session, user_id, purpose)
        held[purpose] = row is not None and row.granted and row.notice_version >= need
    before = session.scalar(select(Consent.id).where(Consent.user_id == user_id, Consent.granted.is_(True))
                            .limit(1)) is not None
    return Standing(held[NOTICE], held[SCHOOL_SHARING], before and not held[NOTICE])


def check_ticked(notice_ticked: bool, sharing_ticked: bool) -> dict[str, str]:
    """Both boxes are needed to verify one's identity through the school; each says why when not."""
    errors = {}
    if not notice_ticked:
        errors[NOTICE] = "请阅读并勾选同意《隐私政策》"
    if not sharing_ticked:
        errors[SCHOOL_SHARING] = "身份需由所在学校核验，请勾选同意向学校提供身份信息与学习进度"
    return errors


def give(session: Session, user_id: int, purposes: tuple[str, ...], now: datetime,
         notice: Notice | None = None) -> None:
    """Record consent to the notice in force for each purpose (a row each, never an update)."""
    notice = notice or current_notice()
    notice_row(session, notice)
    for purpose in purposes:
        if purpose not in PURPOSES:
            raise ValueError(purpose)
        current = latest(session, user_id, purpose)
        if current is not None and current.granted and current.notice_version == notice.version:
            continue  # a double tap records one consent
        session.add(Consent(user_id=user_id, purpose=purpose, notice_version=notice.version, granted=True, at=now))
    session.flush()


def withdraw(session: Session, user_id: int, purpose: str, now: datetime, notice: Notice | None = None) -> bool:
    """Withdraw one consent; False when there was none to withdraw."""
    if purpose not in PURPOSES:
        raise Refused("no_purpose", "没有这项同意。")
    current = latest(session, user_id, purpose)
    if current is None or not current.granted:
        return False
    notice = notice or current_notice()
    session.add(Consent(user_id=user_id, purpose=purpose, notice_version=notice.version, granted=False, at=now))
    session.flush()
    return True
