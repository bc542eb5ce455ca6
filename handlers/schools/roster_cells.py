"""One roster row's cells: spreadsheet artefacts undone (formulas, 1.2E+10, hidden characters), each field checked."""
from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from handlers.accounts.identity import NAME, PHONE, STUDENT_NUMBER

OPTIONAL_LIMITS = {"college": 100, "grade": 20}

FORMULA_START = ("=", "+", "-", "@")
# Characters that Excel and WPS leave behind and nobody means: zero-width spaces, BOMs, soft hyphens.
INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SCIENTIFIC = re.compile(r"^(\d+)(?:\.(\d+))?E\+?(\d+)$", re.IGNORECASE)
EXCEL_TEXT = re.compile(r'^="(.*)"$')

# The columns a roster has, as a school admin reads them.
LABELS = {"student_number": "学号", "real_name": "姓名", "college": "学院", "grade": "年级", "phone": "手机"}


def shown_value(raw: Any) -> str:
    """What a report shows for a rejected row's cell: as in the file, shortened, and defused."""
    text = CONTROL.sub("", _cell_text(raw, [])).strip()[:40]
    return "'" + text if text.startswith(FORMULA_START) else text


def is_blank(value: Any) -> bool:
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


def check_row(values: dict[str, Any]) -> tuple[dict[str, str | None], list[str], list[str]]:
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
