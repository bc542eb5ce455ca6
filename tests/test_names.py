"""The text rules for a person's name wherever one is stored: no control, bidi or zero-width characters."""
from __future__ import annotations

import pytest

from database import get_database
from handlers.accounts.console import create_invite
from handlers.audit import SYSTEM
from handlers.errors import Refused
from models.base import utcnow
from models.console import STAFF
from tests.factories import claim_as

HOSTILE = ["林\x00小满", "林\u202e满小", "林\u200b小满", "林\ufeff小满", "a\x1bb"]


@pytest.mark.parametrize("name", HOSTILE)
def test_an_invite_refuses_a_display_name_with_invisible_characters(app, name) -> None:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        with pytest.raises(Refused) as err:
            create_invite(session, SYSTEM, role=STAFF, display_name=name, school_id=None, now=utcnow())
        assert "控制字符" in err.value.message


def test_an_ordinary_name_is_cleaned_and_kept(app) -> None:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        invite, _ = create_invite(
            session, SYSTEM, role=STAFF, display_name="  王　老师  ", school_id=None, now=utcnow()
        )
        assert invite.display_name == "王 老师"


@pytest.mark.parametrize("name", [*HOSTILE, "<script>alert(1)</script>", "x" * 40])
def test_a_correction_refuses_what_the_profile_would(app, graduates, name) -> None:  # type: ignore[no-untyped-def]
    from handlers.certificates.corrections import request_correction

    first = claim_as(app, graduates[0])
    with get_database(app).sessions() as session:
        with pytest.raises(Refused):
            request_correction(session, graduates[0], first.id, {"holder_name": name}, "姓名写错了")
