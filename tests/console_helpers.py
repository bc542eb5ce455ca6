"""Console test helpers: accounts of each role (hashed once per run) and signing a test client in."""
from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from flask.testing import FlaskClient

from database import get_database
from handlers.accounts.console import hash_password
from models import ConsoleAccount, School
from models.console import PLATFORM_ADMIN, SCHOOL_ADMIN, STAFF

PASSWORD = "correct horse battery"


@lru_cache(maxsize=1)
def _password_hash() -> str:
    # argon2 costs ~50 ms a hash: one per run, not one per account.
    return hash_password(PASSWORD)


def make_account(app: Flask, role: str, *, username: str | None = None, school_id: int | None = None,
                 display_name: str | None = None) -> int:
    """A console account's id (its password is PASSWORD)."""
    with get_database(app).sessions() as session:
        account = ConsoleAccount(username=username or f"{role.replace('_', '')}{_next()}", role=role,
                                 display_name=display_name or f"测试{role}", password_hash=_password_hash(),
                                 school_id=school_id)
        session.add(account)
        session.commit()
        return account.id


_counter = [0]


def _next() -> int:
    _counter[0] += 1
    return _counter[0]


def make_school(app: Flask, name: str | None = None, address: str | None = "测试地址 1 号") -> int:
    with get_database(app).sessions() as session:
        school = School(name=name or f"测试大学{_next()}", address=address)
        session.add(school)
        session.commit()
        return school.id


def make_platform_admin(app: Flask) -> int:
    return make_account(app, PLATFORM_ADMIN)


def make_staff(app: Flask) -> int:
    return make_account(app, STAFF)


def make_school_admin(app: Flask, school_id: int) -> int:
    return make_account(app, SCHOOL_ADMIN, school_id=school_id)


def sign_in(client: FlaskClient, app: Flask, account_id: int) -> str:
    """Sign `client` in as this account through the real sign-in form; returns its CSRF token."""
    with get_database(app).sessions() as session:
        username = session.get(ConsoleAccount, account_id).username
    page = client.get("/console/sign-in")
    response = client.post("/console/sign-in", data={"username": username, "password": PASSWORD,
                                                       "csrf_token": csrf_of(page.get_data(as_text=True))})
    assert response.status_code == 302, response.get_data(as_text=True)
    return csrf(client)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', html) or re.search(
        r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def csrf(client: FlaskClient) -> str:
    """The signed-in client's current CSRF token (read from the session cookie)."""
    with client.session_transaction() as session:
        return str(session["csrf"])


def search(client: FlaskClient, path: str, term: str, **fields: str) -> str:
    """A console search as its page makes it: the box posts the term, and the list answers a GET
    whose URL carries a handle, never the term (web/console/searches.py). Returns that list."""
    response = client.post(path, data={"csrf_token": csrf(client), "q": term, **fields})
    assert response.status_code == 302, response.status_code
    location = response.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert "q" not in query and term not in sum(query.values(), []), location
    return client.get(location).get_data(as_text=True)
