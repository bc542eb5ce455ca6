"""Watch sessions keep the threshold they are held to.

Revision ID: a53be065e0d9
Revises: 6fb5231924ca
Create Date: 2026-11-29 12:41:29.115824
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = 'a53be065e0d9'
down_revision = '6fb5231924ca'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('watch_sessions', schema=None) as batch_op:
        # Sessions opened before this column existed were held to the usual 90 %.
        batch_op.add_column(sa.Column('threshold', sa.Double(), nullable=False, server_default='0.9'))


def downgrade() -> None:
    with op.batch_alter_table('watch_sessions', schema=None) as batch_op:
        batch_op.drop_column('threshold')
