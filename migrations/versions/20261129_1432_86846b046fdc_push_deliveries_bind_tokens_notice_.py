"""Progress pushes: delivery records, one-time bind tokens, notice watermarks; indexes on the timestamps digests read.

Revision ID: 86846b046fdc
Revises: b847ecf9a019
Create Date: 2026-11-29 14:32:33.128539
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = '86846b046fdc'
down_revision = 'b847ecf9a019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('push_watermarks',
    sa.Column('school_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('notices_until', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_push_watermarks_school_id_schools')),
    sa.PrimaryKeyConstraint('school_id', name=op.f('pk_push_watermarks'))
    )
    op.create_table('push_bind_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('used_by_user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['console_accounts.id'], name=op.f('fk_push_bind_tokens_account_id_console_accounts')),
    sa.ForeignKeyConstraint(['used_by_user_id'], ['users.id'], name=op.f('fk_push_bind_tokens_used_by_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_push_bind_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_push_bind_tokens_token_hash'))
    )
    with op.batch_alter_table('push_bind_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_push_bind_tokens_account_id'), ['account_id'], unique=False)

    op.create_table('push_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('template_id', sa.String(length=64), nullable=False),
    sa.Column('client_msg_id', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('errcode', sa.Integer(), nullable=True),
    sa.Column('errmsg', sa.Text(), nullable=True),
    sa.Column('msgid', sa.String(length=32), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['console_accounts.id'], name=op.f('fk_push_deliveries_account_id_console_accounts')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_push_deliveries_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_push_deliveries')),
    sa.UniqueConstraint('client_msg_id', name=op.f('uq_push_deliveries_client_msg_id'))
    )
    with op.batch_alter_table('push_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_push_deliveries_msgid'), ['msgid'], unique=False)
        batch_op.create_index('ix_push_deliveries_school_id_id', ['school_id', 'id'], unique=False)

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index('ix_certificates_issued_at', ['issued_at'], unique=False)

    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.create_index('ix_enrollments_passed_at', ['passed_at'], unique=False)

    with op.batch_alter_table('quiz_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_quiz_attempts_submitted_at', ['submitted_at'], unique=False)

    with op.batch_alter_table('student_profiles', schema=None) as batch_op:
        batch_op.create_index('ix_student_profiles_school_id_confirmed_at', ['school_id', 'confirmed_at'], unique=False)
        batch_op.create_index('ix_student_profiles_school_id_verified_at', ['school_id', 'verified_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('student_profiles', schema=None) as batch_op:
        batch_op.drop_index('ix_student_profiles_school_id_verified_at')
        batch_op.drop_index('ix_student_profiles_school_id_confirmed_at')

    with op.batch_alter_table('quiz_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_quiz_attempts_submitted_at')

    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_index('ix_enrollments_passed_at')

    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index('ix_certificates_issued_at')

    with op.batch_alter_table('push_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_push_deliveries_school_id_id')
        batch_op.drop_index(batch_op.f('ix_push_deliveries_msgid'))

    op.drop_table('push_deliveries')
    with op.batch_alter_table('push_bind_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_push_bind_tokens_account_id'))

    op.drop_table('push_bind_tokens')
    op.drop_table('push_watermarks')
