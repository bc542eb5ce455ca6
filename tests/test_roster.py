"""Rosters: parsing edge cases (encodings, delimiters, Excel numbers, formulas, limits), merging, auto-verification,
the upload job (queued → running → done/failed, progress, re-runs) and the roster console pages (tenant isolation,
roles, CSRF, harmless rendering)."""
from __future__ import annotations

import codecs
import io

import openpyxl
import pytest
from sqlalchemy import select

from database import get_database
from handlers.accounts.identity import ProfileForm, submit_profile
from handlers.audit import Actor
from handlers.errors import Refused
from handlers.schools import roster, roster_files
from models import AuditEntry, Job, RosterEntry, RosterFile, RosterUpload, School, StudentProfile, User
from models.base import utcnow
from tests.console_helpers import make_school, make_school_admin, make_staff, search, sign_in
from tests.factories import run_upload_jobs
from web.blobs import get_blob_store

HEADER = "姓名,学号,学院,年级,手机\n"


def parse(text: str, encoding: str = "utf-8") -> roster_files.ParsedRoster:
    return roster_files.parse_roster(text.encode(encoding))


def problems(parsed: roster_files.ParsedRoster) -> dict[int, tuple[str, str]]:
    return {p.row: (p.status, "；".join(p.notes)) for p in parsed.problems}


def xlsx(rows: list[list[object]], title: str = "名单") -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ------------------------------------------------------------------------------------------ parsing


def test_gbk_csv_from_excel_is_read() -> None:
    parsed = parse(HEADER + "张三,2024001,心理学院,2024级,13800138000\r\n李四,2024002,教育学院,2024级,\r\n", "gbk")
    assert parsed.encoding == "GBK/GB18030" and parsed.delimiter == ","
    assert (parsed.rows, parsed.accepted, parsed.fixed, parsed.rejected) == (2, 2, 0, 0)
    assert parsed.entries[0] == {"student_number": "2024001", "real_name": "张三", "college": "心理学院",
                                 "grade": "2024级", "phone": "13800138000"}


def test_utf8_with_bom_and_without_and_utf16_are_read() -> None:
    body = HEADER + "张三,2024001,心理学院,2024级,\n"
    with_bom = roster_files.parse_roster(codecs.BOM_UTF8 + body.encode("utf-8"))
    assert with_bom.encoding == "UTF-8（带 BOM）" and with_bom.columns["real_name"] == "姓名"
    assert parse(body).encoding == "UTF-8"
    utf16 = roster_files.parse_roster(body.replace(",", "\t").encode("utf-16"))
    assert utf16.encoding == "UTF-16" and utf16.delimiter == "\t" and utf16.entries[0]["real_name"] == "张三"


@pytest.mark.parametrize("delimiter", [",", "\t", ";"])
def test_delimiters_are_sniffed(delimiter: str) -> None:
    text = "姓名;学号;学院\n张三;2024001;心理学院,应用心理系\n".replace(";", delimiter) if delimiter != "," else \
        '姓名,学号,学院\n张三,2024001,"心理学院,应用心理系"\n'
    parsed = parse(text)
    assert parsed.delimiter == delimiter
    assert parsed.entries[0]["college"] == "心理学院,应用心理系"


def test_english_headers_a_title_row_and_column_order() -> None:
    parsed = parse("2024 级心理委员名单\n\nStudent ID,Grade,Name ,College,Mobile\n2024001,2024,Zhang San,Psychology,\n")
    assert parsed.header_row == 3
    assert parsed.entries == [{"student_number": "2024001", "real_name": "Zhang San", "college": "Psychology",
                               "grade": "2024", "phone": None}]


def test_rows_are_fixed_and_reported() -> None:
    parsed = parse(HEADER + " 张三 ,２０２４００１,心理学院,2024级,+86 138-0013-8000\n"
                            "阿依古丽•买买提,s2024-02,文学院,2024级,12345\n"
                            "李四,\u200b2024003,教育学院,2024级,\n")
    assert (parsed.accepted, parsed.fixed, parsed.rejected) == (0, 3, 0)
    found = problems(parsed)
    assert "全角字符已转为半角" in found[2][1] and "去掉了空格、横线或 +86" in found[2][1]
    assert parsed.entries[0]["phone"] == "13800138000" and parsed.entries[0]["student_number"] == "2024001"
    assert parsed.entries[1]["real_name"] == "阿依古丽·买买提" and parsed.entries[1]["student_number"] == "S2024-02"
    assert "手机：格式不对" in found[3][1] and parsed.entries[1]["phone"] is None
    assert "不可见字符" in found[4][1] and parsed.entries[2]["student_number"] == "2024003"


def test_rejected_rows_say_why_with_row_numbers() -> None:
    parsed = parse(HEADER + "张三,2024001,,,\n"
                            ",2024002,,,\n"          # empty name
                            "王五,,,,\n"              # empty ID
                            "赵六,2024#4,,,\n"        # bad characters
                            "钱七," + "9" * 40 + ",,,\n"
                            "孙八,2024001,,,\n"       # duplicate of row 2
                            "周九,2024009," + "院" * 120 + ",,\n"
                            ",,,,\n"                  # blank: skipped, not rejected
                            "吴十,2024010,,,\n")
    found = problems(parsed)
    assert (parsed.rows, parsed.accepted, parsed.rejected, parsed.blank) == (8, 2, 6, 1)
    assert found[3] == ("rejected", "姓名为空")
    assert found[4] == ("rejected", "学号为空")
    assert "只能包含字母、数字和 -" in found[5][1]
    assert "学号太长" in found[6][1]
    assert found[7] == ("rejected", "与第 2 行学号重复")
    assert "学院太长" in found[8][1]
    assert [e["student_number"] for e in parsed.entries] == ["2024001", "2024010"]


def test_formulas_are_text_never_evaluated_and_never_stored_as_formulas() -> None:
    parsed = parse(HEADER + '"=HYPERLINK(""http://evil.example"",""点我"")",2024001,,,\n'
                            "张三,2024002,=1+2,@SUM(A1),\n"
                            "李四,=\"0012345\",-学院,+2024,\n"
                            "王五,=A1,,,\n")
    found = problems(parsed)
    assert found[2][0] == "rejected" and "疑似公式" in found[2][1]
    # The report shows it defused (a leading quote), should anyone copy it into Excel.
    assert [p.real_name for p in parsed.problems if p.row == 2] == ['\'=HYPERLINK("http://evil.example","点我")']
    assert found[3][0] == "fixed" and "不执行公式" in found[3][1]
    assert parsed.entries[0]["college"] == "1+2" and parsed.entries[0]["grade"] == "SUM(A1)"
    assert parsed.entries[1]["student_number"] == "0012345" and parsed.entries[1]["college"] == "学院"
    assert found[5][0] == "rejected"
    for entry in parsed.entries:
        for value in entry.values():
            assert value is None or not value.startswith(("=", "+", "-", "@"))


def test_excel_scientific_notation_is_restored_only_when_no_digit_was_lost() -> None:
    parsed = parse(HEADER + "张三,2.024001E+06,,,\n李四,2.02401E+11,,,\n王五,2024003.0,,,\n")
    found = problems(parsed)
    assert parsed.entries[0]["student_number"] == "2024001" and "科学计数法已还原" in found[2][1]
    assert found[3][0] == "rejected" and "后几位已丢失" in found[3][1]
    assert parsed.entries[1]["student_number"] == "2024003"


def test_xlsx_numbers_formulas_and_the_header_anywhere_in_the_first_rows() -> None:
    data = xlsx([["2024 级名单"], ["序号", "学号", "姓名", "学院", "年级", "手机号码"],
                 [1, 2024001.0, "张三", "心理学院", 2024, 13800138000],
                 [2, "2024002", "李四", "=CONCAT(\"教\",\"育\")", "2024级", None],
                 [3, None, "王五", None, None, None],
                 [4, 2024001, "赵六", None, None, None]])
    parsed = roster_files.parse_roster(data)
    assert parsed.kind == "xlsx" and parsed.sheet == "名单" and parsed.header_row == 2
    assert parsed.entries[0] == {"student_number": "2024001", "real_name": "张三", "college": "心理学院",
                                 "grade": "2024", "phone": "13800138000"}
    assert parsed.entries[1]["college"] == 'CONCAT("教","育")'  # the formula's text, defused, never its result
    found = problems(parsed)
    assert "数字格式的单元格已转为文本" in found[3][1]
    assert found[5] == ("rejected", "学号为空") and found[6][1].startswith("与第 3 行学号重复")


@pytest.mark.parametrize("data, code", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "binary"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512, "xls"),
    (b"PK\x03\x04 this is not really a zip", "bad_xlsx"),
    (b"   \n\n", "empty"),
    ("学号,姓名\n".encode("gbk")[:3] + b"\xff\xfe\xfd" * 10, "encoding"),
    ("编号,名字X\n1,张三\n".encode(), "no_header"),
    (b'\xe5\xa7\x93\xe5\x90\x8d,\xe5\xad\xa6\xe5\x8f\xb7\n"unterminated' + b"x" * 200_000, "bad_csv"),
])
def test_unreadable_files_are_refused_clearly(data: bytes, code: str) -> None:
    with pytest.raises(Refused) as refused:
        roster_files.parse_roster(data)
    assert refused.value.code == code and refused.value.message


def test_size_and_row_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Refused) as too_large:
        roster_files.parse_roster(b"x" * (roster_files.MAX_BYTES + 1))
    assert too_large.value.code == "too_large" and "10 MB" in too_large.value.message
    monkeypatch.setattr(roster_files, "MAX_ROWS", 100)
    rows = "".join(f"学生{chr(0x4e00 + i)},{2024000 + i},,,\n" for i in range(101))
    with pytest.raises(Refused) as too_many:
        parse(HEADER + rows)
    assert too_many.value.code == "too_many_rows"
    assert parse(HEADER + rows.split("\n", 1)[1]).rows == 100


def test_the_real_limit_holds_sixty_thousand_rows() -> None:
    rows = "".join(f"学生{chr(0x4e00 + i % 20000)}{chr(0x4e00 + i // 20000)},{3000000 + i},心理学院,2024级,\n"
                   for i in range(roster_files.MAX_ROWS + 1))
    with pytest.raises(Refused) as too_many:
        parse(HEADER + rows)
    assert "60000" in too_many.value.message


def test_the_demo_roster_file_is_gbk_and_clean() -> None:
    from pathlib import Path
    data = (Path(__file__).resolve().parent.parent / "content" / "demo-roster-gbk.csv").read_bytes()
    parsed = roster_files.parse_roster(data)
    assert parsed.encoding == "GBK/GB18030" and parsed.rejected >= 1 and parsed.fixed >= 1 and len(parsed.entries) >= 8


# ------------------------------------------------------------------------------------------ merging


@pytest.fixture
def school(app):  # type: ignore[no-untyped-def]
    return make_school(app, "名单大学")


def merge(app, school_id: int, text: str, file_name: str = "roster.csv", mode: str = "merge") -> RosterUpload:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        upload = roster.merge_roster(session, Actor(None, "admin@test", school_id), school_id,
                                     roster_files.parse_roster(text.encode("gbk")), file_name, mode, now=utcnow())
        session.commit()
        return upload


def entries(app, school_id: int) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        return {e.student_number: (e.real_name, e.college, e.grade, e.phone) for e in session.scalars(
            select(RosterEntry).where(RosterEntry.school_id == school_id))}


def test_re_upload_merges_updates_and_keeps_absent_rows(app, school) -> None:  # type: ignore[no-untyped-def]
    first = merge(app, school, HEADER + "张三,2024001,心理学院,2024级,13800138000\n李四,2024002,教育学院,2024级,\n")
    assert (first.added, first.updated, first.kept) == (2, 0, 0)
    second = merge(app, school, HEADER + "张三,2024001,,2024级,\n李四,2024002,文学院,2024级,\n王五,2024003,,,\n")
    assert (second.added, second.updated, second.kept, second.report["unchanged"]) == (1, 1, 0, 1)
    third = merge(app, school, HEADER + "王五,2024003,数学学院,,\n")
    assert (third.added, third.updated, third.kept) == (0, 1, 2)
    # Empty cells never erase: 张三 keeps college and phone from the first upload.
    assert entries(app, school) == {"2024001": ("张三", "心理学院", "2024级", "13800138000"),
                                    "2024002": ("李四", "文学院", "2024级", None),
                                    "2024003": ("王五", "数学学院", None, None)}


def test_replace_removes_absent_rows_but_only_from_a_clean_file(app, school) -> None:  # type: ignore[no-untyped-def]
    merge(app, school, HEADER + "张三,2024001,,,\n李四,2024002,,,\n王五,2024003,,,\n")
    verified = _pending(app, school, "李四", "2024002", "o_rp", "verified")  # verified at once: the roster lists him
    with pytest.raises(Refused) as refused:
        merge(app, school, HEADER + "张三,2024001,,,\n,2024009,,,\n", mode="replace")
    assert refused.value.code == "replace_with_rejections"
    assert set(entries(app, school)) == {"2024001", "2024002", "2024003"}
    upload = merge(app, school, HEADER + "张三,2024001,心理学院,,\n赵六,2024004,,,\n", mode="replace")
    assert (upload.mode, upload.added, upload.updated, upload.removed, upload.kept) == ("replace", 1, 1, 2, 0)
    assert set(entries(app, school)) == {"2024001", "2024004"}
    with get_database(app).sessions() as session:
        assert session.get(StudentProfile, verified).status == "verified"
        audit = session.scalar(select(AuditEntry).where(AuditEntry.subject_id == str(upload.id)))
    assert audit.after["removed"] == 2 and {r["student_number"] for r in audit.before["removed"]} == {
        "2024002",
        "2024003",
    }
    with pytest.raises(Refused):
        merge(app, school, HEADER + "张三,2024001,,,\n", mode="wipe")


def test_two_uploads_of_one_school_at_once_queue_instead_of_colliding(app, school) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    parsed = roster_files.parse_roster((HEADER + "张三,2024001,,,\n李四,2024002,,,\n").encode())
    sessions = get_database(app).sessions
    first = sessions()
    roster.merge_roster(first, Actor(None, "admin-a", school), school, parsed, "a.csv", now=utcnow())
    result: dict[str, object] = {}

    def second_admin() -> None:
        with sessions() as session:
            upload = roster.merge_roster(session, Actor(None, "admin-b", school), school, parsed, "b.csv", now=utcnow())
            session.commit()
            result["counts"] = (upload.added, upload.updated, upload.report["unchanged"])

    thread = threading.Thread(target=second_admin)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "the second upload must wait for the first"
    first.commit()
    first.close()
    thread.join(20)
    assert result["counts"] == (0, 0, 2)
    assert set(entries(app, school)) == {"2024001", "2024002"}


def test_merging_one_school_never_touches_another(app, school) -> None:  # type: ignore[no-untyped-def]
    other = make_school(app, "别的大学")
    merge(app, other, HEADER + "别人,2024001,外校学院,,\n")
    merge(app, school, HEADER + "张三,2024001,心理学院,,\n")
    assert entries(app, other) == {"2024001": ("别人", "外校学院", None, None)}
    assert entries(app, school)["2024001"][0] == "张三"


def _pending(app, school_id: int, name: str, number: str, openid: str, status: str = "pending") -> int:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        user = User(openid=openid)
        session.add(user)
        session.flush()
        profile = submit_profile(session, user.id, ProfileForm(school_id, name, "心理学院", number, "2024级",
                                                               "13800138000"), now=utcnow())
        session.commit()
        assert profile.status == status
        return profile.id


def test_an_upload_verifies_pending_students_it_now_lists(app, school) -> None:  # type: ignore[no-untyped-def]
    match = _pending(app, school, "张三", "2024001", "o_r1")
    wrong_name = _pending(app, school, "张三丰", "2024002", "o_r2")
    elsewhere = make_school(app, "别的大学")
    other_school = _pending(app, elsewhere, "王五", "2024003", "o_r3")
    upload = merge(app, school, HEADER + "张 三,2024001,,,\n李四,2024002,,,\n王五,2024003,,,\n")
    assert upload.verified == 1 and upload.report["verified_profiles"] == [match]
    with get_database(app).sessions() as session:
        statuses = {p.id: (p.status, p.verified_via) for p in session.scalars(select(StudentProfile))}
        audit = session.scalar(select(AuditEntry).where(AuditEntry.action == "roster.upload"))
    assert statuses == {match: ("verified", "roster"), wrong_name: ("pending", None), other_school: ("pending", None)}
    assert audit.school_id == school and audit.after["added"] == 3 and audit.after["verified_profiles"] == [match]


# ------------------------------------------------------------------------------------------ pages


@pytest.fixture
def admin(app, client, school):  # type: ignore[no-untyped-def]
    account = make_school_admin(app, school)
    return {"school": school, "account": account, "token": sign_in(client, app, account)}


def upload_file(client, token: str, data: bytes, name: str = "名单.csv", mode: str = "merge"):  # type: ignore[no-untyped-def]
    return client.post("/console/school/roster/upload", data={"csrf_token": token, "mode": mode,
                                                             "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def upload_and_run(app, client, token: str, data: bytes, name: str = "名单.csv", mode: str = "merge"):  # type: ignore[no-untyped-def]
    response = upload_file(client, token, data, name, mode)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert run_upload_jobs(app) == ["done"]
    return response


def test_upload_shows_the_report_history_and_the_roster(app, client, admin) -> None:  # type: ignore[no-untyped-def]
    response = upload_file(client, admin["token"], (HEADER + "张三,2024001,心理学院,2024级,\n,2024002,,,\n"
                                                             "李四,２０２４００３,,,\n").encode("gbk"))
    assert response.status_code == 302
    queued = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "排队中" in queued and "GBK/GB18030" not in queued and "data-status-url" in queued
    assert client.get(response.headers["Location"] + "/status").get_json()["status"] == "queued"
    assert "正在处理" not in client.get("/console/school/roster").get_data(as_text=True)  # queued, not running
    assert run_upload_jobs(app) == ["done"]
    assert client.get(response.headers["Location"] + "/status").get_json() == {
        "id": int(response.headers["Location"].rsplit("/", 1)[1]), "status": "done", "rows": 3}
    report = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "上传报告：名单.csv" in report and "GBK/GB18030" in report and "姓名为空" in report
    assert "data-status-url" not in report  # nothing left to poll
    assert "全角字符已转为半角" in report
    page = client.get("/console/school/roster").get_data(as_text=True)
    assert "名单（共 2 人）" in page and "张三" in page and "名单.csv" in page
    # The list masks numbers (20***03); the search still matches the full ones.
    searched = search(client, "/console/school/roster", "李")
    assert "20***03" in searched and "20***01" not in searched and "2024003" not in searched
    assert "20***01" in search(client, "/console/school/roster", "202400")
    with get_database(app).sessions() as session:
        upload = session.scalar(select(RosterUpload))
        assert (upload.account_id, upload.rows, upload.rejected) == (admin["account"], 3, 1)
        assert upload.status == "done" and upload.finished_at is not None and upload.error is None
        assert session.scalar(select(RosterFile)) is None  # the bytes are gone, the report stays


def test_upload_refusals_change_nothing(app, client, admin) -> None:  # type: ignore[no-untyped-def]
    binary = upload_file(client, admin["token"], b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)), "photo.csv")
    assert binary.status_code == 400 and "无法识别的文件" in binary.get_data(as_text=True)
    xls = upload_file(client, admin["token"], b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "old.xls")
    assert xls.status_code == 400 and "不支持旧版 Excel" in xls.get_data(as_text=True)
    wrong_mode = upload_file(client, admin["token"], (HEADER + "张三,2024001,,,\n").encode(), mode="wipe")
    assert wrong_mode.status_code == 400 and "未知的上传方式" in wrong_mode.get_data(as_text=True)
    missing = client.post("/console/school/roster/upload", data={"csrf_token": admin["token"]})
    assert missing.status_code == 400 and "请选择" in missing.get_data(as_text=True)
    too_big = upload_file(client, admin["token"], b"a" * (roster_files.MAX_BYTES + 100 * 1024))
    assert too_big.status_code == 413
    with get_database(app).sessions() as session:
        assert session.scalar(select(RosterUpload)) is None and session.scalar(select(RosterEntry)) is None
        assert session.scalar(select(Job)) is None and session.scalar(select(RosterFile)) is None


def test_script_in_a_name_or_file_name_is_rendered_harmless(app, client, admin) -> None:  # type: ignore[no-untyped-def]
    response = upload_file(client, admin["token"],
                           (HEADER + "<script>alert(1)</script>,2024001,<b>学院</b>,,\n张三,2024002,<img src=x>,,\n")
                           .encode(), '<script>alert("f")</script>.csv')
    assert response.status_code == 302 and run_upload_jobs(app) == ["done"]
    report = client.get(response.headers["Location"]).get_data(as_text=True)
    page = client.get("/console/school/roster").get_data(as_text=True)
    for html in (report, page):
        assert "<script>alert" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report  # the rejected name, shown as text
    assert "&lt;img src=x&gt;" in page


def test_roster_routes_are_gated(app, client, school) -> None:  # type: ignore[no-untyped-def]
    routes = ["/console/school/roster", "/console/school/roster/template.csv", "/console/school/roster/uploads/1"]
    for path in routes:
        response = client.get(path)
        assert response.status_code == 302 and "/console/sign-in" in response.headers["Location"], path
    assert upload_file(client, "x", b"").status_code == 401
    sign_in(client, app, make_staff(app))
    for path in routes:
        assert client.get(path).status_code == 403, path
    assert upload_file(client, "x", HEADER.encode()).status_code == 403


def test_roster_upload_needs_the_csrf_token(app, client, admin) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/console/school/roster/upload", data={"file": (io.BytesIO(HEADER.encode()), "a.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 400
    assert upload_file(client, "0" * 32, (HEADER + "张三,2024001,,,\n").encode()).status_code == 400
    with get_database(app).sessions() as session:
        assert session.scalar(select(RosterEntry)) is None


def test_another_schools_roster_and_reports_are_invisible(app, client, admin) -> None:  # type: ignore[no-untyped-def]
    other = make_school(app, "别的大学")
    theirs = merge(app, other, HEADER + "别人,2099001,外校学院,,\n")
    assert client.get(f"/console/school/roster/uploads/{theirs.id}").status_code == 404
    page = search(client, "/console/school/roster", "2099")
    assert "别人" not in page and "20***01" not in page
    assert client.get(f"/console/school/roster/uploads/{theirs.id}/status").status_code == 404
    mine = upload_and_run(app, client, admin["token"], (HEADER + "张三,2024001,,,\n").encode())
    assert client.get(mine.headers["Location"]).status_code == 200
    with get_database(app).sessions() as session:
        assert session.get(School, other) is not None
        assert {e.school_id for e in session.scalars(select(RosterEntry))} == {other, admin["school"]}


def test_replace_mode_through_the_page(app, client, admin) -> None:  # type: ignore[no-untyped-def]
    upload_and_run(app, client, admin["token"], (HEADER + "张三,2024001,,,\n李四,2024002,,,\n").encode())
    response = upload_and_run(app, client, admin["token"], (HEADER + "张三,2024001,,,\n").encode(),
                              "/home/李老师/名单/b.csv", mode="replace")
    report = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "已从名单删除" in report and "上传报告：b.csv" in report
    refused = upload_and_run(app, client, admin["token"], (HEADER + "王五,2024003,,,\n,2024004,,,\n").encode(),
                             "c.csv", mode="replace")
    page = client.get(refused.headers["Location"]).get_data(as_text=True)
    assert "处理失败" in page and "替换方式要求文件中没有被拒绝的行" in page and "重新上传" in page
    assert set(entries(app, admin["school"])) == {"2024001"}


def test_template_csv_parses_as_a_roster(client, admin) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/console/school/roster/template.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert roster_files.parse_roster(response.data).entries[0]["real_name"] == "张三"


def test_console_times_are_shown_in_beijing_time() -> None:
    from datetime import datetime, timezone

    from web.console.roster import beijing_time
    assert beijing_time(datetime(2026, 11, 29, 16, 30, tzinfo=timezone.utc)) == "2026-11-30 00:30"
    assert beijing_time(None) == ""


# ------------------------------------------------------------------------------------------ the upload job


def _upload(app, upload_id: int) -> RosterUpload:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        upload = session.get(RosterUpload, upload_id)
        session.expunge(upload)
        return upload


def _upload_id(response) -> int:  # type: ignore[no-untyped-def]
    return int(response.headers["Location"].rsplit("/", 1)[1])


def test_an_upload_is_queued_then_done_with_its_report_and_its_bytes_gone(app, client, admin) -> None:  # type: ignore[no-untyped-def]
    data = xlsx([["姓名", "学号"], ["张三", "2024001"], ["李四", 2024002]])
    response = upload_file(client, admin["token"], data, "名单.xlsx")
    upload_id = _upload_id(response)
    queued = _upload(app, upload_id)
    assert (queued.status, queued.rows, queued.report, queued.finished_at) == ("queued", 0, {}, None)
    with get_database(app).sessions() as session:
        stored = session.get(RosterFile, upload_id)
        # The exact bytes, in the blob store: a worker on any host reads them.
        assert get_blob_store(app).get(stored.blob_key) == data and stored.size_bytes == len(data)
        job = session.scalar(select(Job).where(Job.kind == roster.UPLOAD_JOB))
        assert job.payload == {"upload_id": upload_id} and job.status == "pending"
        assert session.scalar(select(RosterEntry)) is None  # nothing merged in the request
    assert run_upload_jobs(app) == ["done"]
    done = _upload(app, upload_id)
    assert (done.status, done.rows, done.added, done.fixed, done.parsed_rows) == ("done", 2, 2, 1, 2)
    assert done.report["kind"] == "xlsx" and done.finished_at is not None
    assert set(entries(app, admin["school"])) == {"2024001", "2024002"}
    with get_database(app).sessions() as session:
        assert session.get(RosterFile, upload_id) is None
        assert get_blob_store(app).size(stored.blob_key) is None  # the school's list is not kept after processing
        audit = session.scalar(select(AuditEntry).where(AuditEntry.action == "roster.upload"))
    assert (audit.account_id, audit.subject_id, audit.after["added"]) == (admin["account"], str(upload_id), 2)
    report = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Excel 工作表“名单”" in report and "数字格式的单元格已转为文本" in report


def test_a_file_that_cannot_be_merged_ends_failed_with_the_reason_and_the_admin_can_upload_again(
    app, client, admin
) -> None:  # type: ignore[no-untyped-def]
    nothing = upload_file(client, admin["token"], (HEADER + ",,学院,,\n王五,,,,\n").encode())
    headless = upload_file(client, admin["token"], "just,some,words\n1,2,3\n".encode())
    assert headless.status_code == 400 and "还在处理中" in headless.get_data(as_text=True)  # one at a time
    assert run_upload_jobs(app) == ["done"]  # the job did its work: the upload failed, the job did not
    failed = _upload(app, _upload_id(nothing))
    assert failed.status == "failed" and failed.error.startswith("文件中没有可导入的行") and failed.finished_at
    page = client.get(nothing.headers["Location"]).get_data(as_text=True)
    assert "处理失败：文件中没有可导入的行" in page and "名单未改变" in page and "重新上传" in page
    assert "data-status-url" not in page
    assert client.get(nothing.headers["Location"] + "/status").get_json()["status"] == "failed"
    listing = client.get("/console/school/roster").get_data(as_text=True)
    assert "处理失败" in listing
    bad_xlsx = upload_file(client, admin["token"], b"PK\x03\x04" + b"not really a zip" * 10, "坏.xlsx")
    assert bad_xlsx.status_code == 302 and run_upload_jobs(app) == ["done"]
    assert _upload(app, _upload_id(bad_xlsx)).error.startswith("Excel 文件已损坏")
    again = upload_and_run(app, client, admin["token"], (HEADER + "张三,2024001,,,\n").encode())
    assert _upload(app, _upload_id(again)).status == "done"
    with get_database(app).sessions() as session:
        assert session.scalar(select(RosterFile)) is None  # no bytes kept, failed or not
        assert [e.student_number for e in session.scalars(select(RosterEntry))] == ["2024001"]
        assert session.scalar(select(AuditEntry).where(AuditEntry.subject_id == str(_upload_id(nothing)))) is None


def test_a_second_upload_waits_for_the_first_to_finish(app, client, admin) -> None:  # type: ignore[no-untyped-def]
    first = upload_file(client, admin["token"], (HEADER + "张三,2024001,,,\n").encode(), "一.csv")
    second = upload_file(client, admin["token"], (HEADER + "李四,2024002,,,\n").encode(), "二.csv")
    assert second.status_code == 400 and "上一份名单（一.csv）还在处理中" in second.get_data(as_text=True)
    assert "完成前不能再上传" in client.get("/console/school/roster").get_data(as_text=True)
    with get_database(app).engine.begin() as conn:  # a worker has started on it
        roster.record_progress(conn, _upload_id(first), 2000)
    assert "正在读取，已读取 2000 行" in client.get(first.headers["Location"]).get_data(as_text=True)
    assert "正在处理（已读取 2000 行）" in client.get("/console/school/roster").get_data(as_text=True)
    assert client.get(first.headers["Location"] + "/status").get_json()["rows"] == 2000
    # Another school is not held up.
    other = make_school(app, "别的大学")
    with get_database(app).sessions() as session:
        roster.request_upload(session, Actor(None, "b", other), other, (HEADER + "王五,2024003,,,\n").encode(), "b.csv",
                              now=utcnow(), blobs=get_blob_store(app))
        session.commit()
    assert run_upload_jobs(app) == ["done", "done"]
    assert _upload(app, _upload_id(first)).status == "done"
    upload_and_run(app, client, admin["token"], (HEADER + "李四,2024002,,,\n").encode(), "二.csv")
    assert set(entries(app, admin["school"])) == {"2024001", "2024002"}


def test_a_stuck_upload_stops_blocking_after_the_busy_window(app, client, admin) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from sqlalchemy import update

    from models.base import utcnow

    first = upload_file(client, admin["token"], (HEADER + "张三,2024001,,,\n").encode())
    with get_database(app).sessions() as session:
        session.execute(update(RosterUpload).values(created_at=utcnow() - roster.BUSY_WINDOW - timedelta(minutes=1)))
        session.commit()
    assert upload_file(client, admin["token"], (HEADER + "李四,2024002,,,\n").encode()).status_code == 302
    assert _upload(app, _upload_id(first)).status == "queued"
    page = client.get(first.headers["Location"]).get_data(as_text=True)
    assert "处理超时" in page and "重新上传" in page and "data-status-url" not in page


def test_a_re_run_of_a_finished_upload_does_nothing(app, client, admin) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import delete, func, update

    response = upload_and_run(app, client, admin["token"], (HEADER + "张三,2024001,,,\n李四,2024002,,,\n").encode())
    before = _upload(app, _upload_id(response))
    # At-least-once: the queue hands the same job over again (a lost lease, a requeue after a crash).
    with get_database(app).sessions() as session:
        session.execute(update(Job).where(Job.kind == roster.UPLOAD_JOB).values(status="pending"))
        # An entry removed since (a re-run that merged again would bring it back).
        session.execute(delete(RosterEntry).where(RosterEntry.student_number == "2024002"))
        session.commit()
    assert run_upload_jobs(app) == ["done"]
    after = _upload(app, _upload_id(response))
    assert (after.status, after.finished_at, after.added, after.report) == ("done", before.finished_at, 2,
                                                                             before.report)
    assert set(entries(app, admin["school"])) == {"2024001"}  # not merged again
    with get_database(app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)
                              .where(AuditEntry.action == "roster.upload")) == 1
        calls: list[int] = []
        assert roster.process_upload(session, after.id, calls.append, clock=utcnow,
                                     blobs=get_blob_store(app)).status == "done" and calls == []
    # A progress report arriving late never moves a finished upload back.
    with get_database(app).engine.begin() as conn:
        roster.record_progress(conn, after.id, 5)
    assert (_upload(app, after.id).status, _upload(app, after.id).parsed_rows) == ("done", 2)


def test_the_job_reports_progress_while_parsing(app, school) -> None:  # type: ignore[no-untyped-def]
    rows = "".join(f"学生{'甲乙丙丁'[i % 4]}{'一二三'[i % 3]},S{i:06d},,,\n" for i in range(4500))
    with get_database(app).sessions() as session:
        upload = roster.request_upload(session, Actor(None, "admin", school), school, (HEADER + rows).encode(),
                                       "big.csv", now=utcnow(), blobs=get_blob_store(app))
        session.commit()
        upload_id = upload.id
    seen: list[tuple[str, int]] = []
    engine = get_database(app).engine

    def progress(count: int) -> None:
        with engine.begin() as conn:
            roster.record_progress(conn, upload_id, count)
        seen.append((_upload(app, upload_id).status, _upload(app, upload_id).parsed_rows))

    with get_database(app).sessions() as session:
        roster.process_upload(session, upload_id, progress, clock=utcnow, blobs=get_blob_store(app))
        session.commit()
    assert seen == [("running", 0), ("running", 2000), ("running", 4000)]
    assert (_upload(app, upload_id).status, _upload(app, upload_id).parsed_rows) == ("done", 4500)


@pytest.mark.parametrize("lost", ["row", "blob"])
def test_an_upload_whose_bytes_are_lost_fails_clearly(app, school, lost) -> None:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        upload = roster.request_upload(session, Actor(None, "admin", school), school, (HEADER + "张三,2024001,,,\n")
                                       .encode(), "a.csv", now=utcnow(), blobs=get_blob_store(app))
        session.flush()
        stored = session.get(RosterFile, upload.id)
        if lost == "row":
            session.delete(stored)
        else:  # the store lost it (a bucket emptied by hand, another region): the row still points at it
            get_blob_store(app).delete(stored.blob_key)
        session.commit()
    assert run_upload_jobs(app) == ["done"]
    assert _upload(app, upload.id).error == "上传的文件已丢失，请重新上传"


def test_another_schools_upload_is_404_on_every_route(app, client, admin) -> None:  # type: ignore[no-untyped-def]
    other = make_school(app, "别的大学")
    with get_database(app).sessions() as session:
        theirs = roster.request_upload(session, Actor(None, "b", other), other, (HEADER + "王五,2024003,,,\n").encode(),
                                       "theirs.csv", now=utcnow(), blobs=get_blob_store(app))
        session.commit()
    for path in (f"/console/school/roster/uploads/{theirs.id}", f"/console/school/roster/uploads/{theirs.id}/status"):
        assert client.get(path).status_code == 404, path
    assert "theirs.csv" not in client.get("/console/school/roster").get_data(as_text=True)
    # Their queued upload does not hold up this school.
    assert upload_file(client, admin["token"], (HEADER + "张三,2024001,,,\n").encode()).status_code == 302
