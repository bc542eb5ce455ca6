"""The audit log refuses changes in the database itself: rows are inserted, never updated or deleted.

Revision ID: 5a37a0f3c4b5
Revises: 7c09e688eee0
Create Date: 2026-11-29 15:35:00
"""
from __future__ import annotations

from alembic import op

revision = '5a37a0f3c4b5'
down_revision = '7c09e688eee0'
branch_labels = None
depends_on = None

# PostgreSQL (production): UPDATE and DELETE raise, whoever asks: a console bug, a script or a
# hand-typed statement cannot rewrite history. TRUNCATE stays possible for the owner (tests empty
# every table between cases). SQLite (the embedded default): UPDATE raises; DELETE stays, because
# SQLite has no TRUNCATE and the test suite empties tables with DELETE.
PG_FUNCTION = """
CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_entries is append-only (% refused)', TG_OP;
END;
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute("CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries "
                   "FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()")
    else:
        op.execute("CREATE TRIGGER audit_entries_append_only BEFORE UPDATE ON audit_entries "
                   "BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only (UPDATE refused)'); END")


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_entries_append_only" +
               (" ON audit_entries" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_entries_append_only()")
