"""Every console route, found by walking the URL map (so routes added later are covered too): role gates and CSRF."""
from __future__ import annotations

import re

from flask import Flask

from models.console import PLATFORM_ADMIN, SCHOOL_ADMIN, STAFF
from tests.console_helpers import make_platform_admin, make_school, make_school_admin, make_staff, sign_in
from tests.factories import sign_in as student_sign_in

# Routes every visitor may reach (they carry their own checks, tested in test_console_auth.py).
OPEN = {"console.sign_in", "console.sign_out", "console.invite"}


def console_rules(app: Flask) -> list[tuple[str, str, tuple[str, ...], set[str]]]:
    """(endpoint, sample URL, roles, methods) of every gated console route."""
    rules = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/console/") or rule.endpoint in OPEN:
            continue
        view = app.view_functions[rule.endpoint]
        roles = getattr(view, "console_roles", None)
        assert roles is not None, f"{rule.endpoint} ({rule.rule}) is not behind console_required"
        url = re.sub(r"<(?:int:)?([^>]+)>", lambda m: "1" if "int:" in m.group(0) else "x", rule.rule)
        rules.append((rule.endpoint, url, tuple(roles), set(rule.methods or ()) - {"HEAD", "OPTIONS"}))
    return sorted(rules)


def test_the_walk_finds_the_staff_pages(app: Flask) -> None:
    endpoints = {endpoint for endpoint, *_ in console_rules(app)}
    # If these disappear the walk below would pass vacuously.
    assert {"console_certificates.index", "console_certificates.decide", "console_schools.index",
            "console_staff.index", "console_content.preview", "console_audit.export", "console_jobs.retry"} <= endpoints


def test_anonymous_visitors_are_sent_to_sign_in(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    for endpoint, url, _, methods in console_rules(app):
        if "GET" in methods:
            response = client.get(url)
            assert response.status_code == 302, endpoint
            assert response.headers["Location"].startswith("/console/sign-in?next="), endpoint
        for method in methods - {"GET"}:
            assert client.open(url, method=method).status_code == 401, (endpoint, method)


def _expect_forbidden(client, token: str, url: str, methods: set[str], endpoint: str) -> None:  # type: ignore[no-untyped-def]
    for method in methods:
        data = None if method == "GET" else {"csrf_token": token}
        assert client.open(url, method=method, data=data).status_code == 403, (endpoint, method)


def test_a_school_admin_cannot_reach_any_staff_route(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_school_admin(app, make_school(app)))
    checked = 0
    for endpoint, url, roles, methods in console_rules(app):
        if SCHOOL_ADMIN in roles:
            continue
        _expect_forbidden(client, token, url, methods, endpoint)
        checked += 1
    assert checked >= 10


def test_staff_cannot_reach_platform_admin_routes(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    admin_only = [r for r in console_rules(app) if r[2] == (PLATFORM_ADMIN,)]
    assert admin_only, "no platform-admin-only route found"
    for endpoint, url, _, methods in admin_only:
        _expect_forbidden(client, token, url, methods, endpoint)


def test_a_staff_member_reaches_every_staff_page(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, app, make_staff(app))
    for endpoint, url, roles, methods in console_rules(app):
        if STAFF in roles and "GET" in methods and "1" not in url and "/x" not in url:
            response = client.get(url)
            response.get_data()  # a streamed body (the CSV export) runs to the end
            assert response.status_code == 200, endpoint


def test_every_write_refuses_a_missing_csrf_token(app: Flask) -> None:
    """Signed in with a role the route admits, a write without the token is refused (400) before it runs."""
    school = make_school(app)
    clients = {}
    for role, make in ((PLATFORM_ADMIN, make_platform_admin), (STAFF, make_staff),
                       (SCHOOL_ADMIN, lambda app: make_school_admin(app, school))):
        clients[role] = app.test_client()
        sign_in(clients[role], app, make(app))
    writes = 0
    for endpoint, url, roles, methods in console_rules(app):
        client = next(clients[role] for role in (PLATFORM_ADMIN, STAFF, SCHOOL_ADMIN) if role in roles)
        url = url.replace("/schools/1", f"/schools/{school}")
        for method in methods - {"GET"}:
            response = client.open(url, method=method, data={"note": "x", "reason": "x", "confirm": "yes"})
            assert response.status_code == 400, (endpoint, method, response.status_code)
            writes += 1
    assert writes >= 8


def test_students_have_no_console_session(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    """A student's H5 sign-in is a different identity: it opens no console page."""
    with client.session_transaction() as session:
        session["user_id"] = 1  # what web.auth stores for a student
    for endpoint, url, _, methods in console_rules(app):
        if "GET" in methods:
            assert client.get(url).status_code == 302, endpoint


HUGE = ("2147483648", "9223372036854775808", "18446744073709551616", "99999999999999999999999")


def test_out_of_range_ids_are_404_on_every_route_with_an_id(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    """Every `<int:…>` route of the app (H5 and consoles), signed in as a platform admin and as a
    student: an id that cannot exist matches no route; never a 500 (OverflowError on SQLite)."""

    token = sign_in(client, app, make_platform_admin(app))
    student = app.test_client()
    student_sign_in(student, 1, "o_walker")
    routes = [rule for rule in app.url_map.iter_rules() if "<int:" in rule.rule]
    assert len(routes) >= 30
    for rule in routes:
        for huge in HUGE:
            url = re.sub(r"<int:[^>]+>", huge, rule.rule)
            url = re.sub(r"<(?:[a-z]+:)?[^>]+>", "x", url)
            for method in set(rule.methods or ()) - {"HEAD", "OPTIONS"}:
                for who in (client, student):
                    response = who.open(url, method=method, data={"csrf_token": token})
                    assert response.status_code == 404, (rule.rule, url, method, response.status_code)


def test_out_of_range_ids_in_forms_are_refused_not_500(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    school = make_school(app)
    token = sign_in(client, app, make_school_admin(app, school))
    for huge in (*HUGE, "-9223372036854775809", "１２"):
        response = client.post("/console/school/approvals/bulk-approve", data={"csrf_token": token, "profile_id": huge})
        assert response.status_code == 400, huge
