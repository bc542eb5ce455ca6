"""bench/dashboard still runs: a tiny national data set on PostgreSQL, every page answered (figures not asserted)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text

from bench.dashboard import run, verdicts
from bench.settings import DEFAULT_PG_URL

BASE = os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG_URL


def _postgres() -> bool:
    try:
        with create_engine(BASE).connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means: no server here
        return False


pytestmark = pytest.mark.skipif(not _postgres(), reason="bench/dashboard needs PostgreSQL")


def test_bench_dashboard_runs() -> None:
    out = run(students=3000, schools=12, big=600, small=20, repeats=2, warmup=1, base_url=BASE,
              database="xinwei_bench_dashboard_smoke")
    big, small = out["results"]["big"], out["results"]["small"]
    assert big["students"] == 600 and 15 <= small["students"] <= 25
    assert all(big[page]["median_ms"] > 0 and small[page]["median_ms"] > 0 for page in ("dashboard", "table_first",
                                                                                          "table_deep"))
    assert "Index" in out["plans_big_school"]["all"]
    assert len(verdicts(out["results"])) == 6
