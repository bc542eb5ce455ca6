"""The certificate's one font: registered once per process, and the check that every printed character has a glyph."""
from __future__ import annotations

import threading

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

# The one font the certificate uses. It must be TrueType outlines (glyf): ReportLab can embed
# and subset those, but not CFF/OTF (Noto CJK), and the CID font STSong-Light is not embedded.
FONT_PATH = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
FONT_NAME = "WQYZenHei"


_font_lock = threading.Lock()
_font: TTFont | None = None


def register_fonts(path: str = FONT_PATH) -> TTFont:
    """Load and register WenQuanYi Zen Hei once per process (~0.1 s); later calls return it at once.

    Call it at start-up (gunicorn preload, worker boot) to keep the first render fast; render_pdf
    calls it too. Safe from many threads: the lock makes exactly one thread parse the font.
    """
    global _font
    font = _font
    if font is not None:
        return font
    with _font_lock:
        if _font is None:
            # subfontIndex=0 is "WenQuanYi Zen Hei" (1 and 2 are the Mono and Sharp faces).
            # shapable=False: CJK needs no shaping, and output must not depend on whether
            # uharfbuzz happens to be installed.
            font = TTFont(FONT_NAME, path, subfontIndex=0, shapable=False)
            pdfmetrics.registerFont(font)
            _font = font
        return _font


class MissingGlyphsError(ValueError):
    """The text has characters the font cannot draw; issuing it would print empty boxes."""

    def __init__(self, chars: str) -> None:
        super().__init__(f"the certificate font has no glyph for: {' '.join(chars)} "
                         f"({', '.join(f'U+{ord(c):04X}' for c in chars)})")
        self.chars = chars


def missing_glyphs(text: str) -> str:
    """The distinct characters of `text` that WenQuanYi Zen Hei lacks (e.g. rare CJK Ext. B names)."""
    cmap = register_fonts().face.charToGlyph
    seen: dict[str, None] = {}
    for ch in text:
        if not ch.isspace() and ord(ch) not in cmap:
            seen[ch] = None
    return "".join(seen)
