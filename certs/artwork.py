"""The certificate's artwork: page size, palette, and the static background built and deflated once per process."""
from __future__ import annotations

import math
import threading
import zlib

from reportlab.lib.colors import Color, HexColor
from reportlab.lib.pagesizes import A4, landscape
from reportlab.pdfbase import pdfdoc
from reportlab.pdfgen.canvas import Canvas

PAGE_SIZE = landscape(A4)  # 841.89 x 595.28 pt
PAGE_W, PAGE_H = PAGE_SIZE

# Palette: ivory paper, Chinese vermilion-red, antique gold, warm ink.
PAPER = HexColor("#FBF6EA")
RED = HexColor("#9B1C1C")
GOLD = HexColor("#B48A45")
GOLD_LIGHT = HexColor("#D9C08C")
ROSETTE = HexColor("#EFE2C4")
INK = HexColor("#2B2622")
GREY = HexColor("#6E6357")


# --- the static background ---------------------------------------------------------------------
#
# Paper, frame, 回纹 band and rosette are the same on every certificate: ~100 KB of path operators
# that would cost ~6 ms a page to format and deflate. They are built and deflated once per process
# and placed in every PDF as a Form XObject whose stream is already compressed.

def _n(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _rgb(color: Color, op: str) -> str:
    return f"{_n(color.red)} {_n(color.green)} {_n(color.blue)} {op}"


def _hui_unit(ops: list[str], x: float, y: float, s: float) -> None:
    """One 回纹 (square-spiral key) unit of side s with its lower-left corner at (x, y)."""
    g = s / 6
    pts = [(0, 0), (6, 0), (6, 6), (1, 6), (1, 1), (5, 1), (5, 5), (2, 5), (2, 2), (4, 2), (4, 4), (3, 4)]
    ops.append(f"{_n(x + pts[0][0] * g)} {_n(y + pts[0][1] * g)} m")
    ops.extend(f"{_n(x + px * g)} {_n(y + py * g)} l" for px, py in pts[1:])


def _hui_band(ops: list[str], inset: float, unit: float) -> None:
    """A band of 回纹 units along all four sides, one unit in each corner."""
    x0, y0, x1, y1 = inset, inset, PAGE_W - inset - unit, PAGE_H - inset - unit
    for cx, cy in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)):
        _hui_unit(ops, cx, cy, unit)
    for start, end, fixed, horizontal in (
        (x0 + unit, x1, y0, True), (x0 + unit, x1, y1, True),
        (y0 + unit, y1, x0, False), (y0 + unit, y1, x1, False),
    ):
        span = end - start
        n = max(int(span // (unit * 1.5)), 1)
        step = span / n
        for i in range(n):
            pos = start + i * step + (step - unit) / 2
            _hui_unit(ops, pos, fixed, unit) if horizontal else _hui_unit(ops, fixed, pos, unit)
    ops.append(f"{_rgb(GOLD, 'RG')} 0.7 w 0 j S")


def _rosette(ops: list[str], cx: float, cy: float) -> None:
    """A faint guilloche ring behind the body text, the mark of a security document.

    Phase-shifted copies of one wave around an ellipse weave into a braided band.
    """
    steps, copies, waves = 480, 10, 24
    for k in range(copies):
        phase = 2 * math.pi * k / copies
        for i in range(steps):
            t = 2 * math.pi * i / steps
            r = 152 + 16 * math.sin(waves * t + phase) + 8 * math.sin(2 * waves * t - phase)
            ops.append(f"{_n(cx + 1.62 * r * math.cos(t))} {_n(cy + 0.8 * r * math.sin(t))} {'l' if i else 'm'}")
        ops.append("h")
    ops.append(f"{_rgb(ROSETTE, 'RG')} 0.4 w 1 j S")


def _frame(ops: list[str], inset: float, width: float, color: Color) -> None:
    ops.append(f"{_rgb(color, 'RG')} {_n(width)} w {_n(inset)} {_n(inset)} "
               f"{_n(PAGE_W - 2 * inset)} {_n(PAGE_H - 2 * inset)} re S")


def _background_ops() -> str:
    ops = ["q", f"{_rgb(PAPER, 'rg')} 0 0 {_n(PAGE_W)} {_n(PAGE_H)} re f"]
    _rosette(ops, PAGE_W / 2, 300)
    # Frame, outside in: a strong red rule, a fine red rule, the 回纹 band, fine gold, red.
    _frame(ops, 16, 2.4, RED)
    _frame(ops, 21, 0.6, RED)
    _hui_band(ops, 26, 10)
    _frame(ops, 40, 0.6, GOLD)
    _frame(ops, 43.5, 1.1, RED)
    ops.append("Q")
    return "\n".join(ops)


_BACKGROUND_FORM = "xinweiCertificateBackground"
_static_lock = threading.Lock()
_static_stream: bytes | None = None


def background_stream() -> bytes:
    global _static_stream
    data = _static_stream
    if data is None:
        with _static_lock:
            if _static_stream is None:
                _static_stream = zlib.compress(_background_ops().encode("ascii"), 9)
            data = _static_stream
    return data


def place_background(canvas: Canvas) -> None:
    """Register the pre-deflated background form in this document and draw it."""
    # A PDFStream whose dictionary already names its Filter is written as is (ReportLab applies
    # filters only when none is set). The object is per document: ReportLab tags it with its
    # name in that document, so one instance cannot be shared between documents.
    form = pdfdoc.PDFDictionary({
        "Type": pdfdoc.PDFName("XObject"),
        "Subtype": pdfdoc.PDFName("Form"),
        "FormType": 1,
        "BBox": pdfdoc.PDFArray([0, 0, PAGE_W, PAGE_H]),
        "Resources": pdfdoc.PDFDictionary({}),
        "Filter": pdfdoc.PDFArray([pdfdoc.PDFName("FlateDecode")]),
    })
    canvas._doc.Reference(pdfdoc.PDFStream(form, background_stream()),
                          pdfdoc.xObjectName(_BACKGROUND_FORM))
    canvas.doForm(_BACKGROUND_FORM)


def divider(canvas: Canvas, cx: float, y: float, half: float) -> None:
    """A gold rule with a red diamond in the middle, under the title."""
    canvas.setStrokeColor(GOLD)
    canvas.setLineWidth(0.8)
    canvas.line(cx - half, y, cx - 10, y)
    canvas.line(cx + 10, y, cx + half, y)
    d = canvas.beginPath()
    d.moveTo(cx - 6, y)
    d.lineTo(cx, y + 4)
    d.lineTo(cx + 6, y)
    d.lineTo(cx, y - 4)
    d.close()
    canvas.setFillColor(RED)
    canvas.drawPath(d, stroke=0, fill=1)
    canvas.setFillColor(GOLD)
    for side in (-1, 1):
        canvas.circle(cx + side * (half + 4), y, 1.6, stroke=0, fill=1)
