"""bench/video still runs: a short lecture through the whole ladder (figures are for the note, not asserted)."""
from __future__ import annotations

from bench.video import run


def test_bench_video_runs() -> None:
    result = run(seconds=12, width=960, height=540)
    assert result["x_real_time"] > 0 and [r["name"] for r in result["rungs"]] == ["360p", "540p"]  # type: ignore[index]
