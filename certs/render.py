"""The certificate page: CertificateData in, PDF bytes out (ReportLab), text set and wrapped for print."""
from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import io
import re
import time
from collections.abc import Iterator

from reportlab.lib.colors import Color
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas

from certs.artwork import GOLD, GOLD_LIGHT, GREY, INK, PAGE_SIZE, PAGE_W, RED, divider, place_background
from certs.fonts import FONT_NAME, MissingGlyphsError, missing_glyphs, register_fonts
from certs.model import CertificateData
from certs.qr import draw_qr

__all__ = ["render_pdf"]

TITLE = "心理委员培训合格证书"
SUBTITLE = "CERTIFICATE OF TRAINING · STUDENT PEER MENTAL HEALTH OFFICER"
QR_CAPTION = "扫码验证证书真伪"


# --- text helpers -------------------------------------------------------------------------------

def _width(text: str, size: float, char_space: float = 0.0) -> float:
    # Tc adds space after every glyph; the one after the last glyph is not visible.
    return pdfmetrics.stringWidth(text, FONT_NAME, size) + char_space * max(len(text) - 1, 0)


def _draw(canvas: Canvas, text: str, x: float, y: float, size: float, *, color: Color,
          align: str = "left", char_space: float = 0.0, bold: bool = False,
          max_width: float | None = None, min_size: float | None = None) -> float:
    """Draw one line of literal text (no markup is parsed), shrinking it to `max_width` if needed.

    Returns the font size used. Below `min_size` the glyphs are condensed horizontally instead,
    so even an extreme name stays inside the frame.
    """
    width = _width(text, size, char_space)
    h_scale = 100.0
    if max_width is not None and width > max_width:
        factor = max_width / width
        if min_size is not None and size * factor < min_size:
            char_space *= min_size / size
            size = min_size
            width = _width(text, size, char_space)
            h_scale = 100.0 * max_width / width
            width = max_width
        else:
            size *= factor
            char_space *= factor
            width = max_width
    if align == "center":
        x -= width / 2
    elif align == "right":
        x -= width
    # Text state (Tr, Tc, Tz) outlives BT/ET in PDF; q/Q keeps one line's settings from leaking
    # into the next (a stroked title would otherwise make all later text look bold).
    canvas.saveState()
    t = canvas.beginText(x, y)
    t.setFont(FONT_NAME, size)
    t.setCharSpace(char_space)
    t.setHorizScale(h_scale)
    t.setFillColor(color)
    if bold:
        # The font has no bold face: fill + a thin stroke of the same colour thickens it.
        t.setStrokeColor(color)
        canvas.setLineWidth(size * 0.03)
        t.setTextRenderMode(2)
    else:
        t.setTextRenderMode(0)
    t.textOut(text)
    canvas.drawText(t)
    canvas.restoreState()
    return size


# Latin words and numbers stay whole, and so does a number with its unit ("92 分"); every CJK
# character is a break opportunity.
_TOKEN_RE = re.compile(r"[0-9]+ [分版]|[A-Za-z0-9À-ɏ'’.\-_/:@+#&]+|\s+|.", re.S)
# Kinsoku: never start a line with closing punctuation, never end one with an opening mark.
_NO_LINE_START = set("，。、；：？！）」』》〉】”’…%,.;:?!)")
_NO_LINE_END = set("（「『《〈【“‘(")


def _wrap(text: str, size: float, max_width: float, indent: float) -> list[str]:
    """Break Chinese text into lines no wider than max_width (the first line is indented)."""
    tokens: list[str] = []
    for token in _TOKEN_RE.findall(text):
        # A word too wide for any line (a long Latin name) is broken between its letters.
        tokens.extend(token if _width(token, size) > max_width - indent else (token,))
    lines: list[str] = []
    line: list[str] = []  # tokens, so a carried-over unit stays whole
    limit = max_width - indent
    for token in tokens:
        if token.isspace() and not line:
            continue
        if not line or _width("".join(line + [token]).rstrip(), size) <= limit:
            line.append(token)
            continue
        carry: list[str] = []
        if (token[0] in _NO_LINE_START or line[-1][-1] in _NO_LINE_END) and len(line) > 1:
            # Carry the last token over so the punctuation rule holds.
            carry = [line.pop()]
        lines.append("".join(line).rstrip())
        line = [t for t in carry + [token] if not t.isspace()]
        limit = max_width
    if "".join(line).strip():
        lines.append("".join(line).rstrip())
    return lines


# --- the page -----------------------------------------------------------------------------------

def _date_zh(data: CertificateData) -> str:
    d = data.issued_on
    return f"{d.year}年{d.month}月{d.day}日"


def _printed_text(data: CertificateData) -> Iterator[str]:
    yield from (data.holder_name, data.school, data.student_number, data.course_title,
                data.serial, data.verify_url, *data.issuers)


def _pin_timestamp(canvas: Canvas, issued_on: dt.date) -> None:
    """Date the PDF (CreationDate/ModDate) at the issue date, and nothing else.

    invariant=1 alone dates every PDF 2000-01-01, and ReportLab lets SOURCE_DATE_EPOCH in the
    environment override it, which would change the bytes (dates and document ID) of an
    otherwise identical render. Both the stamp and the ID seed are pinned to the issue date.
    """
    doc = canvas._doc
    t = calendar.timegm(issued_on.timetuple())
    stamp = doc._timeStamp
    stamp.t, stamp.lt = t, time.gmtime(t)
    stamp.YMDhms = tuple(stamp.lt)[:6]
    stamp.dhh = stamp.dmm = 0
    stamp.tzname = "UTC"
    doc.signature = hashlib.md5(b"a reportlab document", usedforsecurity=False)
    doc.signature.update(ascii(t).encode("ascii"))


def render_pdf(data: CertificateData) -> bytes:
    """The certificate as a one-page A4 landscape PDF with the font subset embedded.

    Deterministic: identical data gives identical bytes (ReportLab's invariant mode fixes the
    dates and the document ID). Raises MissingGlyphsError if the font cannot print a field.
    """
    register_fonts()
    missing = missing_glyphs("".join(_printed_text(data)))
    if missing:
        raise MissingGlyphsError(missing)

    buf = io.BytesIO()
    c = Canvas(buf, pagesize=PAGE_SIZE, invariant=1, pageCompression=1, pdfVersion=(1, 4))
    _pin_timestamp(c, data.issued_on)
    c.setTitle(f"{TITLE} {data.serial}")
    c.setAuthor(data.issuers[0])
    c.setSubject(f"{data.course_title} · {data.holder_name}")
    c.setCreator("xinwei certs")
    c.setProducer("xinwei certs (ReportLab)")

    place_background(c)
    cx = PAGE_W / 2

    # Title block.
    _draw(c, TITLE, cx, 474, 38, color=RED, align="center", char_space=9, bold=True)
    _draw(c, SUBTITLE, cx, 450, 8.5, color=GOLD, align="center", char_space=1.6)
    divider(c, cx, 433, 150)

    # Body: who, where, what.
    body_left, body_width = 150, PAGE_W - 300
    _draw(c, "兹证明", body_left, 392, 17, color=INK)
    name_size = _draw(c, data.holder_name, cx, 342, 32, color=INK, align="center", char_space=3,
                      bold=True, max_width=body_width, min_size=14)
    rule = min(max(_width(data.holder_name, name_size, 3 * name_size / 32) / 2 + 40, 150),
               body_width / 2)
    c.setStrokeColor(GOLD)
    c.setLineWidth(0.8)
    c.line(cx - rule, 330, cx + rule, 330)
    _draw(c, f"{data.school}　学号 {data.student_number}", cx, 300, 16, color=INK,
          align="center", max_width=body_width, min_size=10)

    sentence = (f"完成「{data.course_title}」全部专题的学习与测试，总成绩 {data.score} 分，"
                "经考核合格，特发此证。")
    size, leading = 16.0, 28.0
    while True:
        lines = _wrap(sentence, size, body_width, indent=2 * size)
        if len(lines) * leading <= 86 or size <= 11:
            break
        size -= 0.5
        leading = size * 1.75
    y = 260
    for i, line in enumerate(lines):
        indent = 2 * size if i == 0 else 0
        space = 0.0
        if i < len(lines) - 1 and len(line) > 1:
            # Justify every line but the last, as Chinese typesetting does.
            space = min((body_width - indent - _width(line, size)) / (len(line) - 1), size * 0.3)
        _draw(c, line, body_left + indent, y, size, color=INK, char_space=space,
              max_width=body_width - indent, min_size=size)
        y -= leading

    # Bottom left: the QR code to the verify page, also a link for tapping in a PDF viewer.
    qr_x, qr_y, qr_size = 74, 74, 108
    c.setStrokeColor(GOLD_LIGHT)
    c.setLineWidth(0.6)
    c.rect(qr_x - 3, qr_y - 3, qr_size + 6, qr_size + 6, stroke=1, fill=0)
    draw_qr(c, data.verify_url, qr_x, qr_y, qr_size)
    c.linkURL(data.verify_url, (qr_x, qr_y, qr_x + qr_size, qr_y + qr_size), relative=0)
    _draw(c, QR_CAPTION, qr_x + qr_size / 2, qr_y - 16, 9, color=GREY, align="center",
          char_space=1)

    # Bottom middle: the serial and the verify address for people who cannot scan.
    info_x = qr_x + qr_size + 26
    serial = f"证书编号　{data.serial}"
    if data.version > 1:
        serial += f"（第 {data.version} 版）"
    _draw(c, serial, info_x, 110, 11, color=INK, max_width=260, min_size=8)
    _draw(c, f"验证网址　{data.verify_url}", info_x, 92, 7.5, color=GREY, max_width=300, min_size=5)

    # Bottom right: the issuers and the date, centred on one column like a signature block.
    col_x, col_w = 628, 270
    issuer_size = min(14.0, *(col_w / _width(line, 1) for line in data.issuers))
    y = 86 + 22 * len(data.issuers)
    for line in data.issuers:
        _draw(c, line, col_x, y, issuer_size, color=INK, align="center")
        y -= 22
    _draw(c, _date_zh(data), col_x, 86, 13, color=INK, align="center", char_space=1)

    c.showPage()
    c.save()
    return buf.getvalue()
