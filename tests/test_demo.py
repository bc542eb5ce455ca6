"""Demo data: idempotent, and enough to take a demo student from profile to the first topic."""
from __future__ import annotations

from sqlalchemy import func, select

from database import get_database
from handlers.demo import DEMO_ACCOUNTS, DEMO_ROSTER, DEMO_SCHOOLS
from models import RosterEntry, School


def test_demo_load_is_idempotent(app, runner) -> None:  # type: ignore[no-untyped-def]
    first = runner.invoke(args=["demo", "load"])
    assert (
        first.exit_code == 0
        and f"({len(DEMO_SCHOOLS) + len(DEMO_ROSTER) + len(DEMO_ACCOUNTS)} new rows)" in first.output
    )
    assert "(0 new rows)" in runner.invoke(args=["demo", "load"]).output
    with get_database(app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(School)) == len(DEMO_SCHOOLS)
        assert session.scalar(select(func.count()).select_from(RosterEntry)) == len(DEMO_ROSTER)
