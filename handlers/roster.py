"""School rosters: a school admin's uploaded list (CSV or XLSX) queued, then parsed row by row and merged by a
job, and its upload history."""
from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from handlers.console_accounts import Actor, record_audit
from handlers.identity import NAME, PHONE, STUDENT_NUMBER, verify_pending
from handlers.learning import Refused
from handlers.outbox import record_job
from models import RosterEntry, RosterFile, RosterUpload, School
from models.base import utcnow

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 60_000
# An .xlsx is a zip: refuse one that would inflate past this (a zip bomb), before openpyxl reads it.
MAX_XLSX_INFLATED = 200 * 1024 * 1024
# Rows searched for the header (files exported from 教务 systems often start with a title line).
HEADER_SEARCH_ROWS = 10
# Problem rows stored in an upload's report; the counts are always complete.
REPORT_PROBLEMS_KEPT = 2000
MAX_COLUMNS = 60
MODES = ("merge", "replace")
# Primary keys per DELETE … IN (…): under SQLite's bound-parameter limit.
DELETE_CHUNK = 500

FIELDS = ("student_number", "real_name", "college", "grade", "phone")
LABELS = {"student_number": "学号", "real_name": "姓名", "college": "学院", "grade": "年级", "phone": "手机"}
OPTIONAL_LIMITS = {"college": 100, "grade": 20}

# Header names as people write them, after _header_key (NFKC, lower-case, no spaces or marks).
HEADER_ALIASES = {
    "student_number": (
        "学号",
        "学生学号",
        "学籍号",
        "学号工号",
        "studentid",
        "studentnumber",
        "studentno",
        "id",
        "number",
        "no",
    ),
    "real_name": ("姓名", "学生姓名", "名字", "真实姓名", "name", "realname", "studentname", "fullname"),
    "college": ("学院", "院系", "所在学院", "所属学院", "系", "院部", "college", "department", "faculty", "school"),
    "grade": ("年级", "所在年级", "入学年级", "grade", "year", "classyear"),
    "phone": (
        "手机",
        "手机号",
        "手机号码",
        "电话",
        "联系电话",
        "联系方式",
        "phone",
        "mobile",
        "phonenumber",
        "tel",
        "cellphone",
    ),
}
_ALIAS_TO_FIELD = {alias: name for name, aliases in HEADER_ALIASES.items() for alias in aliases}

FORMULA_START = ("=", "+", "-", "@")
# Characters that Excel and WPS leave behind and nobody means: zero-width spaces, BOMs, soft hyphens.
INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SCIENTIFIC = re.compile(r"^(\d+)(?:\.(\d+))?E\+?(\d+)$", re.IGNORECASE)
EXCEL_TEXT = re.compile(r'^="(.*)"$')

NOT_A_TABLE = "无法识别的文件：请上传 CSV（逗号、制表符或分号分隔）或 Excel .xlsx 文件"

UPLOAD_JOB = "roster.process_upload"
UNFINISHED = ("queued", "running")
# An upload still queued or running after this long is stuck (its job failed for good: staff see it
# under failed jobs); it no longer blocks the school's next upload.
BUSY_WINDOW = timedelta(minutes=30)
# Rows parsed between two progress reports (each is a small UPDATE committed on its own).
PROGRESS_EVERY = 2000


@dataclass
class RowReport:
    """One row that was fixed or rejected (accepted rows are only counted)."""

    row: int
    status: str  # "fixed" or "rejected"
    student_number: str
    real_name: str
    notes: list[str]


@dataclass
class ParsedRoster:
    """A roster file read and checked row by row; `entries` are the clean rows to merge."""

    kind: str  # "csv" or "xlsx"
    encoding: str | None
    delimiter: str | None
    sheet: str | None
    header_row: int
    columns: dict[str, str]
    entries: list[dict[str, str | None]] = field(default_factory=list)
    problems: list[RowReport] = field(default_factory=list)
    rows: int = 0
    blank: int = 0
    accepted: int = 0
    fixed: int = 0
    rejected: int = 0


# ---------------------------------------------------------------------------------------------- reading


def sniff(data: bytes) -> str:
    """The file's kind from its size and first bytes, cheaply (the request's check): "xlsx" or "csv".
    Refused for what can never be a roster; a file that passes may still fail to parse (the job says why)."""
    if len(data) > MAX_BYTES:
        raise Refused("too_large", f"文件超过 {MAX_BYTES // 1024 // 1024} MB，请拆分成几个文件分别上传")
    if not data.strip():
        raise Refused("empty", "文件是空的")
    if data.startswith(b"PK\x03\x04"):
        return "xlsx"
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise Refused("xls", "不支持旧版 Excel（.xls）文件：请在 Excel 中“另存为” .xlsx 或 CSV 后再上传")
    head = data[:65536]
    if not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        if b"\x00" in head or len(CONTROL_BYTES.findall(head)) > max(3, len(head) // 1000):
            raise Refused("binary", NOT_A_TABLE)
    return "csv"


def parse_roster(data: bytes, progress: Callable[[int], None] | None = None) -> ParsedRoster:
    """Read a roster file (kind detected from its bytes, not its name) and check every row;
    `progress(rows)` is told every PROGRESS_EVERY rows. A file that cannot be read at all is a
    Refused with a Chinese message; nothing is kept."""
    if sniff(data) == "xlsx":
        return _parse_table(*_xlsx_rows(data), kind="xlsx", encoding=None, delimiter=None, progress=progress)
    text, encoding = _decode(data)
    delimiter = _delimiter(text)
    return _parse_table(_csv_rows(text, delimiter), None, kind="csv", encoding=encoding, delimiter=delimiter,
                        progress=progress)


def _decode(data: bytes) -> tuple[str, str]:
    """UTF-8 (with or without BOM), UTF-16 with BOM (Excel's "Unicode text"), else GBK/GB18030 (Excel in China)."""
    try:
        if data.startswith(codecs.BOM_UTF8):
            text, encoding = data[len(codecs.BOM_UTF8):].decode("utf-8"), "UTF-8（带 BOM）"
        elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            text, encoding = data.decode("utf-16"), "UTF-16"
        elif b"\x00" in data:
            raise Refused("binary", NOT_A_TABLE)
        else:
            try:
                text, encoding = data.decode("utf-8"), "UTF-8"
            except UnicodeDecodeError:
                text, encoding = data.decode("gb18030"), "GBK/GB18030"
    except UnicodeDecodeError as exc:
        raise Refused("encoding", "无法识别文件编码：请在 Excel 中另存为“CSV UTF-8”或 .xlsx 后再上传") from exc
    sample = text[:65536]
    if len(CONTROL.findall(sample)) > max(3, len(sample) // 1000):
        raise Refused("binary", NOT_A_TABLE)
    return text, encoding


def _delimiter(text: str) -> str:
    """The delimiter that splits the header into the most recognised columns (ties: the most common)."""
    head = text[:8192]
    lines = [line for line in head.splitlines()[:HEADER_SEARCH_ROWS] if line.strip()]
    best, best_score = ",", (-1, -1)
    for candidate in (",", "\t", ";"):
        known = max((len({_ALIAS_TO_FIELD.get(_header_key(cell)) for cell in line.split(candidate)} - {None})
                     for line in lines), default=0)
        score = (known, head.count(candidate))
        if score > best_score:
            best, best_score = candidate, score
    return best


def _csv_rows(text: str, delimiter: str) -> Iterator[tuple[int, list[Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for cells in reader:
            yield reader.line_num, cells[:MAX_COLUMNS]
    except csv.Error as exc:
        raise Refused("bad_csv", f"第 {reader.line_num} 行无法解析（{exc}）：请检查引号是否成对") from exc


def _xlsx_rows(data: bytes) -> tuple[Iterator[tuple[int, list[Any]]], str]:
    import openpyxl  # imported here: only uploads pay for it

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if sum(info.file_size for info in archive.infolist()) > MAX_XLSX_INFLATED:
                raise Refused("too_large", "Excel 文件解压后过大，请删去无关的工作表或改用 CSV")
            if "xl/workbook.xml" not in archive.namelist():
                raise Refused("binary", NOT_A_TABLE)
        # Formulas are read as their text ("=…"), never evaluated: data_only=False.
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Refused:
        raise
    except Exception as exc:  # openpyxl raises many kinds for a damaged file
        raise Refused("bad_xlsx", "Excel 文件已损坏或无法读取：请重新保存为 .xlsx 或 CSV 后上传") from exc
    sheets = book.worksheets
    # The first sheet whose first rows hold a header; else the first sheet (its error names it).
    for sheet in sheets:
        head = [list(row) for row in sheet.iter_rows(max_row=HEADER_SEARCH_ROWS, max_col=MAX_COLUMNS,
                                                      values_only=True)]
        if _find_header(enumerate(head, start=1)) is not None:
            break
    else:
        sheet = sheets[0]

    def rows() -> Iterator[tuple[int, list[Any]]]:
        try:
            for number, row in enumerate(sheet.iter_rows(max_col=MAX_COLUMNS, values_only=True), start=1):
                yield number, list(row)
        finally:
            book.close()

    return rows(), sheet.title


def _header_key(value: Any) -> str:
    text = unicodedata.normalize("NFKC", str(value or "")).lower()
    text = re.sub(r"\(.*?\)|（.*?）", "", text)  # "学号（必填）"
    return re.sub(r"[\s_\-*:：/.#]", "", INVISIBLE.sub("", text))


def _find_header(rows: Any) -> tuple[int, dict[str, int], dict[str, str]] | None:
    for number, cells in rows:
        if number > HEADER_SEARCH_ROWS:
            return None
        positions: dict[str, int] = {}
        names: dict[str, str] = {}
        for index, cell in enumerate(cells):
            name = _ALIAS_TO_FIELD.get(_header_key(cell))
            if name is not None and name not in positions:
                positions[name], names[name] = index, str(cell).strip()
        if "student_number" in positions and "real_name" in positions:
            return number, positions, names
    return None


def _parse_table(rows: Iterator[tuple[int, list[Any]]], sheet: str | None, *, kind: str, encoding: str | None,
                 delimiter: str | None, progress: Callable[[int], None] | None = None) -> ParsedRoster:
    head: list[tuple[int, list[Any]]] = []
    for number, cells in rows:
        head.append((number, cells))
        if len(head) >= HEADER_SEARCH_ROWS:
            break
    found = _find_header(head)
    if found is None:
        raise Refused("no_header", "找不到表头：前 10 行中应有一行同时包含“姓名”和“学号”两列"
                                   "（可选：学院、年级、手机）")
    header_row, positions, names = found
    parsed = ParsedRoster(kind=kind, encoding=encoding, delimiter=delimiter, sheet=sheet, header_row=header_row,
                          columns=names)
    seen: dict[str, int] = {}

    def body() -> Iterator[tuple[int, list[Any]]]:
        yield from (item for item in head if item[0] > header_row)
        yield from rows

    for number, cells in body():
        values = [cells[positions[name]] if name in positions and positions[name] < len(cells) else None
                  for name in FIELDS]
        if all(_blank(value) for value in values):
            parsed.blank += 1
            continue
        parsed.rows += 1
        if progress is not None and parsed.rows % PROGRESS_EVERY == 0:
            progress(parsed.rows)
        if parsed.rows > MAX_ROWS:
            raise Refused("too_many_rows", f"名单超过 {MAX_ROWS} 行，请拆分成几个文件分别上传")
        entry, notes, reasons = _check_row(dict(zip(FIELDS, values)))
        number_text = entry["student_number"] or ""
        if not reasons and number_text in seen:
            reasons.append(f"与第 {seen[number_text]} 行学号重复")
        if reasons:
            parsed.rejected += 1
            # As the file has it, so the admin finds the row.
            parsed.problems.append(RowReport(number, "rejected", _shown(values[0]), _shown(values[1]),
                                             reasons + notes))
            continue
        seen[number_text] = number
        parsed.entries.append(entry)
        if notes:
            parsed.fixed += 1
            parsed.problems.append(RowReport(number, "fixed", number_text, entry["real_name"] or "", notes))
        else:
            parsed.accepted += 1
    return parsed


def _shown(raw: Any) -> str:
    """What a report shows for a rejected row's cell: as in the file, shortened, and defused."""
    text = CONTROL.sub("", _cell_text(raw, [])).strip()[:40]
    return "'" + text if text.startswith(FORMULA_START) else text


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not INVISIBLE.sub("", value).strip())


# ---------------------------------------------------------------------------------------------- checking


def _cell_text(value: Any, notes: list[str]) -> str:
    """A cell as text: Excel numbers back to digits (2024001.0 → 2024001), dates as dates."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            notes.append("数字格式的单元格已转为文本（若学号以 0 开头，请把该列设为“文本”）")
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        notes.append("数字格式的单元格已转为文本（若学号以 0 开头，请把该列设为“文本”）")
        return str(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat(" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _clean(raw: Any, label: str, notes: list[str], *, flag_formula: bool = True) -> str:
    text = _cell_text(raw, notes)
    unwrapped = EXCEL_TEXT.match(text.strip())
    if unwrapped:
        text = unwrapped.group(1)
        notes.append(f"{label}：去掉了 Excel 的 =\"…\" 文本写法")
    elif flag_formula and text.strip().startswith(FORMULA_START):
        notes.append(f"{label}：以 = + - @ 开头，按普通文本处理（不执行公式）")
    visible = INVISIBLE.sub("", CONTROL.sub("", text))
    if visible != text:
        notes.append(f"{label}：去掉了不可见字符")
    half = unicodedata.normalize("NFKC", visible)
    if half != visible:
        notes.append(f"{label}：全角字符已转为半角")
    spaced = re.sub(r"\s+", " ", half).strip()
    if spaced != half:
        notes.append(f"{label}：去掉了多余的空格")
    return spaced


def _number(raw: Any, notes: list[str], reasons: list[str]) -> str:
    text = _clean(raw, "学号", notes).replace(" ", "")
    scientific = SCIENTIFIC.match(text)
    if scientific:
        fraction, exponent = scientific.group(2) or "", int(scientific.group(3))
        # 2.024001E+06 keeps every digit; 2.024E+11 is Excel hiding (and then losing) the last ones.
        if len(fraction) == exponent:
            text = str(int(Decimal(text)))
            notes.append("学号：科学计数法已还原为数字")
        else:
            reasons.append("学号被 Excel 显示成了科学计数法，后几位已丢失：请把学号列设为“文本”后重新导出")
            return text
    elif re.fullmatch(r"\d+\.0+", text):
        text = text.split(".")[0]
        notes.append("学号：去掉了小数点后的 .0")
    upper = text.upper()
    if upper != text:
        notes.append("学号：字母已转为大写")
    if not upper:
        reasons.append("学号为空")
    elif len(upper) > 32:
        reasons.append("学号太长（最多 32 位）")
    elif not STUDENT_NUMBER.match(upper):
        reasons.append("学号只能包含字母、数字和 -（3–32 位，不能以 - 开头）")
    return upper


def _name(raw: Any, notes: list[str], reasons: list[str]) -> str:
    text = _clean(raw, "姓名", notes)
    dotted = text.replace("•", "·").replace("・", "·").replace(".", "·") if re.search(r"[\u3400-\u9fff]", text) \
        else text.replace("•", "·").replace("・", "·")
    if dotted != text:
        notes.append("姓名：间隔号已统一为 ·")
    if not dotted:
        reasons.append("姓名为空")
    elif dotted.startswith(FORMULA_START):
        reasons.append("姓名不能以 = + - @ 开头（疑似公式）")
    elif len(dotted) > 30:
        reasons.append("姓名太长（最多 30 个字）")
    elif not NAME.match(dotted):
        reasons.append("姓名只能包含汉字、字母、空格和 ·（至少 2 个字）")
    return dotted


def _optional(raw: Any, name: str, notes: list[str], reasons: list[str]) -> str | None:
    label = LABELS[name]
    text = _clean(raw, label, notes, flag_formula=False)
    # Stored values never start a formula, so no later export can carry one into Excel.
    defused = text.lstrip("=+-@ \t")
    if defused != text:
        notes.append(f"{label}：以 = + - @ 开头，按文本处理并去掉了这些符号（不执行公式，导出后也不会被当作公式）")
    if len(defused) > OPTIONAL_LIMITS[name]:
        reasons.append(f"{label}太长（最多 {OPTIONAL_LIMITS[name]} 个字）")
    return defused or None


def _phone(raw: Any, notes: list[str]) -> str | None:
    text = _cell_text(raw, [])
    cleaned = re.sub(r"[\s\-()（）]", "", unicodedata.normalize("NFKC", INVISIBLE.sub("", text)))
    cleaned = cleaned.removeprefix("+86").removeprefix("0086")
    if not cleaned:
        return None
    if not PHONE.match(cleaned):
        notes.append("手机：格式不对（应为 11 位手机号），已忽略")
        return None
    if cleaned != text.strip():
        notes.append("手机：去掉了空格、横线或 +86")
    return cleaned


def _check_row(values: dict[str, Any]) -> tuple[dict[str, str | None], list[str], list[str]]:
    """One row's clean values, what was fixed, and why it is rejected (empty when it is not)."""
    notes: list[str] = []
    reasons: list[str] = []
    entry: dict[str, str | None] = {
        "student_number": _number(values["student_number"], notes, reasons),
        "real_name": _name(values["real_name"], notes, reasons),
        "college": _optional(values["college"], "college", notes, reasons),
        "grade": _optional(values["grade"], "grade", notes, reasons),
        "phone": _phone(values["phone"], notes),
    }
    # One note per kind is enough ("数字格式…" may be said by several cells).
    return entry, list(dict.fromkeys(notes)), reasons


# ---------------------------------------------------------------------------------------------- merging


def merge_roster(session: Session, actor: Actor, school_id: int, parsed: ParsedRoster, file_name: str,
                 mode: str = "merge", upload: RosterUpload | None = None) -> RosterUpload:
    """Upsert the file's rows by (school, student number); rows the file does not mention are kept
    ("merge") or removed ("replace", only from a file without rejected rows, so a typo never deletes
    a student). Then verify pending profiles that now match, and record the upload (`upload`, the queued
    one, or a new row) with its report. Verified profiles stay verified whatever the roster loses. Flushes only."""
    if mode not in MODES:
        raise Refused("bad_mode", "未知的上传方式")
    if mode == "replace" and parsed.rejected:
        raise Refused("replace_with_rejections", f"替换方式要求文件中没有被拒绝的行（本文件有 {parsed.rejected} 行）："
                                                 "请修正后再上传，或改用合并方式")
    # One upload per school at a time (PostgreSQL; SQLite writers queue anyway): two merges of the
    # same school would otherwise race on the unique (school, number) rows.
    session.scalar(select(School.id).where(School.id == school_id).with_for_update())
    columns = (RosterEntry.id, RosterEntry.student_number, RosterEntry.real_name, RosterEntry.college,
               RosterEntry.grade, RosterEntry.phone)
    existing = {row.student_number: row for row in session.execute(
        select(*columns).where(RosterEntry.school_id == school_id))}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for entry in parsed.entries:
        old = existing.get(entry["student_number"] or "")
        if old is None:
            inserts.append({"school_id": school_id, **entry})
            continue
        # An empty cell never erases what an earlier upload said.
        changes = {name: value for name, value in entry.items()
                   if value is not None and getattr(old, name) != value}
        if changes:
            updates.append({"id": old.id, **changes})
    if inserts:
        session.execute(insert(RosterEntry), inserts)
    for changed in _grouped(updates):
        session.execute(update(RosterEntry), changed)
    matched = len(parsed.entries) - len(inserts)
    listed = {entry["student_number"] for entry in parsed.entries}
    absent = [row for number, row in existing.items() if number not in listed] if mode == "replace" else []
    for start in range(0, len(absent), DELETE_CHUNK):
        chunk = [row.id for row in absent[start:start + DELETE_CHUNK]]
        session.execute(delete(RosterEntry).where(RosterEntry.id.in_(chunk)))
    verified = verify_pending(session, school_id)
    problems = parsed.problems[:REPORT_PROBLEMS_KEPT]
    report = {
        "kind": parsed.kind, "encoding": parsed.encoding, "delimiter": {",": "逗号", "\t": "制表符", ";": "分号"}.get(
            parsed.delimiter or "", None), "sheet": parsed.sheet, "header_row": parsed.header_row,
        "columns": {LABELS[name]: header for name, header in parsed.columns.items()},
        "blank": parsed.blank, "unchanged": matched - len(updates),
        "problems": [asdict(problem) for problem in problems],
        "problems_left_off": len(parsed.problems) - len(problems),
        "verified_profiles": [profile.id for profile in verified],
    }
    if upload is None:
        upload = RosterUpload(school_id=school_id, account_id=actor.account_id, uploaded_by=actor.name[:100],
                              file_name=(file_name or "roster")[:200], mode=mode)
        session.add(upload)
    upload.rows, upload.accepted, upload.fixed, upload.rejected = (parsed.rows, parsed.accepted, parsed.fixed,
                                                                   parsed.rejected)
    upload.added, upload.updated, upload.kept = len(inserts), len(updates), len(existing) - matched - len(absent)
    upload.removed, upload.verified, upload.report = len(absent), len(verified), report
    upload.status, upload.parsed_rows, upload.error, upload.finished_at = "done", parsed.rows, None, utcnow()
    session.flush()
    record_audit(session, actor, "roster.upload", "roster_upload", upload.id, school_id=school_id,
                 after={"file_name": upload.file_name, "rows": upload.rows, "accepted": upload.accepted,
                        "fixed": upload.fixed, "rejected": upload.rejected, "added": upload.added,
                        "updated": upload.updated, "kept": upload.kept, "mode": mode, "removed": upload.removed,
                        "verified_profiles": report["verified_profiles"]},
                 before={"removed": [{"student_number": row.student_number, "real_name": row.real_name}
                                     for row in absent]} if absent else None)
    return upload


def request_upload(session: Session, actor: Actor, school_id: int, data: bytes, file_name: str,
                   mode: str = "merge") -> RosterUpload:
    """The request's part: cheap checks (size, kind by magic bytes, mode), then the upload queued with
    its bytes and a job to parse and merge it. One upload per school at a time: while one is queued or
    running, another is refused (the admin reads the first report before sending the next file; in
    replace mode their order decides the result). Flushes only."""
    if mode not in MODES:
        raise Refused("bad_mode", "未知的上传方式")
    sniff(data)
    # The school row lock serialises two admins uploading at once, so only one of them is queued.
    session.scalar(select(School.id).where(School.id == school_id).with_for_update())
    busy = session.scalar(select(RosterUpload).where(
        RosterUpload.school_id == school_id, RosterUpload.status.in_(UNFINISHED),
        RosterUpload.created_at >= utcnow() - BUSY_WINDOW).order_by(RosterUpload.id).limit(1))
    if busy is not None:
        raise Refused("roster_busy", f"上一份名单（{busy.file_name}）还在处理中，请等它完成、看过报告后再上传")
    upload = RosterUpload(school_id=school_id, account_id=actor.account_id, uploaded_by=actor.name[:100],
                          file_name=(file_name or "roster")[:200], mode=mode, status="queued", report={})
    session.add(upload)
    session.flush()
    session.add(RosterFile(upload_id=upload.id, content=data))
    record_job(session, UPLOAD_JOB, {"upload_id": upload.id}, dedup_key=f"roster-upload:{upload.id}",
               max_attempts=3)
    session.flush()
    return upload


def process_upload(session: Session, upload_id: int, progress: Callable[[int], None]) -> RosterUpload | None:
    """The job's part: parse the stored bytes (telling `progress` the rows read; it commits on its own
    connection, so this session writes nothing until the merge), then merge, or record why not. The
    bytes are deleted either way; the caller commits once. A finished upload is left alone (a re-run)."""
    upload = session.get(RosterUpload, upload_id)
    if upload is None or upload.status not in UNFINISHED:
        return upload
    stored = session.get(RosterFile, upload_id)
    school_id, account_id, name, file_name, mode = (upload.school_id, upload.account_id, upload.uploaded_by,
                                                    upload.file_name, upload.mode)
    data = stored.content if stored is not None else b""
    session.rollback()  # no read transaction held while parsing (SQLite: the progress writes need the lock)
    try:
        if stored is None:
            raise Refused("lost", "上传的文件已丢失，请重新上传")
        progress(0)
        parsed = parse_roster(data, progress)
        if not parsed.entries:
            raise Refused("nothing", f"文件中没有可导入的行（{parsed.rejected} 行有问题，{parsed.blank} 行为空），"
                                     "名单未改变。请按表头“姓名、学号”整理后重新上传")
        upload = session.get(RosterUpload, upload_id)
        assert upload is not None
        merge_roster(session, Actor(account_id, name, school_id), school_id, parsed, file_name, mode, upload)
    except Refused as refused:
        session.rollback()
        upload = session.get(RosterUpload, upload_id)
        assert upload is not None
        upload.status, upload.error, upload.finished_at = "failed", refused.message, utcnow()
    session.execute(delete(RosterFile).where(RosterFile.upload_id == upload_id))
    session.flush()
    return upload


def record_progress(connection: Any, upload_id: int, rows: int) -> None:
    """An upload's job is running and has read `rows` rows (never moves a finished upload back)."""
    connection.execute(update(RosterUpload).where(RosterUpload.id == upload_id,
                                                  RosterUpload.status.in_(UNFINISHED))
                       .values(status="running", parsed_rows=rows))


def _grouped(updates: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Bulk UPDATEs by primary key need the same columns in every row of a batch."""
    batches: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in updates:
        batches.setdefault(tuple(sorted(row)), []).append(row)
    yield from batches.values()


# ---------------------------------------------------------------------------------------------- reading back


def uploads_of(session: Session, school_id: int, limit: int = 20) -> list[RosterUpload]:
    return list(session.scalars(select(RosterUpload).where(RosterUpload.school_id == school_id)
                                .order_by(RosterUpload.created_at.desc(), RosterUpload.id.desc()).limit(limit)))


def upload_of(session: Session, school_id: int, upload_id: int) -> RosterUpload | None:
    """One upload of this school; another school's is None, as if it did not exist."""
    return session.scalar(select(RosterUpload).where(RosterUpload.id == upload_id,
                                                     RosterUpload.school_id == school_id))


def search_roster(session: Session, school_id: int, query: str = "", page: int = 1,
                  per_page: int = 50) -> tuple[list[RosterEntry], int]:
    """A page of the school's roster, by student number; `query` matches a number prefix or part of a name."""
    where = [RosterEntry.school_id == school_id]
    query = unicodedata.normalize("NFKC", query or "").strip()[:50]
    if query:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(or_(RosterEntry.student_number.like(escaped.upper() + "%", escape="\\"),
                         RosterEntry.real_name.like("%" + escaped + "%", escape="\\")))
    total = session.scalar(select(func.count()).select_from(RosterEntry).where(*where)) or 0
    rows = session.scalars(select(RosterEntry).where(*where).order_by(RosterEntry.student_number)
                           .offset((max(page, 1) - 1) * per_page).limit(per_page))
    return list(rows), total
