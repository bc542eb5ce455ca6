"""The request boundary (web/boundary.py): one commit when a view answers, a rollback when it raises,
a refusal shaped by the view's responder or a 404/409, and every view of the app inside it."""
from __future__ import annotations

from typing import Any

from flask import Flask, abort
from sqlalchemy import select

from database import get_session
from handlers.errors import Refused
from models import School
from web import boundary


def _names(db_session) -> set[str]:  # type: ignore[no-untyped-def]
    db_session.rollback()  # a fresh read: what other connections committed
    return set(db_session.scalars(select(School.name)))


def _route(app: Flask, path: str, view: Any, methods: tuple[str, ...] = ("POST",)) -> None:
    app.add_url_rule(path, view.__name__, boundary.run_in_boundary(view), methods=list(methods))


def _add(name: str) -> None:
    get_session().add(School(name=name))
    get_session().flush()


def test_a_view_that_answers_is_committed_and_one_that_refuses_is_not(app, db_session) -> None:  # type: ignore[no-untyped-def]
    def answers() -> str:
        _add("答复大学")
        return "ok"

    def shown(refused: Refused) -> tuple[str, int]:
        return f"refused: {refused.message}", 422

    @boundary.on_refused(shown)
    def refuses() -> str:
        _add("拒绝大学")
        raise Refused("full", "名额已满")

    def refuses_plainly() -> str:
        _add("无页面大学")
        raise Refused("closed", "已关闭")

    def gone() -> str:
        _add("不存在大学")
        raise Refused("not_found", "不存在")

    def breaks() -> str:
        _add("出错大学")
        raise RuntimeError("a bug")

    def aborts() -> str:
        _add("中止大学")
        abort(400)

    for view in (answers, refuses, refuses_plainly, gone, breaks, aborts):
        _route(app, f"/_t/{view.__name__}", view)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    assert client.post("/_t/answers").get_data(as_text=True) == "ok"
    refused = client.post("/_t/refuses")
    assert (refused.status_code, refused.get_data(as_text=True)) == (422, "refused: 名额已满")
    plain = client.post("/_t/refuses_plainly")
    assert plain.status_code == 409 and "已关闭" in plain.get_data(as_text=True)
    assert client.post("/_t/gone").status_code == 404
    assert client.post("/_t/breaks").status_code == 500
    assert client.post("/_t/aborts").status_code == 400
    assert _names(db_session) == {"答复大学"}


def test_a_responder_whose_page_is_gone_answers_404_not_500(app) -> None:  # type: ignore[no-untyped-def]
    def page_gone(refused: Refused) -> str:
        raise Refused("not_found", "不存在")

    @boundary.on_refused(page_gone)
    def refuses() -> str:
        raise Refused("busy", "稍后再试")

    _route(app, "/_t/refuses", refuses)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    assert app.test_client().post("/_t/refuses").status_code == 404


def test_commit_early_makes_a_write_durable_before_the_view_goes_on(app, db_session) -> None:  # type: ignore[no-untyped-def]
    seen: list[set[str]] = []

    def calls_out() -> str:
        _add("早提交大学")
        boundary.commit_early()
        seen.append(_names(db_session))  # what another connection sees while the view still runs
        raise RuntimeError("the call out failed")

    _route(app, "/_t/calls_out", calls_out)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    assert app.test_client().post("/_t/calls_out").status_code == 500
    assert seen == [{"早提交大学"}] and _names(db_session) == {"早提交大学"}


def test_every_view_of_the_app_runs_inside_the_boundary(app) -> None:  # type: ignore[no-untyped-def]
    wrapper = boundary.run_in_boundary(lambda: None).__code__
    outside = {endpoint for endpoint, view in app.view_functions.items() if view.__code__ is not wrapper}
    expected = {e for e in app.view_functions if e == "static" or e.split(".")[0] in boundary.OWN_BOUNDARY}
    assert outside == expected and len(app.view_functions) - len(outside) > 80

