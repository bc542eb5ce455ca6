"""Rate-limit events shared by every host; a student's sign-out time, which ends older sign-ins;
the courses' display order.

Revision ID: b3f19d7a2c60
Revises: e1a7c0c4b9d2
Create Date: 2026-12-05 21:15:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = 'b3f19d7a2c60'
down_revision = 'e1a7c0c4b9d2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'rate_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('bucket', sa.String(length=32), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('at', models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_rate_events')),
    )
    with op.batch_alter_table('rate_events', schema=None) as batch_op:
        batch_op.create_index('ix_rate_events_bucket_key_at', ['bucket', 'key', 'at'], unique=False)
        batch_op.create_index('ix_rate_events_at', ['at'], unique=False)
    with op.batch_alter_table('course_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('display_order', sa.Integer(), nullable=False, server_default='100'))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signed_out_at', models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('signed_out_at')
    with op.batch_alter_table('course_versions', schema=None) as batch_op:
        batch_op.drop_column('display_order')
    with op.batch_alter_table('rate_events', schema=None) as batch_op:
        batch_op.drop_index('ix_rate_events_at')
        batch_op.drop_index('ix_rate_events_bucket_key_at')
    op.drop_table('rate_events')
