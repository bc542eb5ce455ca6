"""bench/video still runs: a short lecture through the ladder and the throttled player (figures are for the note)."""
from __future__ import annotations

import pytest

from bench.video import run


@pytest.mark.realtime  # a transcode and two throttled plays, on the bench's own SQLite: once per suite
def test_bench_video_runs(browser) -> None:  # type: ignore[no-untyped-def]
    result = run(seconds=12, width=960, height=540, window=3, networks=(("1.5M", 1500),), browser=browser)
    assert result["x_real_time"] > 0 and [r["name"] for r in result["rungs"]] == ["360p", "540p"]  # type: ignore[index]
    rows = result["delivery"]
    assert [(r["network"], r["path"]) for r in rows] == [("1.5M", "ladder"), ("1.5M", "single file")]  # type: ignore[index]
    assert all(r["first_frame_s"] > 0 and r["position_s"] > 0 for r in rows)  # type: ignore[index]
