"""bench/pay_notify still runs: real notifications paid once each, duplicates answered (figures are for the note)."""
from __future__ import annotations

from bench.pay_notify import run


def test_pay_notify_bench_runs() -> None:
    result = run(orders=20, concurrent_orders=2)
    assert result["non_204"] == 0 and result["paid_transitions"] == result["expected_paid"] == 22
    assert result["first"]["p50_ms"] > 0 and result["floor"]["p50_ms"] > 0
