"""Users: unionid and subscribe scene synced from WeChat after each subscribe.

Revision ID: c940bb956b27
Revises: 05043e116f9e
Create Date: 2026-11-29 12:01:20.471757
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = 'c940bb956b27'
down_revision = '05043e116f9e'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unionid', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('subscribe_scene', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('synced_at', models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('synced_at')
        batch_op.drop_column('subscribe_scene')
        batch_op.drop_column('unionid')
