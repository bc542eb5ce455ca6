"""The privacy registry covers the whole schema: a table or a column that holds a student's data and
is not declared fails here, so the copy and the deletion can never miss it."""
from __future__ import annotations

import re

from handlers.privacy.registry import BY_TABLE, DECLARATIONS, Kind, OnErase, Subject
from models import Base

# Column names that mean a person, wherever they turn up.
PERSONAL = re.compile(r"openid|unionid|phone|real_name|holder_name|student_number|recipient|address|^content$")
# ...and the ones that look so but are not, with why.
NOT_A_PERSON = {
    "schools.address": "the school's postal address, where paper certificates go",
    "jobs.payload": "declared CONTENT: a finished job's payload may name a user, and retention deletes it",
}


def test_every_table_is_declared_once() -> None:
    tables = set(Base.metadata.tables)
    declared = [d.table for d in DECLARATIONS]
    assert len(declared) == len(set(declared)), "a table declared twice"
    assert tables - set(declared) == set(), "tables with no privacy declaration (handlers/privacy/registry.py)"
    assert set(declared) - tables == set(), "declarations of tables that no longer exist"


def test_every_column_of_a_students_or_schools_table_has_a_kind() -> None:
    for declaration in DECLARATIONS:
        if declaration.subject not in (Subject.STUDENT, Subject.SCHOOL):
            continue
        columns = set(Base.metadata.tables[declaration.table].columns.keys())
        assert set(declaration.columns) == columns, (
            f"{declaration.table}: columns without a kind {columns - set(declaration.columns)}, "
            f"kinds of no column {set(declaration.columns) - columns}")


def test_a_students_table_says_how_to_find_the_rows_and_what_deletion_does() -> None:
    for declaration in DECLARATIONS:
        if declaration.subject != Subject.STUDENT:
            assert declaration.find is None, declaration.table
            continue
        assert declaration.find is not None, declaration.table
        kinds = set(declaration.columns.values())
        # Rows kept as they are may hold only links and records: nothing that names or quotes anyone.
        if declaration.on_erase == OnErase.KEEP:
            assert kinds <= {Kind.LINK, Kind.RECORD}, declaration.table


def test_no_personal_looking_column_hides_in_a_table_declared_as_nobodys() -> None:
    for declaration in DECLARATIONS:
        if declaration.subject in (Subject.STUDENT, Subject.SCHOOL):
            continue
        for column in Base.metadata.tables[declaration.table].columns.keys():
            allowed = declaration.subject == Subject.STAFF or f"{declaration.table}.{column}" in NOT_A_PERSON
            assert allowed or not PERSONAL.search(column), f"{declaration.table}.{column} looks personal"


def test_every_declaration_says_why() -> None:
    assert all(d.why.strip() for d in DECLARATIONS)
    assert BY_TABLE["student_profiles"].on_erase == OnErase.DELETE
