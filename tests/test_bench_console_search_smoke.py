"""bench/console_search still runs on a small table (figures are for the note, not asserted)."""
from __future__ import annotations

from bench.console_search import build, timed


def test_bench_console_search_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'search.db'}"
    build(url, 500)
    result = timed(url, ["林", "20240000250", "XW-2026-100"], 2)
    assert set(result) == {"林", "20240000250", "XW-2026-100"} and all(ms > 0 for ms in result.values())
