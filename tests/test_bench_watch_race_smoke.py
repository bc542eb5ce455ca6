"""bench.watch_race on one topic: the script finishes the real demo topic, never under the clock's floor."""
from __future__ import annotations

from bench import watch_race


def test_the_race_over_one_demo_topic_respects_the_floor(capsys) -> None:  # type: ignore[no-untyped-def]
    assert watch_race.main(["--topics", "1"]) == 0
    out = capsys.readouterr().out
    assert "t01" in out and "FAIL" not in out
