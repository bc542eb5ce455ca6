"""Inbox conversations (one per student), staff replies, quick replies (seeded from the guide's FAQ) and keyword auto-replies.

Revision ID: 6fdd60577706
Revises: 59f4a5f7e82f
Create Date: 2026-11-29 14:32:49.565688
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = '6fdd60577706'
down_revision = '59f4a5f7e82f'
branch_labels = None
depends_on = None

# The platform guide's FAQ as canned answers (a frozen copy: staff edit them in the console).
QUICK_REPLIES = [
    ("证书在哪里看", "查看电子版证书：打开公众号首页，点右下角「我的」→「显示证书」即可查看，长按图片可保存到相册。"),
    ("纸质证书邮寄", "纸质证书 20 元，邮寄费用自理，证书寄到你所在的学校。支付后请添加证书微信（13387080248，手机同号）"
                 "确认邮寄，工作人员会通过你注册的手机号电话通知你，请保持手机畅通。"),
    ("学校统一付费", "如果学校统一付费，你只需要完成视频学习和考试，即可获得电子版证书，无需自己支付。"),
    ("不满 85 分", "总分满 85 分（总分 100）才算通过。不满 85 分需要将 14 个专题重新学习并测试一遍。"),
    ("信息填错/更改证书", "证书信息填错或需要更改证书类型，请回复你的姓名、学校、学号和需要修改的内容，工作人员核实后为你更正。"),
    ("视频卡顿", "视频播放需要的流量较大，建议在网速较快的网络环境下学习；中途退出后，下次会从上次看到的位置继续。"),
]


def upgrade() -> None:
    op.create_table('auto_reply_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('keywords', sa.JSON(), nullable=False),
    sa.Column('match_mode', sa.String(length=8), nullable=False),
    sa.Column('reply', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_reply_rules'))
    )
    op.create_table('quick_replies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=60), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quick_replies'))
    )
    op.create_table('conversations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('last_student_message_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('replies_in_window', sa.Integer(), nullable=False),
    sa.Column('last_message_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_preview', sa.String(length=120), nullable=False),
    sa.Column('unread', sa.Integer(), nullable=False),
    sa.Column('waiting_since', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('assigned_to', sa.Integer(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['assigned_to'], ['console_accounts.id'], name=op.f('fk_conversations_assigned_to_console_accounts')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_conversations_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversations')),
    sa.UniqueConstraint('user_id', name=op.f('uq_conversations_user_id'))
    )
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.create_index('ix_conversations_assigned_to', ['assigned_to'], unique=False)
        batch_op.create_index('ix_conversations_last_message_at', ['last_message_at'], unique=False)

    op.create_table('staff_replies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('conversation_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('errcode', sa.Integer(), nullable=True),
    sa.Column('error', sa.String(length=300), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=True),
    sa.Column('sent_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['console_accounts.id'], name=op.f('fk_staff_replies_account_id_console_accounts')),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_staff_replies_conversation_id_conversations')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_staff_replies_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_replies'))
    )
    with op.batch_alter_table('staff_replies', schema=None) as batch_op:
        batch_op.create_index('ix_staff_replies_conversation_id', ['conversation_id'], unique=False)

    # Students who wrote before conversations existed get one, waiting since their first message.
    op.execute(
        "INSERT INTO conversations (user_id, status, last_student_message_at, replies_in_window, last_message_at,"
        " last_preview, unread, waiting_since, created_at)"
        " SELECT user_id, 'open', MAX(created_at), 0, MAX(created_at), '', COUNT(*), MIN(created_at), MIN(created_at)"
        " FROM inbox_messages WHERE direction = 'in' GROUP BY user_id"
    )
    quick = sa.table("quick_replies", sa.column("title", sa.String), sa.column("body", sa.Text),
                     sa.column("position", sa.Integer))
    op.bulk_insert(quick, [{"title": title, "body": body, "position": i} for i, (title, body) in enumerate(QUICK_REPLIES)])


def downgrade() -> None:
    with op.batch_alter_table('staff_replies', schema=None) as batch_op:
        batch_op.drop_index('ix_staff_replies_conversation_id')

    op.drop_table('staff_replies')
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_index('ix_conversations_last_message_at')
        batch_op.drop_index('ix_conversations_assigned_to')

    op.drop_table('conversations')
    op.drop_table('quick_replies')
    op.drop_table('auto_reply_rules')
