"""Staff's keyword auto-replies page: the rules the webhook answers common questions with."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, abort, flash, redirect, request, url_for

from database import get_session
from handlers.audit import record_audit
from handlers.errors import Refused
from handlers.inbox import auto_replies
from web.boundary import on_refused
from web.clock import now
from web.console import STAFF_ROLES, console_required, current_actor, id_value, register_nav, render_console

bp = Blueprint("console_auto_replies", __name__, url_prefix="/console/auto-replies", template_folder="../templates")

register_nav("自动回复", "console_auto_replies.rules", STAFF_ROLES, 21)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _form() -> auto_replies.RuleForm:
    return auto_replies.RuleForm(keywords=request.form.get("keywords", "")[:2000],
                                 match_mode=request.form.get("match_mode", ""),
                                 reply=request.form.get("reply", "")[:5000],
                                 enabled=request.form.get("enabled") == "on",
                                 priority=request.form.get("priority", "0")[:10])


def _rules_page(error: str | None = None) -> Response:
    """The rules; after a refused change, the reason and the form as it was typed."""
    return render_console("console/inbox/auto_replies.html", 400 if error else 200,
                          rules=auto_replies.list_rules(get_session()), modes=auto_replies.MATCH_MODES, error=error,
                          form=request.form if error else None, cache_seconds=int(auto_replies.CACHE_SECONDS))


def _rules_refused(refused: Refused, **_: Any) -> Response:
    return _rules_page(refused.message)


@bp.route("", methods=["GET", "POST"])
@console_required(*STAFF_ROLES)
@on_refused(_rules_refused)
def rules() -> Response:
    if request.method != "POST":
        return _rules_page()
    session = get_session()
    action = request.form.get("action", "save")
    rule_id = id_value(request.form.get("id", ""))
    if action == "import":
        added = auto_replies.import_suggested(session, now=now())
        record_audit(session, current_actor(), "auto_reply.import", "auto_reply_rule", None, after={"added": added})
        done = f"已导入 {added} 条常见问题规则"
    elif action == "delete":
        if rule_id is None:
            abort(400)
        before = auto_replies.delete_rule(session, rule_id)
        record_audit(session, current_actor(), "auto_reply.delete", "auto_reply_rule", rule_id, before=before)
        done = "规则已删除"
    elif action == "save":
        values = auto_replies.parse_form(_form())
        if rule_id is None:
            rule = auto_replies.create_rule(session, values, now=now())
            record_audit(session, current_actor(), "auto_reply.create", "auto_reply_rule", rule.id, after=values)
        else:
            rule, before = auto_replies.update_rule(session, rule_id, values, now=now())
            record_audit(session, current_actor(), "auto_reply.update", "auto_reply_rule", rule.id, before=before,
                         after=values)
        done = "规则已保存"
    else:
        abort(400)
    flash(done)
    return redirect(url_for("console_auto_replies.rules"))
