"""bench/certs still runs: a handful of renders and a small zip (figures are for the note, not asserted)."""
from __future__ import annotations

from bench.certs import run


def test_bench_certs_runs() -> None:
    result = run(pdfs=3, pngs=2, count=6, processes=2)
    assert result["pdf_ms"] > 0 and result["png_ms"] > 0 and result["floor_ms"] > 0
    assert result["bulk"]["count"] == 6 and result["bulk"]["zip_mb"] > 0  # type: ignore[index]
