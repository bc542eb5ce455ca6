"""Console accounts (platform admins, staff, school admins), invites, sign-in attempts, the audit log.

Revision ID: 29d9c6c62b42
Revises: 895a43a46e1e
Create Date: 2026-11-29 14:25:28.057981
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = '29d9c6c62b42'
down_revision = '895a43a46e1e'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('console_sign_in_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.Column('at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_console_sign_in_attempts'))
    )
    with op.batch_alter_table('console_sign_in_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_console_sign_in_attempts_ip_at', ['ip', 'at'], unique=False)
        batch_op.create_index('ix_console_sign_in_attempts_username_at', ['username', 'at'], unique=False)

    op.create_table('console_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=True),
    sa.Column('wechat_user_id', sa.Integer(), nullable=True),
    sa.Column('totp_secret', sa.String(length=64), nullable=True),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('session_epoch', sa.Integer(), nullable=False),
    sa.Column('last_sign_in_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_console_accounts_school_id_schools')),
    sa.ForeignKeyConstraint(['wechat_user_id'], ['users.id'], name=op.f('fk_console_accounts_wechat_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_console_accounts')),
    sa.UniqueConstraint('username', name=op.f('uq_console_accounts_username'))
    )
    with op.batch_alter_table('console_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_accounts_school_id'), ['school_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_console_accounts_wechat_user_id'), ['wechat_user_id'], unique=False)

    op.create_table('audit_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('subject_type', sa.String(length=32), nullable=True),
    sa.Column('subject_id', sa.String(length=64), nullable=True),
    sa.Column('school_id', sa.Integer(), nullable=True),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['console_accounts.id'], name=op.f('fk_audit_entries_account_id_console_accounts')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_audit_entries_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entries'))
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_entries_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entries_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entries_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entries_school_id'), ['school_id'], unique=False)
        batch_op.create_index('ix_audit_entries_subject', ['subject_type', 'subject_id'], unique=False)

    op.create_table('console_invites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=True),
    sa.Column('display_name', sa.String(length=64), nullable=False),
    sa.Column('invited_by', sa.Integer(), nullable=True),
    sa.Column('expires_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['console_accounts.id'], name=op.f('fk_console_invites_account_id_console_accounts')),
    sa.ForeignKeyConstraint(['invited_by'], ['console_accounts.id'], name=op.f('fk_console_invites_invited_by_console_accounts')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_console_invites_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_console_invites')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_console_invites_token_hash'))
    )


def downgrade() -> None:
    op.drop_table('console_invites')
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_subject')
        batch_op.drop_index(batch_op.f('ix_audit_entries_school_id'))
        batch_op.drop_index(batch_op.f('ix_audit_entries_at'))
        batch_op.drop_index(batch_op.f('ix_audit_entries_action'))
        batch_op.drop_index(batch_op.f('ix_audit_entries_account_id'))

    op.drop_table('audit_entries')
    with op.batch_alter_table('console_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_accounts_wechat_user_id'))
        batch_op.drop_index(batch_op.f('ix_console_accounts_school_id'))

    op.drop_table('console_accounts')
    with op.batch_alter_table('console_sign_in_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_console_sign_in_attempts_username_at')
        batch_op.drop_index('ix_console_sign_in_attempts_ip_at')

    op.drop_table('console_sign_in_attempts')
