"""school console progress counters and exports

Revision ID: 7c09e688eee0
Revises: 6fdd60577706
Create Date: 2026-11-29 14:33:07.818786
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = '7c09e688eee0'
down_revision = '6fdd60577706'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('school_stats',
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=160), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_school_stats_school_id_schools')),
    sa.PrimaryKeyConstraint('school_id', 'course_id', 'name', name=op.f('pk_school_stats'))
    )
    op.create_table('student_exports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=False),
    sa.Column('requested_by', sa.String(length=100), nullable=False),
    sa.Column('file_format', sa.String(length=8), nullable=False),
    sa.Column('filters', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('done_count', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.String(length=200), nullable=True),
    sa.Column('size_bytes', sa.Integer(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['course_id'], ['courses.id'], name=op.f('fk_student_exports_course_id_courses')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_student_exports_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_student_exports'))
    )
    with op.batch_alter_table('student_exports', schema=None) as batch_op:
        batch_op.create_index('ix_student_exports_school_id_id', ['school_id', 'id'], unique=False)

    op.create_table('student_progress',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('profile_id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('topics_done', sa.Integer(), nullable=False),
    sa.Column('topic_scores', sa.JSON(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('total_score', sa.Integer(), nullable=True),
    sa.Column('passed_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_progress_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['course_id'], ['courses.id'], name=op.f('fk_student_progress_course_id_courses')),
    sa.ForeignKeyConstraint(['profile_id'], ['student_profiles.id'], name=op.f('fk_student_progress_profile_id_student_profiles')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_student_progress_school_id_schools')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_student_progress_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_student_progress')),
    sa.UniqueConstraint('user_id', 'course_id', name=op.f('uq_student_progress_user_id_course_id'))
    )
    with op.batch_alter_table('student_progress', schema=None) as batch_op:
        batch_op.create_index('ix_student_progress_school_course_stage_last', ['school_id', 'course_id', 'stage', 'last_progress_at'], unique=False)
        batch_op.create_index('ix_student_progress_school_course_stage_profile', ['school_id', 'course_id', 'stage', 'profile_id'], unique=False)

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index('ix_certificates_user_id', ['user_id'], unique=False)

    with op.batch_alter_table('student_profiles', schema=None) as batch_op:
        batch_op.create_index('ix_student_profiles_school_college_id', ['school_id', 'college', 'id'], unique=False)
        batch_op.create_index('ix_student_profiles_school_grade_id', ['school_id', 'grade', 'id'], unique=False)
        batch_op.create_index('ix_student_profiles_school_id_id', ['school_id', 'id'], unique=False)
        batch_op.create_index('ix_student_profiles_school_status_id', ['school_id', 'status', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index('ix_certificates_user_id')

    with op.batch_alter_table('student_profiles', schema=None) as batch_op:
        batch_op.drop_index('ix_student_profiles_school_status_id')
        batch_op.drop_index('ix_student_profiles_school_id_id')
        batch_op.drop_index('ix_student_profiles_school_grade_id')
        batch_op.drop_index('ix_student_profiles_school_college_id')

    with op.batch_alter_table('student_progress', schema=None) as batch_op:
        batch_op.drop_index('ix_student_progress_school_course_stage_profile')
        batch_op.drop_index('ix_student_progress_school_course_stage_last')

    op.drop_table('student_progress')
    with op.batch_alter_table('student_exports', schema=None) as batch_op:
        batch_op.drop_index('ix_student_exports_school_id_id')

    op.drop_table('student_exports')
    op.drop_table('school_stats')
