"""The school console: counters kept by the flows equal a recount, the student table's filters and keyset pages,
a student's detail, exports (CSV with a BOM, XLSX, no formulas), and every route's gate and tenant rule."""
from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from database import get_database
from handlers.accounts.identity import ProfileForm, review, submit_profile
from handlers.catalog.loader import load_catalog, parse_catalog
from handlers.certificates.claims import change_channel, claim
from handlers.certificates.corrections import decide_correction, request_correction, revoke
from handlers.learning import school_progress
from handlers.learning.enrolment import enroll
from handlers.learning.quiz import start_attempt, submit_attempt
from handlers.schools import console
from handlers.schools import exports as school_exports
from jobs.queue import get_queue
from models import (
    AuditEntry,
    Job,
    RosterEntry,
    School,
    SchoolStat,
    StudentExport,
    StudentProfile,
    StudentProgress,
    User,
)
from models.base import utcnow
from tests.console_helpers import make_school_admin, make_staff, sign_in
from tests.factories import ISSUER, answer_all, at, course, get_file, to_toml, watch_fully
from web.blobs import get_blob_store

SCRIPT = "<script>alert(1)</script>"
FORMULA = "=HYPERLINK(\"http://evil\")"


def _student(session, school_id: int, openid: str, name: str, number: str, *, roster: bool = True,  # type: ignore[no-untyped-def]
             college: str = "心理学院", grade: str = "2024级") -> int:
    user = User(openid=openid)
    session.add(user)
    session.flush()
    if roster:
        session.add(RosterEntry(school_id=school_id, student_number=number, real_name=name))
        session.flush()
    submit_profile(session, user.id, ProfileForm(school_id, name, college, number, grade, "13800000000"), now=utcnow())
    return user.id


def _learn(session, user_id: int, topics: int, *, fail_second: bool = False) -> None:  # type: ignore[no-untyped-def]
    enrollment = enroll(session, user_id, "demo-course")
    session.commit()
    t = 0.0
    for topic, seconds in (("t01", 10), ("t02", 60))[:topics]:
        t = watch_fully(session, enrollment, topic, t, seconds)
        attempt = start_attempt(session, enrollment, topic, at(t))
        right = not (fail_second and topic == "t02")
        submit_attempt(session, user_id, attempt.id, answer_all(session, attempt, right=right), at(t + 5))
        session.commit()
        t += 10


@pytest.fixture
def world(app):  # type: ignore[no-untyped-def]
    """Two schools through the real flows: passes, a partial learner, a failed test, pending, rejected,
    approved, certificates (paper awaiting payment, a channel change, a correction, a revocation)."""
    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(to_toml(course()), "demo.toml"), "demo.toml")
        a, b = School(name="甲大学"), School(name="乙大学")
        session.add_all([a, b])
        session.flush()
        ids = {"a": a.id, "b": b.id}
        ids["passed"] = _student(session, a.id, "o1", "王一", "A001")
        ids["partial"] = _student(session, a.id, "o2", "李二", "A002", college="教育学院", grade="2023级")
        ids["failer"] = _student(session, a.id, "o3", "赵三", "A003")
        ids["pending"] = _student(session, a.id, "o4", "郑四", "A004", roster=False)
        # Names and colleges may also come from elsewhere (a roster upload): the console must not trust them.
        odd = session.scalar(select(StudentProfile).where(StudentProfile.user_id == ids["pending"]))
        odd.real_name, odd.college = SCRIPT, FORMULA
        ids["approved"] = _student(session, a.id, "o5", "钱五", "A005", roster=False)
        ids["rejected"] = _student(session, a.id, "o6", "孙六", "A006", roster=False)
        ids["revoked"] = _student(session, a.id, "o7", "周七", "A007")
        ids["other"] = _student(session, b.id, "o8", "吴八", "B001")
        session.commit()
        for key, approve in (("approved", True), ("rejected", False)):
            profile = session.scalar(select(StudentProfile).where(StudentProfile.user_id == ids[key]))
            review(session, profile.id, a.id, "admin:1", approve=approve, reason="不是本校学生", now=utcnow())
        session.commit()
        _learn(session, ids["passed"], 2)
        _learn(session, ids["partial"], 1)
        _learn(session, ids["failer"], 2, fail_second=True)
        _learn(session, ids["revoked"], 2)
        _learn(session, ids["other"], 2)
        paper = claim(session, ids["passed"], "demo-course", "paper", ISSUER, date(2026, 11, 29),
                      blobs=get_blob_store(app))
        session.commit()
        change_channel(session, ids["passed"], paper.id, "both", ISSUER, now=utcnow(), blobs=get_blob_store(app))
        session.commit()
        corrected = claim(session, ids["other"], "demo-course", "electronic", ISSUER, date(2026, 11, 29),
                          blobs=get_blob_store(app))
        session.commit()
        asked = request_correction(session, ids["other"], corrected.id, {"holder_name": "吴八八"}, "名字错了")
        session.commit()
        decide_correction(session, asked.id, "staff:wang", approve=True, note=None, issuer=ISSUER, now=utcnow(),
                          blobs=get_blob_store(app))
        session.commit()
        gone = claim(session, ids["revoked"], "demo-course", "electronic", ISSUER, date(2026, 11, 29),
                     blobs=get_blob_store(app))
        session.commit()
        revoke(session, gone.id, "staff:wang", "冒名", now=utcnow())
        session.commit()
        ids["profile"] = {
            key: session.scalar(select(StudentProfile.id).where(StudentProfile.user_id == ids[key]))
            for key in ("passed", "partial", "failer", "pending", "approved", "rejected", "revoked", "other")
        }
    return ids


def _snapshot(session):  # type: ignore[no-untyped-def]
    counters = {(r.school_id, r.course_id, r.name): r.value for r in session.scalars(select(SchoolStat)) if r.value}
    progress = sorted((r.user_id, r.course_id, r.school_id, r.profile_id, r.stage, r.topics_done, list(r.topic_scores),
                       r.attempts, r.total_score, r.passed_at, r.last_progress_at)
                      for r in session.scalars(select(StudentProgress)))
    return counters, progress


def test_maintained_counters_equal_a_recount(app, world) -> None:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        counters, progress = _snapshot(session)
        a = world["a"]
        mine = {name: v for (s, c, name), v in counters.items() if s == a}
        assert mine["profiles.verified"] == 5 and mine["profiles.pending"] == 1 and mine["profiles.rejected"] == 1
        assert mine["enrolled"] == 4 and mine["passed"] == 2 and mine["certified"] == 1
        assert mine["topic.1"] == 4 and mine["topic.2"] == 2  # the failer reached topic 1 only
        assert mine["cert.both.awaiting_payment"] == 1 and "cert.electronic.none" not in mine  # revoked
        assert mine["score_sum"] == 200
        assert mine["college.心理学院"] == 5 and mine["college.教育学院"] == 1
        assert {name: v for (s, c, name), v in counters.items() if s == world["b"] and name.startswith("cert.")} == {
            "cert.electronic.none": 1}  # the correction swapped versions: still one
        school_progress.rebuild_progress(session, batch=2)  # batches of two enrollments: the paging is exercised
        school_progress.recount(session)
        session.flush()
        assert _snapshot(session) == (counters, progress)
        # One school alone: its rows and counters rebuilt, the other school's left as they were.
        session.execute(SchoolStat.__table__.delete().where(SchoolStat.school_id == a))
        session.execute(StudentProgress.__table__.delete().where(StudentProgress.school_id == a))
        assert school_progress.rebuild_progress(session, a) == 4
        school_progress.recount(session, a)
        session.flush()
        assert _snapshot(session) == (counters, progress)
        session.rollback()


def test_the_cli_recounts_from_scratch(app, world, runner) -> None:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        before = _snapshot(session)
        session.execute(SchoolStat.__table__.delete())
        session.execute(StudentProgress.__table__.delete())
        session.commit()
    result = runner.invoke(args=["schools", "recount", "--progress"])
    assert result.exit_code == 0, result.output
    assert "progress rows rebuilt: 5" in result.output
    with get_database(app).sessions() as session:
        assert _snapshot(session) == before


def _ids(page) -> list[int]:  # type: ignore[no-untyped-def]
    return [r.id for r in page.rows]


def test_filters_and_keyset_pages(app, world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    p = world["profile"]
    with get_database(app).sessions() as session:
        course_id, _ = console.pick_course(session, None)
        now = utcnow()

        def ids(**filters):  # type: ignore[no-untyped-def]
            return _ids(console.student_page(session, world["a"], course_id, console.Filters(**filters),
                                                    None, now))

        everyone = ids()
        assert everyone == sorted(everyone) and p["other"] not in everyone and len(everyone) == 7
        assert ids(state="pending") == [p["pending"]]
        assert ids(state="rejected") == [p["rejected"]]
        assert ids(state="not_started") == [p["approved"]]
        assert ids(state="learning") == sorted([p["partial"], p["failer"]])
        assert ids(state="passed") == [p["revoked"]]  # passed, its certificate revoked
        assert ids(state="certified") == [p["passed"]]
        assert ids(college="教育学院") == [p["partial"]]
        assert ids(grade="2023级", state="learning") == [p["partial"]]
        assert ids(q="李") == [p["partial"]] and ids(q="A00") == everyone and ids(q="%") == []
        assert ids(state="stuck") == []
        # Stage pages with profile filters read the progress index in steps: one row a step still finds them all.
        for batch in (1, 2, 500):
            monkeypatch.setattr(console, "STAGE_BATCH", batch)
            assert ids(grade="2023级", state="learning") == [p["partial"]]
            assert ids(college="心理学院", state="learning") == [p["failer"]]
            assert ids(q="王", state="certified") == [p["passed"]] and ids(q="王", state="learning") == []
        later = now + timedelta(days=8)
        stuck = console.student_page(session, world["a"], course_id, console.Filters(state="stuck"),
                                            None, later)
        assert _ids(stuck) == sorted([p["partial"], p["failer"]])
        # Keyset pages of 3: every student once, in order, no OFFSET.
        seen, after = [], None
        while True:
            page = console.student_page(session, world["a"], course_id, console.Filters(), after, now,
                                               limit=3)
            seen += _ids(page)
            if page.next_after is None:
                break
            after = page.next_after
        assert seen == everyone
        board = console.dashboard(session, world["a"], course_id, later)
        assert (board.enrolled, board.passed, board.certified, board.stuck, board.average_score) == (4, 2, 1, 2, 100.0)
        assert [n for _, _, n in board.funnel] == [4, 2] and board.not_started == 1


def test_pages_show_the_dashboard_table_and_detail(app, client, world) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, app, make_school_admin(app, world["a"]))
    html = client.get("/console/school/").get_data(as_text=True)
    assert "专题完成情况" in html and "专题一" in html and "已领取证书" in html
    table = client.get("/console/school/students").get_data(as_text=True)
    assert "王一" in table and "吴八" not in table  # another school's student never shows
    assert SCRIPT not in table and "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    detail = client.get(f"/console/school/students/{world['profile']['passed']}").get_data(as_text=True)
    assert "王一" in detail and "测试记录" in detail and "电子版+纸质版" in detail and "待支付" in detail
    pending = client.get(f"/console/school/students/{world['profile']['pending']}").get_data(as_text=True)
    assert SCRIPT not in pending
    paged = client.get("/console/school/students?state=learning&college=心理学院").get_data(as_text=True)
    assert "赵三" in paged and "李二" not in paged


def _run_export_jobs(app) -> None:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        jobs = list(session.scalars(select(Job.id).where(Job.kind == school_exports.EXPORT_JOB)))
    for job_id in jobs:
        assert get_queue(app).execute(job_id) == "done"


def test_exports_csv_with_bom_and_xlsx_without_formulas(app, client, world) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_school_admin(app, world["a"]))
    for fmt in ("csv", "xlsx"):
        response = client.post("/console/school/exports", data={"csrf_token": token, "format": fmt})
        assert response.status_code == 302
    _run_export_jobs(app)
    assert client.post("/console/school/exports", data={"csrf_token": token, "format": "pdf"}).status_code == 400
    with get_database(app).sessions() as session:
        exports = {e.file_format: e for e in session.scalars(select(StudentExport))}
        assert all(e.status == "done" and e.total == 7 and e.done_count == 7 for e in exports.values())
        # Only whole exports reach the store: nothing half-written beside them.
        stored = [b.key for b in get_blob_store(app).list("exports/students/")]
        assert stored == sorted(e.blob_key for e in exports.values())
    raw = get_file(client, f"/console/school/exports/{exports['csv'].id}/download")
    assert raw.status_code == 200 and raw.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.data.decode("utf-8-sig"))))
    assert rows[0][:4] == ["姓名", "学号", "学院", "年级"] and len(rows) == 8
    by_number = {r[1]: r for r in rows[1:]}
    assert by_number["A004"][0] == SCRIPT and by_number["A004"][2] == "'" + FORMULA
    assert by_number["A001"][5] == "已领证" and "B001" not in by_number
    book = get_file(client, f"/console/school/exports/{exports['xlsx'].id}/download")
    sheet = load_workbook(io.BytesIO(book.data)).active
    cells = [[c.value for c in row] for row in sheet.iter_rows()]
    assert cells[0][0] == "姓名" and len(cells) == 8
    college = next(r[2] for r in cells if r[1] == "A004")
    assert college == "'" + FORMULA  # text, not a formula
    status = client.get(f"/console/school/exports/{exports['csv'].id}").get_json()
    assert status["status"] == "done" and status["download"].endswith("/download")


def test_every_route_is_gated_and_scoped(app, client, world) -> None:  # type: ignore[no-untyped-def]
    # Another school's export, to try from school A.
    with get_database(app).sessions() as session:
        course_id, _ = console.pick_course(session, None)
        theirs = school_exports.request_export(session, world["b"], course_id, "school_admin:x", "csv",
                                               console.Filters(), now=utcnow())
        session.commit()
    _run_export_jobs(app)
    other_profile = world["profile"]["other"]
    gets = ["/console/school/", "/console/school/students", f"/console/school/students/{world['profile']['passed']}",
            f"/console/school/exports/{theirs.id}", f"/console/school/exports/{theirs.id}/download"]
    for url in gets:  # anonymous: to sign-in
        response = client.get(url)
        assert response.status_code == 302 and "/console/sign-in" in response.headers["Location"], url
    assert client.post("/console/school/exports", data={"format": "csv"}).status_code == 401
    sign_in(client, app, make_staff(app))
    for url in gets[2:]:  # staff name the school they look at; without one there is nothing to show
        assert client.get(url).status_code == 404, url
    for page in ("/console/school/?q=乙", "/console/school/students?q=乙"):  # without one: a choice
        picker = client.get(page).get_data(as_text=True)
        assert f"/console/school/?school={world['b']}" in picker and "甲大学" not in picker
    b = world["b"]
    staff_view = client.get(f"/console/school/students?school={b}").get_data(as_text=True)
    assert "吴八" in staff_view and "王一" not in staff_view and f"school={b}" in staff_view
    assert client.get(f"/console/school/?school={b}").status_code == 200
    theirs_file = get_file(client, f"/console/school/exports/{theirs.id}/download?school={b}")
    assert theirs_file.status_code == 200
    # The school named scopes everything: school B's export or student seen "through" school A is a 404.
    assert client.get(f"/console/school/exports/{theirs.id}?school={world['a']}").status_code == 404
    assert client.get(f"/console/school/students/{other_profile}?school={world['a']}").status_code == 404
    assert client.get(f"/console/school/students/{other_profile}?school={b}").status_code == 200
    assert client.get("/console/school/?school=999999").status_code == 404
    with client.session_transaction() as cookie:  # signed out
        cookie.clear()
    token = sign_in(client, app, make_school_admin(app, world["a"]))
    for url in (f"/console/school/students/{other_profile}", f"/console/school/exports/{theirs.id}",
                f"/console/school/exports/{theirs.id}/download", "/console/school/students/999999"):
        assert client.get(url).status_code == 404, url
    assert client.post("/console/school/exports", data={"format": "csv"}).status_code == 400  # no CSRF token
    assert client.post("/console/school/exports", data={"format": "csv", "csrf_token": token}).status_code == 302
    with get_database(app).sessions() as session:
        mine = session.scalar(select(StudentExport).where(StudentExport.id != theirs.id))
        assert mine.school_id == world["a"]
        audit = session.scalar(select(AuditEntry).where(AuditEntry.action == "school.students_export"))
        assert audit.subject_id == str(mine.id) and audit.school_id == world["a"]


def test_an_export_reports_progress_batch_by_batch(app, world, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        course_id, _ = console.pick_course(session, None)
        export = school_exports.request_export(session, world["a"], course_id, "school_admin:1", "csv",
                                               console.Filters(state="learning"), now=utcnow())
        session.commit()
        seen: list[tuple[int, int]] = []
        done = school_exports.build_export(session, export.id, utcnow, lambda n, total: seen.append((n, total)),
                                           batch=1, blobs=get_blob_store(app))
        session.commit()
        assert seen == [(0, 2), (1, 2), (2, 2)] and done.total == 2 and done.status == "done"
        lines = get_blob_store(app).get(done.blob_key).decode("utf-8-sig").splitlines()
        assert len(lines) == 3 and all(("李二" in line) or ("赵三" in line) for line in lines[1:])


def test_concurrent_enrollments_and_a_double_submit_count_once(app, world) -> None:  # type: ignore[no-untyped-def]
    import threading

    with get_database(app).sessions() as session:
        users = [_student(session, world["a"], f"o_c{i}", f"陈{'一二三四五六'[i]}", f"C10{i}") for i in range(6)]
        session.commit()
    barrier = threading.Barrier(len(users))
    errors: list[BaseException] = []

    def start(user_id: int) -> None:
        try:
            with get_database(app).sessions() as own:
                barrier.wait(5)
                enroll(own, user_id, "demo-course")
                own.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    with get_database(app).sessions() as session:
        enrollment = enroll(session, users[0], "demo-course")
        t = watch_fully(session, enrollment, "t01", 0.0, 10)
        attempt = start_attempt(session, enrollment, "t01", at(t))
        answers = answer_all(session, attempt)
        submit_attempt(session, users[0], attempt.id, answers, at(t + 5))
        submit_attempt(session, users[0], attempt.id, answers, at(t + 6))  # a double tap
        session.commit()
        counters, progress = _snapshot(session)
        assert counters[(world["a"], enrollment.course_id, "enrolled")] == 4 + 6
        row = session.scalar(select(StudentProgress).where(StudentProgress.user_id == users[0]))
        assert (row.attempts, row.topics_done) == (1, 1)
        school_progress.rebuild_progress(session)
        school_progress.recount(session)
        session.flush()
        assert _snapshot(session) == (counters, progress)
        session.rollback()


def test_the_console_opens_on_the_main_course_and_keeps_the_choice(app, client, world) -> None:  # type: ignore[no-untyped-def]
    # The main course is loaded *after* the other one (a higher id) but its catalog orders it first.
    with get_database(app).sessions() as session:
        main = course(code="main-course", title="主课程", order=1)
        load_catalog(session, parse_catalog(to_toml(main), "main.toml"), "main.toml")
        session.commit()
        ids = {title: cid for cid, title in school_progress.courses(session)}
    assert list(ids) == ["主课程", "示例课程"]
    sign_in(client, app, make_school_admin(app, world["a"]))
    html = client.get("/console/school/").get_data(as_text=True)
    assert f'<option value="{ids["主课程"]}" selected' in html and "切换课程" in html
    # Choosing the other course sticks across pages until changed.
    client.get(f"/console/school/?course={ids['示例课程']}")
    assert f'<option value="{ids["示例课程"]}" selected' in client.get("/console/school/students").get_data(
        as_text=True
    )
    assert f'<option value="{ids["示例课程"]}" selected' in client.get("/console/school/").get_data(as_text=True)
    assert "王一" in client.get("/console/school/students?state=certified").get_data(as_text=True)
