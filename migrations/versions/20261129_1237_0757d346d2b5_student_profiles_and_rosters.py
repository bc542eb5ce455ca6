"""Students: profiles (what certificates print) and school rosters.

Revision ID: 0757d346d2b5
Revises: c9d0f0f49ff8
Create Date: 2026-11-29 12:37:49.291130
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = '0757d346d2b5'
down_revision = 'c9d0f0f49ff8'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('roster_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('student_number', sa.String(length=32), nullable=False),
    sa.Column('real_name', sa.String(length=50), nullable=False),
    sa.Column('college', sa.String(length=100), nullable=True),
    sa.Column('grade', sa.String(length=20), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_roster_entries_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_roster_entries')),
    sa.UniqueConstraint('school_id', 'student_number', name=op.f('uq_roster_entries_school_id_student_number'))
    )
    op.create_table('student_profiles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('real_name', sa.String(length=50), nullable=False),
    sa.Column('college', sa.String(length=100), nullable=False),
    sa.Column('student_number', sa.String(length=32), nullable=False),
    sa.Column('grade', sa.String(length=20), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('confirmed_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('verified_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('verified_via', sa.String(length=16), nullable=True),
    sa.Column('reviewed_by', sa.String(length=100), nullable=True),
    sa.Column('reject_reason', sa.Text(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_student_profiles_school_id_schools')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_student_profiles_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_student_profiles')),
    sa.UniqueConstraint('user_id', name=op.f('uq_student_profiles_user_id'))
    )
    with op.batch_alter_table('student_profiles', schema=None) as batch_op:
        batch_op.create_index('ix_student_profiles_school_id_status', ['school_id', 'status'], unique=False)
        batch_op.create_index('uq_student_profiles_school_number_held', ['school_id', 'student_number'], unique=True, postgresql_where=sa.text("status IN ('pending', 'verified')"), sqlite_where=sa.text("status IN ('pending', 'verified')"))


def downgrade() -> None:
    with op.batch_alter_table('student_profiles', schema=None) as batch_op:
        batch_op.drop_index('uq_student_profiles_school_number_held', postgresql_where=sa.text("status IN ('pending', 'verified')"), sqlite_where=sa.text("status IN ('pending', 'verified')"))
        batch_op.drop_index('ix_student_profiles_school_id_status')

    op.drop_table('student_profiles')
    op.drop_table('roster_entries')
