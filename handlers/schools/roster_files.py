"""Reading a roster file (CSV or XLSX): finding the header, cleaning each cell, and a report per row."""
from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from handlers.errors import Refused
from handlers.schools.roster_cells import CONTROL, INVISIBLE, check_row, is_blank, shown_value

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 60_000
# An .xlsx is a zip: refuse one that would inflate past this (a zip bomb), before openpyxl reads it.
MAX_XLSX_INFLATED = 200 * 1024 * 1024
# Rows searched for the header (files exported from 教务 systems often start with a title line).
HEADER_SEARCH_ROWS = 10
# Problem rows stored in an upload's report; the counts are always complete.
REPORT_PROBLEMS_KEPT = 2000
MAX_COLUMNS = 60

FIELDS = ("student_number", "real_name", "college", "grade", "phone")

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
CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

NOT_A_TABLE = "无法识别的文件：请上传 CSV（逗号、制表符或分号分隔）或 Excel .xlsx 文件"

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
        if all(is_blank(value) for value in values):
            parsed.blank += 1
            continue
        parsed.rows += 1
        if progress is not None and parsed.rows % PROGRESS_EVERY == 0:
            progress(parsed.rows)
        if parsed.rows > MAX_ROWS:
            raise Refused("too_many_rows", f"名单超过 {MAX_ROWS} 行，请拆分成几个文件分别上传")
        entry, notes, reasons = check_row(dict(zip(FIELDS, values)))
        number_text = entry["student_number"] or ""
        if not reasons and number_text in seen:
            reasons.append(f"与第 {seen[number_text]} 行学号重复")
        if reasons:
            parsed.rejected += 1
            # As the file has it, so the admin finds the row.
            parsed.problems.append(RowReport(number, "rejected", shown_value(values[0]), shown_value(values[1]),
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
