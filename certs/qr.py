"""The verify link's QR code: the mask chosen by our own penalty scorer (reportlab's is slow), drawn as vector cells."""
from __future__ import annotations

import re

from reportlab.graphics.barcode import qrencoder
from reportlab.lib.colors import HexColor, white
from reportlab.pdfgen.canvas import Canvas

_PENALTY_RUNS = re.compile(r"0{5,}|1{5,}")
_PENALTY_FINDER = re.compile(r"(?=10111010000|00001011101)")


class _QRCode(qrencoder.QRCode):
    """ReportLab's QR encoder with a fast, standard (ISO 18004) mask choice.

    ReportLab rebuilds the whole symbol for each of the 8 masks and scores it cell by cell in
    Python (~7 ms, more than the rest of the page). Here the symbol is built once; each mask is
    an XOR of per-row bit masks over the data cells, scored with string and bit operations
    (the whole QR code then takes ~2.5 ms, most of it ReportLab's Reed-Solomon encoding).
    """

    def getBestMaskPattern(self) -> int:
        self.makeImpl(True, 0)
        n = self.moduleCount
        cell_masks = _data_cell_masks(self.version, tuple(self.dataPosIterator()))
        rows0 = [int("".join("1" if m else "0" for m in row), 2) for row in self.modules]
        unmasked = [r ^ m for r, m in zip(rows0, cell_masks[0])]
        best, best_score = 0, None
        for p in range(8):
            score = _qr_penalty([r ^ m for r, m in zip(unmasked, cell_masks[p])], n)
            if best_score is None or score < best_score:
                best, best_score = p, score
        return best


_cell_mask_cache: dict[int, list[list[int]]] = {}


def _data_cell_masks(version: int, positions: tuple[tuple[int, int], ...]) -> list[list[int]]:
    """Per mask pattern, per row: the bits of the data cells that the mask inverts (by version)."""
    cached = _cell_mask_cache.get(version)
    if cached is None:
        n = version * 4 + 17
        masks = [qrencoder.QRUtil.getMask(p) for p in range(8)]
        cached = [[0] * n for _ in range(8)]
        for col, row in positions:
            bit = 1 << (n - 1 - col)
            for p in range(8):
                if masks[p](row, col):
                    cached[p][row] |= bit
        _cell_mask_cache[version] = cached  # idempotent, so a race between threads is harmless
    return cached


def _qr_penalty(rows: list[int], n: int) -> int:
    """The ISO 18004 mask penalty (rules N1-N4) of a symbol given as one int per row."""
    lines = [format(r, f"0{n}b") for r in rows]
    cols = ["".join(c) for c in zip(*lines)]
    score = 0
    for line in (*lines, *cols):
        score += sum(len(m) - 2 for m in _PENALTY_RUNS.findall(line))  # N1: runs of 5+
        score += 40 * len(_PENALTY_FINDER.findall(line))  # N3: finder-like patterns
    full = (1 << (n - 1)) - 1
    for a, b in zip(rows, rows[1:]):  # N2: 2x2 blocks of one colour
        dark = a & b & (a >> 1) & (b >> 1) & full
        light = ~(a | b | (a >> 1) | (b >> 1)) & full
        score += 3 * (dark.bit_count() + light.bit_count())
    dark_share = sum(r.bit_count() for r in rows) * 100 / (n * n)
    return score + 10 * int(abs(dark_share - 50) // 5)  # N4: balance of dark and light


def _qr_modules(value: str) -> list[list[bool]]:
    # Byte mode explicitly: ReportLab would otherwise try Kanji mode on some inputs.
    # Level M: at a fixed printed size a lower level means fewer, larger modules, which a phone
    # reads more easily off a screen; M still survives 15 % damage (a fold, a stain).
    qr = _QRCode(None, qrencoder.QRErrorCorrectLevel.M)
    qr.addData(qrencoder.QR8bitByte(value.encode("ascii")))
    qr.make()
    return qr.modules


def draw_qr(canvas: Canvas, value: str, x: float, y: float, size: float) -> None:
    """The QR code as ONE filled path of row runs, on white with a 4-module quiet zone.

    One path, not a rectangle per module: rasterisers anti-alias each fill separately, and the
    faint seams between abutting rectangles are what broke scanning with renderPM.
    """
    modules = _qr_modules(value)
    n = len(modules)
    quiet = 4
    m = size / (n + 2 * quiet)
    canvas.setFillColor(white)
    canvas.rect(x, y, size, size, stroke=0, fill=1)
    path = canvas.beginPath()
    top = y + size - quiet * m
    for r, row in enumerate(modules):
        c = 0
        while c < n:
            if row[c]:
                start = c
                while c < n and row[c]:
                    c += 1
                path.rect(x + (quiet + start) * m, top - (r + 1) * m, (c - start) * m, m)
            else:
                c += 1
    canvas.setFillColor(HexColor("#000000"))
    canvas.drawPath(path, stroke=0, fill=1, fillMode=0)
