"""What people read instead of codes: China time, actors, masked personal data, and the template filters for them."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import Flask

from handlers import china_time
from handlers.privacy.masking import mask_number, mask_phone

# Who did something, as the records store it ("student:12", "staff:wang", "wechatpay:notify").
ACTOR_KINDS = {"student": "学生", "staff": "工作人员", "school": "学校管理员", "admin": "平台管理员",
               "job": "系统任务", "system": "系统", "console": "控制台", "wechatpay": "微信支付"}
ACTOR_NAMES = {"wechatpay:notify": "微信支付（支付通知）", "wechatpay:refund": "微信支付（退款通知）",
               "job:query": "系统（查询支付结果）", "job:reconcile": "系统（对账）", "job:close": "系统（关闭订单）",
               "system:repair": "系统（重新签名）"}


# What each audited console action is, as staff read the log.
AUDIT_ACTIONS = {
    "account.create": "创建账号",
    "account.disable": "停用/启用账号",
    "account.password": "修改密码",
    "account.totp_enable": "开启动态码",
    "approvals.approve": "审核通过学生",
    "audit.export": "导出操作日志",
    "auto_reply.create": "新增自动回复",
    "auto_reply.delete": "删除自动回复",
    "auto_reply.import": "导入自动回复",
    "auto_reply.update": "修改自动回复",
    "certificate.correction_approve": "批准证书更正",
    "certificate.correction_reject": "驳回证书更正",
    "certificate.notice": "重发证书通知",
    "certificate.revoke": "撤销证书",
    "content.load": "上传课程内容",
    "inbox.assign": "分配会话",
    "inbox.close": "关闭会话",
    "inbox.notice": "发送留言通知",
    "inbox.read": "查看会话",
    "inbox.reply": "回复学生",
    "inbox.retry": "重发回复",
    "invite.create": "发出邀请",
    "invite.cancel": "取消邀请",
    "job.retry": "重试后台任务",
    "payments.billing_export": "导出结算表",
    "payments.delivered": "标记已送达",
    "payments.flag_refund": "按异常退款",
    "payments.flag_resolved": "处理支付异常",
    "payments.print": "打印纸质证书",
    "payments.refund": "退款",
    "payments.ship": "登记发货",
    "privacy.reveal": "查看完整信息",
    "pushes.bind": "绑定推送微信",
    "pushes.bind_link": "生成绑定链接",
    "pushes.unbind": "解除推送绑定",
    "quick_reply.create": "新增快捷回复",
    "quick_reply.delete": "删除快捷回复",
    "quick_reply.update": "修改快捷回复",
    "roster.upload": "上传花名册",
    "school.create": "新增学校",
    "school.students_export": "导出学生名单",
    "school.students_export_download": "下载学生名单",
    "school.update": "修改学校信息",
}
SUBJECT_TYPES = {
    "console_account": "账号",
    "console_invite": "邀请",
    "certificate": "证书",
    "correction_request": "更正申请",
    "certificate_order": "订单",
    "school": "学校",
    "student_profile": "学生",
    "conversation": "会话",
    "auto_reply": "自动回复",
    "quick_reply": "快捷回复",
    "job": "任务",
    "roster_upload": "花名册",
    "student_export": "学生名单导出",
}
# Field names in before/after records, as staff read them.
FIELDS = {
    "holder_name": "姓名",
    "student_number": "学号",
    "school_name": "学校",
    "school_id": "学校",
    "version": "版本",
    "certificate_id": "证书",
    "status": "状态",
    "role": "角色",
    "display_name": "显示名称",
    "username": "用户名",
    "disabled": "已停用",
    "reason": "原因",
    "channel": "证书类型",
    "carrier": "快递公司",
    "tracking_number": "快递单号",
    "amount": "金额",
    "refund_fen": "退款（分）",
    "keyword": "关键词",
    "reply": "回复内容",
    "name": "名称",
    "address": "地址",
    "phone": "电话",
    "count": "数量",
    "rows": "行数",
    "file_name": "文件名",
}


def audit_action(value: str) -> str:
    return AUDIT_ACTIONS.get(value, value)


def subject(kind: str | None, ident: str | None) -> str:
    if not kind:
        return ""
    return f"{SUBJECT_TYPES.get(kind, kind)}{' #' + str(ident) if ident else ''}"


def changes(before: Any, after: Any) -> list[tuple[str, str, str]]:
    """A before/after pair as the fields that changed: (field, before, after), readable."""
    old = before if isinstance(before, dict) else {}
    new = after if isinstance(after, dict) else {}
    rows = []
    for key in list(dict.fromkeys([*old, *new])):
        if key in old and key in new and old[key] == new[key]:
            continue
        rows.append((FIELDS.get(key, key), _shown(old.get(key)), _shown(new.get(key))))
    if not rows and (before or after) and not (isinstance(before, dict) or isinstance(after, dict)):
        rows.append(("", _shown(before), _shown(after)))
    return rows


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if value is True:
        return "是"
    if value is False:
        return "否"
    if isinstance(value, (list, tuple)):
        return "、".join(_shown(v) for v in value)
    if isinstance(value, dict):
        return "；".join(f"{FIELDS.get(k, k)}：{_shown(v)}" for k, v in value.items())
    return str(value)


def actor(value: str | None) -> str:
    """"student:12" → 学生 #12; "staff:wang" → 工作人员 wang; unknown kinds are shown as they are."""
    if not value:
        return ""
    if value in ACTOR_NAMES:
        return ACTOR_NAMES[value]
    kind, _, who = value.partition(":")
    label = ACTOR_KINDS.get(kind)
    if label is None:
        return value
    if kind == "student" and who.isdigit():
        return f"{label} #{who}"
    return f"{label} {who}".strip()


def china(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return china_time.text(value, fmt)


def long_date(value: date | None) -> str:
    return china_time.long_date(value) if value else ""


def init_app(app: Flask) -> None:
    app.add_template_filter(china, "china")
    app.add_template_filter(actor, "actor")
    app.add_template_filter(long_date, "long_date")
    app.add_template_filter(audit_action, "audit_action")
    # Lists and pages show these masked; the full values only on an audited request (handlers.privacy.masking).
    app.add_template_filter(mask_number, "mask_number")
    app.add_template_filter(mask_phone, "mask_phone")
    app.add_template_global(changes, "changes")
    app.add_template_global(subject, "audit_subject")
