"""bench/roster still runs: a small roster parsed both ways and merged twice (figures not asserted)."""

from __future__ import annotations

from bench.roster import run


def test_bench_roster_runs() -> None:
    result = run(300)
    assert result["rows"] == 300 and result["csv_parse_s"] > 0 and result["xlsx_parse_s"] > 0
    assert result["merge_first_s"] > 0 and result["merge_again_s"] > 0 and result["request_queue_xlsx_s"] > 0
