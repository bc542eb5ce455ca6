"""Certificates: the paper copy waits for payment; the channel can change until then.

Revision ID: d2c6e2930992
Revises: dadb269d58b8
Create Date: 2026-11-29 13:39:38.066340
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = 'd2c6e2930992'
down_revision = 'dadb269d58b8'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paper_status', sa.String(length=24), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_column('paper_status')
