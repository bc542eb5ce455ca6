"""Smoke test of the webhook bench: the harness still runs end to end and measures real replies (no timing asserts)."""
from __future__ import annotations

import pytest

from bench.common import smoke_run
from bench.webhook import Options, report, run
from bench.wrk import wrk_available

pytestmark = pytest.mark.skipif(not wrk_available(), reason="wrk is not installed (scripts/setup.sh dev installs it)")


def test_webhook_bench_runs_and_measures_real_replies() -> None:
    payload, rows = smoke_run(
        Options, run, pg_database="xinwei_bench_smoke", expect={"plain", "safe"},
        scenarios=["plain", "safe"],
        requests=5000,  # more than one worker answers in a second: no entry is sent twice
    )
    for mode in ("plain", "safe"):
        row = rows[mode]
        # Real replies from the handler path: reply XML on every answer, one dedup row each.
        assert row["xml"] == row["requests"] and row["resent"] == 0
        assert row["rows_added"] >= row["requests"]
        assert isinstance(row["ratio"], float) and row["verdict"] != "INVALID"
    assert rows["safe"]["sealed"] == rows["safe"]["requests"]
    assert rows["plain"]["sealed"] == 0
    assert "floor" in report(payload)
