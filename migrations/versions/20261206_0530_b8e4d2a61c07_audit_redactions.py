"""The audit log may be redacted, and only so: an entry's before/after/note change only where an
audit_redactions row names it; every other column, and deletion, stay refused.

Revision ID: b8e4d2a61c07
Revises: 204719baadbe
Create Date: 2026-12-06 05:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base

revision = 'b8e4d2a61c07'
down_revision = '204719baadbe'
branch_labels = None
depends_on = None

# Columns a redaction may not touch: who did what to which subject, when.
FIXED = ("at", "account_id", "actor", "action", "subject_type", "subject_id", "school_id")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND EXISTS (SELECT 1 FROM audit_redactions WHERE entry_id = OLD.id)
       AND (%s) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_entries is append-only (%% refused)', TG_OP;
END;
$$
""" % " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in FIXED)

PG_FUNCTION_BEFORE = """
CREATE OR REPLACE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_entries is append-only (% refused)', TG_OP;
END;
$$
"""

SQLITE_TRIGGER = (
    "CREATE TRIGGER audit_entries_append_only BEFORE UPDATE ON audit_entries "
    "WHEN NOT (EXISTS (SELECT 1 FROM audit_redactions WHERE entry_id = OLD.id) AND %s) "
    "BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only (UPDATE refused)'); END"
) % " AND ".join(f"NEW.{c} IS OLD.{c}" for c in FIXED)

SQLITE_TRIGGER_BEFORE = ("CREATE TRIGGER audit_entries_append_only BEFORE UPDATE ON audit_entries "
                         "BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only (UPDATE refused)'); END")


def upgrade() -> None:
    op.create_table('audit_redactions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['audit_entries.id'], name=op.f('fk_audit_redactions_entry_id_audit_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_redactions'))
    )
    with op.batch_alter_table('audit_redactions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_redactions_entry_id'), ['entry_id'], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
    else:
        op.execute("DROP TRIGGER audit_entries_append_only")
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION_BEFORE)
    else:
        op.execute("DROP TRIGGER audit_entries_append_only")
        op.execute(SQLITE_TRIGGER_BEFORE)
    with op.batch_alter_table('audit_redactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_redactions_entry_id'))
    op.drop_table('audit_redactions')
