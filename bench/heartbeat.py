"""The heartbeat bench: signed-in students' POST /h5/api/heartbeat under gunicorn, as a ratio to the floor."""
from __future__ import annotations

import json
import logging
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench import common, databases, profiling, servers, wrk
from bench import report as bench_report
from bench.common import BenchOptions, Run
from bench.servers import Server
from bench.settings import BenchError
from models.base import utcnow

PATH = "/h5/api/heartbeat"
# Of the floor's req/s, measured in the same run, per database (the hot-path issue's targets).
TARGET_RATIO = {"sqlite": 0.70, "postgresql": 0.50}
P99_TARGET_MS = 50.0
# Flask's jsonify is compact outside debug mode; an accepted beat's answer contains this.
ACCEPTED_MARKER = '"accepted":true'
# Below this share of accepted beats the run mostly measured refusals, not the real path.
MIN_ACCEPTANCE = 0.90
# Seconds of video each beat moves forward. The watch clock credits 2 s of video per second of
# server time in total (handlers/learning/watching.py); with 200 students a student gets at most about
# 25 beats a second even at 5,000 beats/s, so 0.01 s a beat (0.25 s of video a second) is always
# believed and every beat takes the accepted path (read, judge, compare-and-set write).
STEP = 0.01
# Long enough that no session reaches its threshold (0.9 x 3600 s = 324,000 beats each) during
# a run: completing would change what a beat costs.
VIDEO_SECONDS = 3600
COURSE_CODE = "bench-course"
TOPIC_CODE = "t01"
FORM = "application/x-www-form-urlencoded"

# One course, one topic with a long video; the points must add up to 100 as for any course.
COURSE_TOML = f"""
[course]
code = "{COURSE_CODE}"
title = "压测课程"
description = "心跳压测用"
pass_mark = 60
topic_pass_percent = 60
on_topic_failed = "rewatch"
on_course_failed = "redo_all"
watch_threshold = 0.9

[[topics]]
code = "{TOPIC_CODE}"
title = "专题一"
summary = "概要"
[topics.video]
url = "https://cdn.example.cn/bench.mp4"
seconds = {VIDEO_SECONDS}
[[topics.questions]]
code = "q1"
kind = "single"
points = 100
text = "题目"
options = [{{ key = "A", text = "甲" }}, {{ key = "B", text = "乙" }}]
answer = ["A"]
explanation = "解析"
"""


@dataclass
class Options(BenchOptions):
    """The shared options (durations per database) plus the students; its own database and time limit."""

    pg_database: str = "xinwei_bench_hb"
    students: int = 200  # each with a verified profile, an enrollment and one open watch session
    max_seconds: float = 300.0  # the whole run stops with an error past this


@dataclass(frozen=True)
class Student:
    user_id: int
    openid: str
    watch_id: int
    csrf: str
    cookie: str  # the whole Cookie header value: <session cookie name>=<signed session>
    token: str = ""  # the beat token POST /h5/api/watch returns (web/fast_heartbeat.py)


# --- the students ---------------------------------------------------------------------


def make_app(database_url: str, secret_key: str, instance: Path):  # type: ignore[no-untyped-def]
    """The app as gunicorn builds it from the bench's environment: same database, same SECRET_KEY."""
    from app import create_app

    return create_app({"DATABASE_URL": database_url, "XINWEI_ENV": "development", "SECRET_KEY": secret_key,
                       "INSTANCE_PATH": str(instance)})


def sign_session(app, user_id: int, openid: str, csrf: str) -> str:  # type: ignore[no-untyped-def]
    """A Cookie header for what a finished WeChat OAuth leaves in the session (web/auth.py
    oauth_callback: permanent, user_id, openid, login_at, csrf), signed by the app's own
    session interface. Permanent matters: Flask then re-signs and sends the cookie back on
    every answer, as it does for real students."""
    payload = {"_permanent": True, "user_id": user_id, "openid": openid, "login_at": int(time.time()), "csrf": csrf}
    value = app.session_interface.get_signing_serializer(app).dumps(payload)
    return f"{app.session_interface.get_cookie_name(app)}={value}"


def prepare_students(app, count: int) -> list[Student]:  # type: ignore[no-untyped-def]
    """In-process, not through HTTP: the catalog, a school with a roster, `count` students
    verified against it, enrolled, each with an open watch session; committed."""
    from database import get_database
    from handlers.accounts import identity
    from handlers.catalog.loader import load_catalog, parse_catalog
    from handlers.learning import enrolment, watching
    from models import RosterEntry, School, User

    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(COURSE_TOML, "bench.toml"), "bench.toml")
        school = School(name="压测大学")
        users = [User(openid=f"obench{i:06d}") for i in range(count)]
        session.add(school)
        session.add_all(users)
        session.flush()
        session.add_all(RosterEntry(school_id=school.id, student_number=f"B{i:06d}", real_name=_name(i))
                        for i in range(count))
        session.flush()
        now = utcnow()
        watches = []
        for i, user in enumerate(users):
            profile = identity.submit_profile(session, user.id, identity.ProfileForm(
                school_id=school.id, real_name=_name(i), college="心理学院", student_number=f"B{i:06d}",
                grade="2024级", phone=f"137{i:08d}"), now=utcnow())
            if profile.status != "verified":
                raise BenchError(f"student {i} not verified against the roster ({profile.status})")
            enrollment = enrolment.enroll(session, user.id, COURSE_CODE)
            watches.append(watching.start_watch(session, enrollment, TOPIC_CODE, now))
        session.commit()
        students = []
        for user, watch in zip(users, watches):
            csrf = secrets.token_hex(16)
            students.append(Student(user.id, user.openid, watch.id, csrf, sign_session(app, user.id, user.openid, csrf),
                                    beat_token(app, user.id, user.openid, watch.id)))
    return students


def beat_token(app, user_id: int, openid: str, watch_id: int) -> str:  # type: ignore[no-untyped-def]
    """The token /h5/api/watch hands the player for this watch session, by the same function."""
    from web import fast_heartbeat

    return fast_heartbeat.issue(app, user_id, openid, watch_id, int(time.time()) + fast_heartbeat.TOKEN_SECONDS)


def _name(i: int) -> str:
    # Names must be letters (no digits): one CJK character per student after a common prefix.
    return "压测" + chr(0x4E00 + i)


def beats(students: Sequence[Student], state: Mapping[int, tuple[int, float]], rounds: int,
          ) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """`rounds` beats per student, continuing from each session's stored (last_seq, position):
    seq + 1 and STEP seconds further each. Round-robin over students, so consecutive requests
    (and so concurrent ones) are for different students and different rows."""
    for r in range(1, rounds + 1):
        for s in students:
            last_seq, position = state[s.watch_id]
            # As the player sends it: the beat token instead of the CSRF token (and, as any
            # same-site fetch, the session cookie too, though the fast path does not read it).
            body = urlencode({"watch_id": s.watch_id, "seq": last_seq + r, "position": f"{position + r * STEP:.2f}",
                              "beat": s.token})
            yield PATH, body.encode(), {"Content-Type": FORM, "Cookie": s.cookie}


@dataclass(frozen=True)
class DbState:
    """Every watch session as stored: what the next beats continue from, and what the last run did."""

    sessions: dict[int, tuple[int, float]]  # watch_id -> (last_seq, position)
    seq_sum: int
    watched_sum: float
    completed: int
    inactive: int


def read_state(database_url: str) -> DbState:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT id, last_seq, position, watched_seconds, completed_at IS NOT NULL, active "
                "FROM watch_sessions")).all()
    finally:
        engine.dispose()
    return DbState(
        sessions={r[0]: (int(r[1]), float(r[2])) for r in rows},
        seq_sum=sum(int(r[1]) for r in rows),
        watched_sum=sum(float(r[3]) for r in rows),
        completed=sum(1 for r in rows if r[4]),
        inactive=sum(1 for r in rows if not r[5]),
    )


def settled_state(database_url: str, deadline_s: float = 5.0) -> DbState:
    """The stored state once the server is done. When wrk stops, it closes connections whose
    beats gunicorn has already read (or will still read from the socket): those are processed
    after the client left. A file built before they land would reuse their seqs (refused as
    stale); a count taken before would miss them."""
    state = read_state(database_url)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        time.sleep(0.2)
        again = read_state(database_url)
        if again.seq_sum == state.seq_sum:
            return again
        state = again
    raise BenchError(f"beats still being processed {deadline_s:.0f}s after wrk stopped")


# --- measuring ------------------------------------------------------------------------


def _rounds(requests: int, students: int) -> int:
    return -(-requests // students)


def floor_request(secret_key: str, work: Path) -> tuple[str, bytes, dict[str, str]]:
    """A heartbeat exactly as the app gets it (same path, cookie size, body), for the floor."""
    app = make_app(databases.sqlite_url(work), secret_key, work / "instance")  # connects lazily: never opened
    student = Student(1, "obench000000", 1, "0" * 32, "")
    student = replace(student, cookie=sign_session(app, student.user_id, student.openid, student.csrf),
                      token=beat_token(app, student.user_id, student.openid, student.watch_id))
    (line,) = beats([student], {1: (0, 0.0)}, 1)
    return line


def preflight(server: Server, student: Student, state: DbState) -> None:
    """One beat by hand: a 200 JSON answer saying accepted, so the cookie, CSRF token and
    watch session all work before anything is measured."""
    ((target, body, headers),) = beats([student], state.sessions, 1)
    status, answer = servers.http_post(server, target, body, headers=headers)
    if status != 200:
        raise BenchError(f"pre-flight: status {status}: {answer[:200]!r}\n{server.log_tail()}")
    try:
        data = json.loads(answer)
    except ValueError as exc:
        raise BenchError(f"pre-flight: not JSON: {answer[:200]!r}") from exc
    if data.get("accepted") is not True or ACCEPTED_MARKER.encode() not in answer:
        raise BenchError(f"pre-flight: the beat was not accepted: {answer[:200]!r}")


def measure_heartbeat(ctx: Run, server: Server, db: str, url: str, students: Sequence[Student]) -> dict[str, Any]:
    opts = ctx.opts
    preflight(server, students[0], read_state(url))
    warm = None
    if opts.warmup:
        warm_path = ctx.work / f"{db}-warm.txt"
        state = read_state(url)  # the pre-flight's answer came after its commit: nothing in flight
        rounds = _rounds(int(ctx.floor_rps * opts.warmup * 1.2) + 500, len(students))
        wrk.write_requests(warm_path, beats(students, state.sessions, rounds))
        warm = ctx.wrk(server, warm_path, opts.warmup, ACCEPTED_MARKER)
    ctx.deadline.check(f"{db} heartbeat")
    path = ctx.work / f"{db}-heartbeat.txt"
    # Built from what is stored right now, so every student's first beat follows its last one.
    before = settled_state(url)
    built = wrk.write_requests(path, beats(students, before.sessions, _rounds(_budget(ctx, warm), len(students))))
    result = ctx.wrk(server, path, opts.duration, ACCEPTED_MARKER)
    after = settled_state(url)
    recorded = after.seq_sum - before.seq_sum
    accepted = result.marked
    acceptance = round(accepted / result.requests, 4) if result.requests else 0.0
    problems = common.wrk_problems(result)
    if result.reused:
        problems.append(f"{result.reused} beats re-sent after {built} ran out (stale seq): raise --requests")
    if acceptance < MIN_ACCEPTANCE:
        problems.append(f"only {accepted} of {result.requests} beats accepted (first refusal: {result.first_unmarked})")
    # Each student's seqs are consecutive and sent in order, so the rise of its last_seq is
    # how many of its beats the server processed: at least every completed request, plus at
    # most one in flight per connection when wrk stopped, plus one: wrk calls request() once
    # before the run to check it, so the first thread's first beat is skipped (a seq gap).
    if not result.reused and not result.requests <= recorded <= result.requests + opts.connections + 1:
        problems.append(f"last_seq rose by {recorded} for {result.requests} requests: the heartbeat path did not run")
    if after.completed or after.inactive:
        problems.append(f"{after.completed} sessions completed, {after.inactive} inactive: not the steady path")
    return common.result_row(
        db,
        "heartbeat",
        result,
        built=built,
        resent=result.reused,
        accepted=accepted,
        refused=result.requests - accepted,
        acceptance=acceptance,
        accepted_pct=f"{acceptance * 100:.2f}%",
        first_refusal=result.first_unmarked,
        db_beats_recorded=recorded,
        db_beats_progressed=round((after.watched_sum - before.watched_sum) / STEP),
        warmup_acceptance=round(warm.marked / warm.requests, 4) if warm and warm.requests else None,
        valid=not problems,
        problems=problems,
    )


def _budget(ctx: Run, warm: Any) -> int:
    """Beats to pre-build for the run: what the floor could take in the duration, with a margin (no
    path is faster than the floor), never less than the warm-up's pace suggests. Sizing from the
    warm-up alone ran out on PostgreSQL, whose first warm-up second is slow (the pool filling):
    the run then re-sent stale beats and was INVALID."""
    opts = ctx.opts
    if opts.requests:
        return opts.requests
    return min(max(int(ctx.floor_rps * opts.duration * 1.3) + 2000, ctx.size(warm)), opts.max_requests)


def _students_for(opts: Options) -> int:
    # With a multiple of wrk's thread count, each student's beats all land in one thread
    # (threads take every n-th line), whose connections share one cursor: a student's beats
    # go out in seq order, about students / threads requests apart.
    threads = max(1, min(opts.wrk_threads, opts.connections))
    return -(-opts.students // threads) * threads


def run(opts: Options, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the floor, then the heartbeat on each database; return every row and the verdicts."""
    from database import get_database

    secret_key = secrets.token_hex(32)
    n_students = _students_for(opts)

    def prepare(ctx: Run, db: str, url: str) -> tuple[dict[str, str], list[tuple[str, common.Measure]]]:
        instance = ctx.work / f"instance-{db}"
        app = make_app(url, secret_key, instance)
        try:
            students = prepare_students(app, n_students)
        finally:
            get_database(app).dispose()
        env = {**databases.app_env(url), "SECRET_KEY": secret_key, "XINWEI_INSTANCE_PATH": str(instance)}
        return env, [("heartbeat", lambda server: measure_heartbeat(ctx, server, db, url, students))]

    return common.run_bench(
        opts, bench="heartbeat", tmp_prefix="xinwei-bench-hb-",
        floor_requests=lambda work: [floor_request(secret_key, work)],
        prepare=prepare,
        judge=lambda row: common.verdict(row, TARGET_RATIO.get(row["db"]), P99_TARGET_MS),
        settings={"students": n_students, "step_s": STEP, "video_seconds": VIDEO_SECONDS},
        targets={"ratio": TARGET_RATIO, "p99_ms": P99_TARGET_MS, "min_acceptance": MIN_ACCEPTANCE},
        db_note=f"{n_students} students, ",
        log=log,
    )


COLUMNS = bench_report.columns(("accepted_pct", "accepted"))
TARGETS = (f"target: heartbeat >= {TARGET_RATIO['sqlite']:.2f} x floor on SQLite, "
           f">= {TARGET_RATIO['postgresql']:.2f} on PostgreSQL, p99 < {P99_TARGET_MS:.0f} ms; "
           f"'accepted' is the share of beats the server accepted (below {MIN_ACCEPTANCE:.2f}: INVALID)")


def _notes(row: Mapping[str, Any]) -> list[str]:
    if row["scenario"] != "heartbeat":
        return []
    return [f"  {row['db']}: {row['accepted']} accepted, {row['refused']} refused"
            + (f" (first: {row['first_refusal']})" if row["refused"] else "")
            + f"; in the database last_seq rose by {row['db_beats_recorded']}, "
            f"progress by {row['db_beats_progressed']} beats' worth"]


def report(payload: dict[str, Any]) -> str:
    s = payload["settings"]
    what = f"heartbeat bench: POST {PATH}, {s['students']} signed-in students, +{s['step_s']}s per beat"
    return bench_report.report(payload, what=what, per="database", cols=COLUMNS, targets=TARGETS, notes=_notes)


# --- profile: where a heartbeat's time goes, in-process ------------------------------


@contextmanager
def _production_logging(path: Path) -> Iterator[None]:
    """The root logger as wsgi.py sets it up (one access line per heartbeat), writing to a
    file instead of stderr: the line's cost is part of the path, its text is not wanted."""
    import telemetry

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    telemetry.configure_logging(False, "INFO")
    with open(path, "a", encoding="utf-8") as stream:
        root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])


def _stages() -> list[tuple[object, str, str]]:
    """The steps of a heartbeat, timed so its time splits into named parts (each inclusive), in
    the order a heartbeat meets them; indented labels are inside the one above."""
    from flask.sessions import SecureCookieSessionInterface
    from sqlalchemy.orm import Session

    import handlers.learning.watching as watching_mod
    import telemetry
    import web.auth as auth_mod
    import web.fast_heartbeat as fast_mod
    import web.ops as ops_mod
    import web.training as training_mod
    from models.prepared import PreparedStatement
    from web.session_cookie import LazyCookieSessionInterface

    return [
        (ops_mod.RequestTelemetry, "__call__", "whole request (WSGI middleware down)"),
        # The fast path (beats carrying a beat token), in front of Flask:
        (fast_mod.FastHeartbeat, "__call__", "  fast path: whole (in front of Flask)"),
        (fast_mod, "parse_qsl", "    parse the form"),
        (fast_mod, "verify", "    beat token: verify (HMAC, expiry)"),
        (fast_mod, "_user_still_exists", "    user check (cached)"),
        (PreparedStatement, "first", "    the two statements (SELECT, then the CAS UPDATE)"),
        (fast_mod, "answer_body", "    JSON answer"),
        # The Flask view (beats without a token):
        (LazyCookieSessionInterface, "open_session", "  session cookie: open (verify + decode)"),
        (auth_mod, "_user_still_exists", "  login_required: user check (own reader session)"),
        (telemetry, "hash_openid", "  login_required: hash_openid"),
        (training_mod, "csrf_ok", "  csrf_ok (parses the form)"),
        (training_mod, "get_session", "  get_session (new ORM session)"),
        (watching_mod, "heartbeat", "  watching.heartbeat (both statements, the rules)"),
        (Session, "flush", "    Session.flush (the UPDATE)"),
        (Session, "commit", "  Session.commit"),
        (training_mod, "jsonify", "  jsonify"),
        (SecureCookieSessionInterface, "save_session", "  session cookie: save (re-sign, Set-Cookie)"),
        (Session, "close", "  Session.close (both sessions)"),
        (ops_mod.log, "info", "  access log line"),
    ]


def profile(opts: Options, count: int = 2000, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Per-heartbeat cost vs the floor app in-process (Flask test client, no gunicorn), split
    into stages, statements per beat, and cProfile's top functions."""
    secret_key = secrets.token_hex(32)
    n_students = max(opts.students, 1)
    results: dict[str, Any] = {"count": count, "students": n_students}
    with tempfile.TemporaryDirectory(prefix="xinwei-profile-hb-") as tmp:
        work = Path(tmp)
        floor_us = profiling.profile_floor(floor_request(secret_key, work), count, log, ", the same heartbeat request")
        results["floor_us"] = round(floor_us, 1)
        for db in opts.dbs:
            def make(url: str, db: str = db):  # type: ignore[no-untyped-def]
                return make_app(url, secret_key, work / f"instance-{db}")

            with profiling.profiled_app(db, opts, work, make) as (url, app):
                students = prepare_students(app, n_students)
                client = app.test_client(use_cookies=False)
                state = read_state(url)
                todo = iter(beats(students, state.sessions, _rounds(200 + 3 * count, n_students) + 1))

                def drive(n: int) -> None:
                    for _ in range(n):
                        path, data, hdrs = next(todo)
                        resp = client.post(path, data=data, headers=hdrs)
                        if resp.status_code != 200 or ACCEPTED_MARKER.encode() not in resp.data:
                            raise BenchError(f"profile {db}: {resp.status_code} {resp.data[:200]!r}")

                with _production_logging(work / f"access-{db}.log"):
                    drive(200)  # warm caches, compile statements, open pooled connections

                    def healthz() -> None:
                        for _ in range(count):
                            client.get("/healthz")

                    healthz_us = profiling.us_per_call(healthz, count)
                    one: list[str] = []
                    with profiling.statement_counter(app, {}, one):
                        drive(1)
                    counts: dict[str, int] = {}
                    with profiling.statement_counter(app, counts):
                        total_us = profiling.us_per_call(lambda: drive(count), count)
                    totals: dict[str, float] = {}
                    stage_list = _stages()
                    with profiling.stage_timer(totals, stage_list):
                        timed_us = profiling.us_per_call(lambda: drive(count), count)
                    prof = profiling.cprofiled(lambda: drive(count))
            by_own, by_cum = profiling.top_stats(prof, "tottime", 18), profiling.top_stats(prof, "cumulative", 40)
            stages = {label: round(totals[label] / count * 1e6, 1) for *_, label in stage_list if label in totals}
            per_beat = {k: round(v / count, 2) for k, v in sorted(counts.items())}
            results[db] = {"us_per_request": round(total_us, 1), "x_floor_cost": round(total_us / floor_us, 2),
                           "healthz_us": round(healthz_us, 1), "stages_us": stages, "timed_us": round(timed_us, 1),
                           "statements_per_beat": per_beat, "one_beat_sql": one,
                           "cprofile_tottime": by_own, "cprofile_cumulative": by_cum}
            log(f"\n{db}: {total_us:.0f} us/heartbeat in-process ({total_us / floor_us:.1f}x the floor's); "
                f"GET /healthz on the same app: {healthz_us:.0f} us")
            log("  per heartbeat: " + ", ".join(f"{v:g} {k}" for k, v in per_beat.items()))
            log("  one heartbeat's SQL, in order:")
            for line in one:
                log(f"    {line}")
            log(f"  stages (us/heartbeat, inclusive, with timers: {timed_us:.0f} us total):")
            for name, us in stages.items():
                log(f"    {us:8.1f}  {name}")
            log("  cProfile, top by own time:\n" + profiling.trim_stats(by_own))
            log("  cProfile, top by cumulative time:\n" + profiling.trim_stats(by_cum))
    return results


# --- command line ------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[Options, Any]:
    defaults = Options()
    return common.parse_options(
        argv, defaults, prog="python -m bench.heartbeat", doc=__doc__, name="heartbeat",
        helps={"duration": "seconds per database (default %(default)s)",
               "warmup": "warm-up seconds (default %(default)s)",
               "requests": "beats to pre-build (default: sized from the warm-up)",
               "profile_requests": "heartbeats per profiled pass (default %(default)s)"},
        after_pg=[("--students", {"type": int, "default": defaults.students,
                                  "help": "signed-in students, each with one watch session (default %(default)s)"})],
        at_least_one=["students"],
    )


def main(argv: Sequence[str] | None = None) -> int:
    hint = "The target was missed: `python -m bench.heartbeat --profile` shows where a heartbeat's time goes."
    return common.bench_main(argv, "heartbeat", parse_args, run, report, profile, hint)


if __name__ == "__main__":
    sys.exit(main())
