"""Smoke test of the heartbeat bench: it still runs end to end and its beats are accepted and recorded (no timing asserts)."""
from __future__ import annotations

import os
import uuid

import pytest

from bench.common import GunicornSettings, wrk_available
from bench.heartbeat import Options, report, run

pytestmark = pytest.mark.skipif(not wrk_available(), reason="wrk is not installed (scripts/setup.sh dev installs it)")


def test_heartbeat_bench_runs_and_its_beats_are_accepted() -> None:
    # The suite's PostgreSQL pass sets TEST_DATABASE_URL; the bench then makes its own database there.
    pg_url = os.environ.get("TEST_DATABASE_URL")
    opts = Options(
        duration=1,  # wrk's shortest run
        warmup=0,
        connections=2,
        wrk_threads=1,
        settings=GunicornSettings("sync", 1),
        dbs=["postgresql"] if pg_url else ["sqlite"],
        students=20,
        requests=4000,  # more than one worker answers in a second: no beat is sent twice
        write_json=False,
        max_seconds=120,
        **({"pg_url": pg_url, "pg_database": f"xinwei_bench_hb_smoke_{uuid.uuid4().hex[:8]}"} if pg_url else {}),
    )
    payload = run(opts, log=lambda _line: None)

    assert payload["errors"] == {}, payload["errors"]
    rows = {row["scenario"]: row for row in payload["rows"]}
    assert set(rows) == {"floor", "heartbeat"}
    for name, row in rows.items():
        assert row["valid"], (name, row["problems"])
        assert row["requests"] > 0 and row["non200"] == 0 and row["socket_errors"] == 0
        assert isinstance(row["rps"], float) and row["rps"] > 0
        assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"]
    assert rows["floor"]["success"] == rows["floor"]["requests"]
    beat = rows["heartbeat"]
    # Real heartbeats through login, CSRF and the watching rules: accepted in the answers, and
    # recorded in the database (each student's last_seq and watched seconds moved).
    assert beat["resent"] == 0 and beat["acceptance"] >= 0.9
    assert beat["accepted"] + beat["refused"] == beat["requests"]
    assert beat["db_beats_recorded"] >= beat["requests"]
    assert beat["db_beats_progressed"] >= beat["accepted"]
    assert isinstance(beat["ratio"], float) and beat["verdict"] != "INVALID"
    assert "heartbeat" in report(payload)
