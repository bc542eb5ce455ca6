"""Jobs: which worker holds a job.

Revision ID: bd72c8837909
Revises: c940bb956b27
Create Date: 2026-11-29 12:03:10.426600
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = 'bd72c8837909'
down_revision = 'c940bb956b27'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('claimed_by')
