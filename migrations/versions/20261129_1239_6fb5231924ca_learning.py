"""Learning: enrollments, watch sessions with verified progress, quiz attempts.

Revision ID: 6fb5231924ca
Revises: 0757d346d2b5
Create Date: 2026-11-29 12:39:04.701960
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = '6fb5231924ca'
down_revision = '0757d346d2b5'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('enrollments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('passed_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('total_score', sa.Integer(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['course_id'], ['courses.id'], name=op.f('fk_enrollments_course_id_courses')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_enrollments_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollments')),
    sa.UniqueConstraint('user_id', 'course_id', name=op.f('uq_enrollments_user_id_course_id'))
    )
    op.create_table('quiz_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('topic_code', sa.String(length=32), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('draw', sa.JSON(), nullable=False),
    sa.Column('started_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('answers', sa.JSON(), nullable=True),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('max_score', sa.Integer(), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=True),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_quiz_attempts_enrollment_id_enrollments')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_quiz_attempts_user_id_users')),
    sa.ForeignKeyConstraint(['version_id'], ['course_versions.id'], name=op.f('fk_quiz_attempts_version_id_course_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quiz_attempts'))
    )
    with op.batch_alter_table('quiz_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_quiz_attempts_enrollment_round_topic', ['enrollment_id', 'round', 'topic_code'], unique=False)

    op.create_table('watch_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('topic_code', sa.String(length=32), nullable=False),
    sa.Column('video_seconds', sa.Integer(), nullable=False),
    sa.Column('started_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('last_seq', sa.Integer(), nullable=False),
    sa.Column('last_beat_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('position', sa.Double(), nullable=False),
    sa.Column('watched_seconds', sa.Double(), nullable=False),
    sa.Column('completed_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_watch_sessions_enrollment_id_enrollments')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_watch_sessions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_watch_sessions'))
    )
    with op.batch_alter_table('watch_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_watch_sessions_enrollment_round_topic', ['enrollment_id', 'round', 'topic_code'], unique=False)
        batch_op.create_index('ix_watch_sessions_user_id_active', ['user_id', 'active'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('watch_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_watch_sessions_user_id_active')
        batch_op.drop_index('ix_watch_sessions_enrollment_round_topic')

    op.drop_table('watch_sessions')
    with op.batch_alter_table('quiz_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_quiz_attempts_enrollment_round_topic')

    op.drop_table('quiz_attempts')
    op.drop_table('enrollments')
