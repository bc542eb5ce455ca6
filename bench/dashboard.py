"""bench/dashboard: the school console's dashboard and student table on a national-size PostgreSQL data set, big school against small.

    .venv/bin/python -m bench.dashboard                      # 2,000,000 students, 3,000 schools
    .venv/bin/python -m bench.dashboard --students 200000 --schools 300 --big 40000   # quicker
    .venv/bin/python -m bench.dashboard --keep               # leave the database for EXPLAIN by hand
    .venv/bin/python -m bench.dashboard --reuse              # measure the kept database again

Generates in SQL (generate_series, one INSERT … SELECT per table: no ORM), in its own database
(dropped afterwards), then signs a school admin in through the real form and times GET requests
through the real Flask app (test client: routing, session cookie, role gate, queries, Jinja).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.settings import DEFAULT_PG_URL, REPO, RESULTS_DIR

DB_NAME = "xinwei_bench_dashboard"
TARGET_MEDIAN_MS = 150.0
TARGET_RATIO = 3.0
COLLEGES = [
    "心理学院",
    "教育学院",
    "文学院",
    "理学院",
    "工学院",
    "医学院",
    "法学院",
    "经济学院",
    "外国语学院",
    "艺术学院",
    "计算机学院",
    "马克思主义学院",
]
GRADES = ["2022级", "2023级", "2024级", "2025级"]


def _admin(base_url: str):  # type: ignore[no-untyped-def]
    return create_engine(base_url, isolation_level="AUTOCOMMIT")


def create_database(base_url: str, name: str) -> str:
    admin = _admin(base_url)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_database(base_url: str, name: str) -> None:
    admin = _admin(base_url)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def migrate(url: str) -> None:
    from alembic import command

    from cli import alembic_config

    cfg = alembic_config(url)
    cfg.attributes["configure_logging"] = False
    command.upgrade(cfg, "head")


def _sql_list(values: list[str]) -> str:
    return "ARRAY[" + ", ".join("'" + v + "'" for v in values) + "]"


def generate(app: Any, students: int, schools: int, big: int, small: int) -> dict[str, float]:
    """The data set, in SQL. School 1 holds `big` students, school 2 `small`, the rest spread
    evenly; a school's students are interleaved with everyone else's in id order (they sign up
    over the same months), the worst case for locality. Per-topic results live in each progress
    row's topic_scores (14 numbers), not 28 million attempt rows: the dashboard, the table and
    the export never read attempts. Attempt rows (14 per enrolled student) are generated for the
    two measured schools only, for the detail page."""
    from database import get_database
    from handlers.catalog.loader import load_catalog_file

    timings: dict[str, float] = {}
    db = get_database(app)
    with db.sessions() as session:
        # Both courses, the measured one second: the pages are asked for it by id, as the course switch does.
        for path in sorted((REPO / "content" / "courses").glob("*.toml")):
            load_catalog_file(session, path)
        session.commit()
    big_every = max(2, students // big)  # every n-th student belongs to school 1
    small_every = max(big_every + 1, students // max(1, small))
    colleges, grades = _sql_list(COLLEGES), _sql_list(GRADES)

    def h(expr: str, salt: int) -> str:
        # A multiplicative hash of a row number into 0..10006: attributes spread evenly within any
        # one school (a school's students are every n-th number; a plain `i % k` would alias with n).
        return f"(({expr})::bigint * {salt} % 10007)"

    # a student's school, from their number i (1-based)
    school_of = (f"CASE WHEN i % {big_every} = 0 THEN 1 WHEN i % {small_every} = 1 THEN 2 "
                 f"ELSE 3 + (i % {max(1, schools - 2)}) END")
    steps = [
        (
            "schools",
            f"""INSERT INTO schools (id, name, address, created_at)
            SELECT s, CASE s WHEN 1 THEN '大型示范大学' WHEN 2 THEN '小型示范学院' ELSE '学校' || s END, '地址', now()
            FROM generate_series(1, {schools}) s""",
        ),
        (
            "users",
            f"""INSERT INTO users (id, openid, subscribed, created_at)
            SELECT i, 'o_bench_' || i, true, now() FROM generate_series(1, {students}) i""",
        ),
        # 90 % verified, 6 % pending, 4 % rejected
        (
            "student_profiles",
            f"""INSERT INTO student_profiles (id, user_id, school_id, real_name, college, student_number,
                grade, phone, status, confirmed_at, verified_at, verified_via, created_at)
            SELECT i, i, {school_of}, '学生' || i, ({colleges})[1 + {h("i", 7919)} % {len(COLLEGES)}], 'S' || lpad(i::text, 9, '0'),
                ({grades})[1 + {h("i", 104729)} % {len(GRADES)}], '13800000000',
                CASE WHEN {h("i", 1299709)} % 100 < 90 THEN 'verified' WHEN {h("i", 1299709)} % 100 < 96 THEN 'pending' ELSE 'rejected' END,
                now() - ((i % 200) || ' days')::interval, now(), 'roster', now()
            FROM generate_series(1, {students}) i""",
        ),
        # 85 % of the verified started the main course
        (
            "enrollments",
            f"""INSERT INTO enrollments (id, user_id, course_id, round, passed_at, total_score, created_at)
            SELECT p.id, p.id, c.id, 1,
                CASE WHEN {h("p.id", 15485863)} % 100 < 40 THEN now() - ((p.id % 60) || ' days')::interval END,
                CASE WHEN {h("p.id", 15485863)} % 100 < 40 THEN 85 + (p.id % 16) END, now() - ((p.id % 90) || ' days')::interval
            FROM student_profiles p CROSS JOIN (SELECT id FROM courses WHERE code = 'xinwei-mooc') c
            WHERE p.status = 'verified' AND {h("p.id", 32452843)} % 100 < 85""",
        ),
        # 40 % passed (all 14 topics), the rest spread over 0..13 topics; 70 % of the passed hold a certificate
        (
            "student_progress",
            f"""INSERT INTO student_progress (id, user_id, course_id, school_id, profile_id, stage,
                topics_done, topic_scores, attempts, total_score, passed_at, last_progress_at)
            SELECT e.id, e.user_id, e.course_id, p.school_id, p.id,
                CASE WHEN e.passed_at IS NULL THEN 'learning' WHEN {h("e.id", 49979687)} % 100 < 70 THEN 'certified' ELSE 'passed' END,
                d.done, coalesce((SELECT json_agg(80 + (e.id + k) % 21) FROM generate_series(1, d.done) k), '[]'::json),
                d.done + (e.id % 4), e.total_score, e.passed_at, now() - ((e.id % 30) || ' days')::interval
            FROM enrollments e JOIN student_profiles p ON p.user_id = e.user_id
            CROSS JOIN LATERAL (SELECT CASE WHEN e.passed_at IS NOT NULL THEN 14 ELSE {h("e.id", 86028121)} % 14 END AS done) d""",
        ),
        (
            "certificates",
            """INSERT INTO certificates (id, user_id, course_id, serial, version, verify_token, status, channel,
                paper_status, holder_name, school_name, student_number, course_title, score, issued_on, issuers,
                verify_url, signature, issued_at)
            SELECT sp.id, sp.user_id, sp.course_id, 'XW2026' || lpad(sp.id::text, 8, '0'), 1, md5(sp.id::text) || sp.id,
                'valid', (ARRAY['electronic', 'paper', 'both'])[1 + sp.id % 3],
                CASE WHEN sp.id % 3 = 0 THEN NULL WHEN (sp.id * 23) % 100 < 60 THEN 'paid' ELSE 'awaiting_payment' END,
                '学生' || sp.id, '学校', 'S' || sp.id, '心理委员MOOC', sp.total_score, current_date, '["毫末"]'::json,
                'https://example.cn/verify/' || sp.id, 'sig', now()
            FROM student_progress sp WHERE sp.stage = 'certified'""",
        ),
        (
            "quiz_attempts",
            """INSERT INTO quiz_attempts (enrollment_id, user_id, round, topic_code, version_id, draw,
                started_at, submitted_at, answers, score, max_score, passed)
            SELECT sp.id, sp.user_id, 1, t.code, t.version_id, '[]'::json, sp.last_progress_at - interval '10 minutes',
                sp.last_progress_at, '{}'::json, 80 + (sp.id + t.position) % 21, 100, true
            FROM student_progress sp
            JOIN courses c ON c.id = sp.course_id
            JOIN course_versions v ON v.course_id = c.id AND v.number = c.current_version
            JOIN topics t ON t.version_id = v.id AND t.position <= sp.topics_done
            WHERE sp.school_id IN (1, 2)""",
        ),
    ]
    with db.engine.begin() as conn:
        for name, sql in steps:
            started = time.perf_counter()
            conn.execute(text(sql))
            timings[name] = time.perf_counter() - started
        for table in ("schools", "users", "student_profiles", "enrollments", "student_progress", "certificates"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
    from handlers.learning.school_progress import recount

    started = time.perf_counter()
    with db.sessions() as session:
        timings["counter_rows"] = recount(session)
        session.commit()
    timings["recount"] = time.perf_counter() - started
    started = time.perf_counter()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    timings["vacuum_analyze"] = time.perf_counter() - started
    return timings


def _admin_client(app: Any, school_id: int):  # type: ignore[no-untyped-def]
    from database import get_database
    from handlers.accounts.console import hash_password
    from models import ConsoleAccount
    from tests.console_helpers import PASSWORD, sign_in

    with get_database(app).sessions() as session:
        account = ConsoleAccount(
            username=f"bench_admin_{school_id}_{int(time.time())}",
            role="school_admin",
            display_name="校管理员",
            password_hash=hash_password(PASSWORD),
            school_id=school_id,
        )
        session.add(account)
        session.commit()
        account_id = account.id
    client = app.test_client()
    sign_in(client, app, account_id)
    return client


def _time(client: Any, path: str, repeats: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        assert client.get(path).status_code == 200, path
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, path
    samples.sort()
    return {"median_ms": statistics.median(samples), "p95_ms": samples[max(0, int(len(samples) * 0.95) - 1)],
            "min_ms": samples[0]}


def explain(app: Any, school_id: int) -> dict[str, str]:
    """EXPLAIN ANALYZE of the table's first page (all, a filter, a stage) for a school."""
    from database import get_database
    from handlers.schools import console

    plans = {}
    with get_database(app).sessions() as session:
        course_id = session.scalar(text("SELECT id FROM courses WHERE code = 'xinwei-mooc'"))
        cases = {"all": console.Filters(), "college": console.Filters(college=COLLEGES[3]),
                 "stage_learning": console.Filters(state="learning"),
                 "not_started": console.Filters(state="not_started"),
                 "stuck": console.Filters(state="stuck"),
                 "learning_and_college": console.Filters(state="learning", college=COLLEGES[3])}
        from sqlalchemy import func, select

        from models import StudentProgress as sp
        from models.base import utcnow
        for name, filters in cases.items():
            query, order = console.table_query(school_id, course_id, filters, utcnow())
            query = query.order_by(order).limit(51)
            if filters.state in console.STAGE_FILTERS:  # the page's first step: the progress index
                query = select(sp.profile_id).where(
                    sp.school_id == school_id, sp.course_id == course_id,
                    sp.stage == ("learning" if filters.state == "stuck" else filters.state)).order_by(
                    sp.profile_id).limit(console.STAGE_BATCH if filters.college else 51)
            compiled = query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
            rows = session.execute(text("EXPLAIN (ANALYZE, COSTS OFF) " + str(compiled))).scalars().all()
            plans[name] = "\n".join(rows)
        # The dashboard's one query that grows with the school: the stuck count (an index range).
        count = select(func.count()).select_from(sp).where(
            sp.school_id == school_id, sp.course_id == course_id, sp.stage == "learning",
            sp.last_progress_at < console.stuck_cutoff(utcnow(), console.STUCK_DAYS))
        compiled = count.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        plans["dashboard_stuck_count"] = "\n".join(session.execute(
            text("EXPLAIN (ANALYZE, COSTS OFF) " + str(compiled))).scalars().all())
    return plans


def measure(app: Any, repeats: int, warmup: int) -> dict[str, Any]:
    from database import get_database

    results: dict[str, Any] = {}
    with get_database(app).engine.connect() as conn:
        sizes = dict(conn.execute(text("SELECT school_id, count(*) FROM student_profiles WHERE school_id IN (1, 2) "
                                       "GROUP BY school_id")).all())
        deep = {s: conn.execute(text("SELECT id FROM student_profiles WHERE school_id = :s ORDER BY id "
                                     "OFFSET :o LIMIT 1"), {"s": s, "o": int(sizes[s] * 0.9)}).scalar() for s in (1, 2)}
        course = conn.execute(text("SELECT id FROM courses WHERE code = 'xinwei-mooc'")).scalar()
        someone = {s: conn.execute(text("SELECT profile_id FROM student_progress WHERE school_id = :s AND stage = "
                                        "'certified' LIMIT 1"), {"s": s}).scalar() for s in (1, 2)}
    for school, label in ((1, "big"), (2, "small")):
        client = _admin_client(app, school)
        pages = {
            "dashboard": f"/console/school/?course={course}",
            "table_first": f"/console/school/students?course={course}",
            "table_deep": f"/console/school/students?course={course}&after={deep[school]}",
            "table_filtered": f"/console/school/students?course={course}&state=learning&college={COLLEGES[3]}",
            "table_stuck": f"/console/school/students?course={course}&state=stuck&days=20",
            "detail": f"/console/school/students/{someone[school]}",
        }
        results[label] = {"students": sizes[school],
                          **{name: _time(client, path, repeats, warmup) for name, path in pages.items()}}
    return results


def verdicts(results: dict[str, Any]) -> list[str]:
    lines = []
    for page in ("dashboard", "table_first", "table_deep", "table_filtered", "table_stuck", "detail"):
        big, small = results["big"][page], results["small"][page]
        ratio = big["median_ms"] / small["median_ms"]
        target = page in ("dashboard", "table_first", "table_deep")
        ok = big["median_ms"] < TARGET_MEDIAN_MS and small["median_ms"] < TARGET_MEDIAN_MS and ratio <= TARGET_RATIO
        verdict = ("ok" if ok else "MISS") if target else "info"
        lines.append(
            f"{page:15} big {big['median_ms']:7.1f} ms (p95 {big['p95_ms']:6.1f})   "
            f"small {small['median_ms']:7.1f} ms (p95 {small['p95_ms']:6.1f})   big/small {ratio:4.2f}   {verdict}"
        )
    return lines


def run(students: int = 2_000_000, schools: int = 3_000, big: int = 40_000, small: int = 100, repeats: int = 50,
        warmup: int = 5, base_url: str = DEFAULT_PG_URL, keep: bool = False, plans: bool = True,
        database: str = DB_NAME, reuse: bool = False) -> dict[str, Any]:
    from app import create_app
    from database import get_database

    instance = tempfile.mkdtemp(prefix="bench-dashboard-")
    if reuse:  # measure again on a data set kept by an earlier --keep run
        url = make_url(base_url).set(database=database).render_as_string(hide_password=False)
        keep = True
    else:
        url = create_database(base_url, database)
    try:
        started = time.perf_counter()
        app = create_app({"DATABASE_URL": url, "XINWEI_ENV": "development", "INSTANCE_PATH": instance,
                          "TESTING": True})
        if reuse:
            timings: dict[str, float] = {"reused": 1.0}
        else:
            migrate(url)
            timings = generate(app, students, schools, big, small)
        timings["total_setup"] = time.perf_counter() - started
        with get_database(app).engine.connect() as conn:
            size = conn.execute(text("SELECT pg_size_pretty(pg_database_size(current_database()))")).scalar()
        results = measure(app, repeats, warmup)
        out: dict[str, Any] = {"students": students, "schools": schools, "setup_seconds": timings,
                               "database_size": size, "results": results}
        if plans:
            out["plans_big_school"] = explain(app, 1)
        get_database(app).dispose()
        return out
    finally:
        if not keep:
            drop_database(base_url, database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=2_000_000)
    parser.add_argument("--schools", type=int, default=3_000)
    parser.add_argument("--big", type=int, default=40_000, help="students of the big school")
    parser.add_argument("--small", type=int, default=100, help="students of the small school")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--db-url", default=DEFAULT_PG_URL)
    parser.add_argument("--keep", action="store_true", help=f"keep the database {DB_NAME}")
    parser.add_argument("--reuse", action="store_true", help="measure the kept database again (no generation)")
    args = parser.parse_args()
    out = run(args.students, args.schools, args.big, args.small, args.repeats, base_url=args.db_url, keep=args.keep,
              reuse=args.reuse)
    setup = out["setup_seconds"]
    print(f"data set: {out['students']:,} students, {out['schools']:,} schools, database {out['database_size']}")
    print("setup (s): " + ", ".join(f"{k} {v:.1f}" for k, v in setup.items() if k != "counter_rows"))
    print(f"big school {out['results']['big']['students']:,} students, small {out['results']['small']['students']:,}")
    print(f"targets: median < {TARGET_MEDIAN_MS:.0f} ms, big <= {TARGET_RATIO:.0f}x small "
          "(dashboard, first and deep table page)")
    for line in verdicts(out["results"]):
        print(line)
    for name, plan in out.get("plans_big_school", {}).items():
        print(f"\n-- EXPLAIN ANALYZE, big school, table '{name}':\n{plan}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"dashboard-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1, default=str))
    print(f"\nwritten {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
