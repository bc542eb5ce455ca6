"""Schools get billing fields; certificates get indexes for the staff search (name, student number).

Revision ID: 59f4a5f7e82f
Revises: a9ccacfe8196
Create Date: 2026-11-29 14:32:12.107124
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '59f4a5f7e82f'
down_revision = 'a9ccacfe8196'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index('ix_certificates_holder_name', ['holder_name'], unique=False,
                              postgresql_ops={'holder_name': 'varchar_pattern_ops'})
        batch_op.create_index('ix_certificates_student_number', ['student_number'], unique=False)

    with op.batch_alter_table('schools', schema=None) as batch_op:
        batch_op.add_column(sa.Column('billing_name', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('billing_tax_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('billing_contact', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('pays_electronic', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('schools', schema=None) as batch_op:
        batch_op.drop_column('pays_electronic')
        batch_op.drop_column('billing_contact')
        batch_op.drop_column('billing_tax_id')
        batch_op.drop_column('billing_name')

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index('ix_certificates_student_number')
        batch_op.drop_index('ix_certificates_holder_name')
