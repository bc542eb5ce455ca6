"""The watch clock: credit earned by server time, the course's playback cap and test review policy.

Revision ID: e1a7c0c4b9d2
Revises: c732b82f7837
Create Date: 2026-12-05 20:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = 'e1a7c0c4b9d2'
down_revision = 'c732b82f7837'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('watch_sessions', schema=None) as batch_op:
        # Sessions open at the upgrade start with no credit: they earn it from their next beat on.
        batch_op.add_column(sa.Column('max_rate', sa.Double(), nullable=False, server_default='2.0'))
        batch_op.add_column(sa.Column('credit', sa.Double(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('paused', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('course_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_playback_rate', sa.Double(), nullable=False, server_default='2.0'))
        batch_op.add_column(sa.Column('review_on_fail', sa.String(length=32), nullable=False,
                                      server_default='wrong_questions'))
        batch_op.add_column(sa.Column('review_answers', sa.String(length=32), nullable=False,
                                      server_default='after_pass'))
    with op.batch_alter_table('topics', schema=None) as batch_op:
        batch_op.add_column(sa.Column('test_questions', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('topics', schema=None) as batch_op:
        batch_op.drop_column('test_questions')
    with op.batch_alter_table('course_versions', schema=None) as batch_op:
        batch_op.drop_column('review_answers')
        batch_op.drop_column('review_on_fail')
        batch_op.drop_column('max_playback_rate')
    with op.batch_alter_table('watch_sessions', schema=None) as batch_op:
        batch_op.drop_column('paused')
        batch_op.drop_column('credit')
        batch_op.drop_column('max_rate')
