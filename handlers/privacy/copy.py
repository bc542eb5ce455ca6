"""A student's downloadable copy: a zip of their data as JSON, as a readable page, and their certificates."""
from __future__ import annotations

import html
import io
import json
import zipfile
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from blobstore import BlobError, BlobStore
from handlers.china_time import china
from handlers.privacy.export import collect
from handlers.privacy.registry import BY_TABLE, Student
from models import Certificate, CertificateFile, User

# What each part of the copy is, in the student's words.
TABLE_LABELS = {
    "users": "微信账号（关注公众号的记录）",
    "student_profiles": "身份信息（用于核验身份和印在证书上）",
    "enrollments": "参加的课程",
    "watch_sessions": "视频观看记录",
    "quiz_attempts": "测试作答与成绩",
    "student_progress": "学习进度（学校看到的汇总）",
    "certificates": "证书",
    "certificate_files": "证书文件",
    "certificate_events": "证书的变更记录",
    "correction_requests": "证书更正申请",
    "certificate_orders": "纸质证书订单",
    "order_events": "订单的变更记录",
    "payment_flags": "需要人工核对的支付记录",
    "conversations": "与工作人员的对话",
    "inbox_messages": "你发给公众号的消息",
    "staff_replies": "工作人员的回复",
    "inbound_events": "公众号收到的你的操作（点击菜单等）",
    "push_bind_tokens": "接收学校推送的绑定",
    "push_deliveries": "发给你的模板消息",
    "consents": "你的同意记录",
    "data_requests": "你的数据副本与注销申请",
    "roster_entries": "学校名单中与你对应的一行（由学校提供）",
}
COLUMN_LABELS = {
    "openid": "微信标识", "real_name": "姓名", "college": "学院", "student_number": "学号", "grade": "年级",
    "phone": "手机号", "status": "状态", "created_at": "创建时间", "holder_name": "证书姓名", "serial": "证书编号",
    "score": "成绩", "total_score": "总分", "issued_on": "颁发日期", "content": "内容", "topic_code": "专题",
    "watched_seconds": "已观看秒数", "position": "播放位置（秒）", "submitted_at": "提交时间", "passed": "是否通过",
    "recipient_name": "收件人", "recipient_phone": "收件人电话", "mail_address": "邮寄地址", "total_fen": "金额（分）",
    "paid_at": "支付时间", "purpose": "同意事项", "granted": "是否同意", "at": "时间", "kind": "类型",
}


def _page(copy: dict[str, list[dict[str, Any]]], generated: str) -> str:
    """The copy as one self-contained page a phone opens (no scripts, no outside links)."""
    parts = [
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>我的数据 · 毫末高校心理委员工作平台</title>",
        "<style>body{font-family:sans-serif;margin:16px;line-height:1.5;color:#222}h2{margin-top:28px;"
        "font-size:18px}table{border-collapse:collapse;width:100%;margin:8px 0 16px;font-size:13px}"
        "td,th{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top;word-break:break-all}"
        "th{background:#f6f6f6;width:35%}.muted{color:#888}</style></head><body>",
        "<h1>我的数据</h1>",
        "<p class='muted'>毫末高校心理委员工作平台保存的关于你的全部信息，"
        f"生成于 {html.escape(generated)}（北京时间）。"
        "同样的内容以机器可读的形式保存在 data.json 中，证书文件在 certificates 文件夹中。</p>",
    ]
    for table, rows in copy.items():
        label = TABLE_LABELS.get(table, table)
        parts.append(f"<h2>{html.escape(label)}</h2>")
        if not rows:
            parts.append("<p class='muted'>没有记录。</p>")
            continue
        for row in rows:
            parts.append("<table>")
            for column, value in row.items():
                shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                name = COLUMN_LABELS.get(column, column)
                parts.append(f"<tr><th>{html.escape(name)}</th><td>{html.escape(shown)}</td></tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def build_copy(session: Session, user: User, blobs: BlobStore, now: datetime) -> bytes:
    """The zip: data.json, index.html and certificates/*.pdf."""
    copy = collect(session, Student(user.id, user.openid))
    generated = china(now).isoformat(timespec="seconds")
    document = {
        "generated_at": generated,
        "about": "毫末高校心理委员工作平台保存的关于你的全部个人信息",
        "tables": {table: {"what": TABLE_LABELS.get(table, table), "why": BY_TABLE[table].why, "rows": rows}
                   for table, rows in copy.items()},
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.json", json.dumps(document, ensure_ascii=False, indent=2))
        archive.writestr("index.html", _page(copy, generated))
        files = session.execute(select(Certificate.serial, Certificate.version, CertificateFile.blob_key)
                                .join(CertificateFile, CertificateFile.certificate_id == Certificate.id)
                                .where(Certificate.user_id == user.id, CertificateFile.kind == "pdf")
                                .order_by(Certificate.id))
        for serial, version, key in files:
            try:
                archive.writestr(f"certificates/{serial}-v{version}.pdf", blobs.get(key))
            except BlobError:
                # A file being re-rendered: the copy says so rather than failing the whole request.
                archive.writestr(f"certificates/{serial}-v{version}.txt", "证书文件暂不可用，请稍后重新生成副本。")
    return out.getvalue()
