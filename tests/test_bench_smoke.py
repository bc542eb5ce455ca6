"""Smoke test of the webhook bench: the harness still runs end to end and measures real replies (no timing asserts)."""
from __future__ import annotations

import os
import uuid

import pytest

from bench.common import GunicornSettings, wrk_available
from bench.webhook import Options, report, run

pytestmark = pytest.mark.skipif(not wrk_available(), reason="wrk is not installed (scripts/setup.sh dev installs it)")


def test_webhook_bench_runs_and_measures_real_replies() -> None:
    # The suite's PostgreSQL pass sets TEST_DATABASE_URL; the bench then makes its own database there.
    pg_url = os.environ.get("TEST_DATABASE_URL")
    opts = Options(
        duration=1,  # wrk's shortest run
        warmup=0,
        connections=2,
        wrk_threads=1,
        settings=GunicornSettings("sync", 1),
        dbs=["postgresql"] if pg_url else ["sqlite"],
        scenarios=["plain", "safe"],
        requests=5000,  # more than one worker answers in a second: no entry is sent twice
        write_json=False,
        max_seconds=120,
        **({"pg_url": pg_url, "pg_database": f"xinwei_bench_smoke_{uuid.uuid4().hex[:8]}"} if pg_url else {}),
    )
    payload = run(opts, log=lambda _line: None)

    assert payload["errors"] == {}, payload["errors"]
    rows = {row["scenario"]: row for row in payload["rows"]}
    assert set(rows) == {"floor", "plain", "safe"}
    for name, row in rows.items():
        assert row["valid"], (name, row["problems"])
        assert row["requests"] > 0 and row["non200"] == 0 and row["socket_errors"] == 0
        assert isinstance(row["rps"], float) and row["rps"] > 0
        assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"]
    assert rows["floor"]["success"] == rows["floor"]["requests"]
    for mode in ("plain", "safe"):
        row = rows[mode]
        # Real replies from the handler path: reply XML on every answer, one dedup row each.
        assert row["xml"] == row["requests"] and row["resent"] == 0
        assert row["rows_added"] >= row["requests"]
        assert isinstance(row["ratio"], float) and row["verdict"] != "INVALID"
    assert rows["safe"]["sealed"] == rows["safe"]["requests"]
    assert rows["plain"]["sealed"] == 0
    assert "floor" in report(payload)
