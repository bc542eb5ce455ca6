"""Certificates as data in, bytes out: the printed fields, serials, signatures, PDF and PNG rendering."""
from __future__ import annotations

import importlib
from typing import Any

from certs.model import (
    KINDS,
    PAYLOAD_FORMAT,
    CertificateData,
    canonical_payload,
    format_serial,
    generate_signing_key,
    key_id,
    new_verify_token,
    parse_serial,
    public_key,
    sign,
    signature_key_id,
    verify,
)

# The renderer pulls in ReportLab, pdfium and Pillow (~30 MB, ~0.2 s): loaded on first use, so
# code that only signs or parses serials (handlers, the verify page) stays light.
_RENDER_NAMES = {"MissingGlyphsError": "fonts", "missing_glyphs": "fonts", "register_fonts": "fonts",
                 "render_pdf": "render", "render_png": "png", "warm_up": "png"}


def __getattr__(name: str) -> Any:
    if name in _RENDER_NAMES:
        return getattr(importlib.import_module(f"certs.{_RENDER_NAMES[name]}"), name)
    raise AttributeError(f"module 'certs' has no attribute {name!r}")


__all__ = [
    "KINDS",
    "PAYLOAD_FORMAT",
    "CertificateData",
    "canonical_payload",
    "format_serial",
    "generate_signing_key",
    "key_id",
    "new_verify_token",
    "parse_serial",
    "public_key",
    "sign",
    "signature_key_id",
    "verify",
    *_RENDER_NAMES,
]
