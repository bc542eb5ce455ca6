"""The heartbeat bench: signed-in students' POST /h5/api/heartbeat under gunicorn, as a ratio to the floor."""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.common import (
    DEFAULT_PG_URL,
    FLOOR_TARGET,
    REPO,
    BenchError,
    GunicornSettings,
    Server,
    WrkResult,
    app_env,
    gunicorn,
    http_post,
    machine,
    run_wrk,
    sqlite_url,
    table,
    write_json,
    write_lua,
    write_requests,
)
from bench.webhook import Deadline, fresh_database

APP_TARGET = "wsgi:app" if (REPO / "wsgi.py").exists() else "app:create_app()"
PATH = "/h5/api/heartbeat"
TARGET_RATIO = 0.50  # of the floor's req/s, measured in the same run
DATABASES = ("sqlite", "postgresql")
# Flask's jsonify is compact outside debug mode; an accepted beat's answer contains this.
ACCEPTED_MARKER = '"accepted":true'
# Below this share of accepted beats the run mostly measured refusals, not the real path.
MIN_ACCEPTANCE = 0.90
# Seconds of video each beat moves forward. The server allows elapsed x 2 + 3 s per beat,
# so 0.2 s is believed however close together one student's beats arrive.
STEP = 0.2
# Long enough that no session reaches its threshold (0.9 x 3600 s = 16200 beats each) during
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
class Options:
    duration: int = 10  # seconds measured per database
    warmup: int = 2  # seconds of warm-up before each measurement (0: none)
    connections: int = 16
    wrk_threads: int = 2
    settings: GunicornSettings = field(default_factory=GunicornSettings.for_cores)
    dbs: Sequence[str] = DATABASES
    pg_url: str = DEFAULT_PG_URL  # server to create the bench database on
    pg_database: str = "xinwei_bench_hb"
    students: int = 200  # each with a verified profile, an enrollment and one open watch session
    requests: int | None = None  # beats to pre-build for the measurement; None sizes them from the warm-up
    max_requests: int = 200_000
    write_json: bool = True
    app_target: str = APP_TARGET
    max_seconds: float = 300.0  # the whole run stops with an error past this


@dataclass(frozen=True)
class Student:
    user_id: int
    openid: str
    watch_id: int
    csrf: str
    cookie: str  # the whole Cookie header value: <session cookie name>=<signed session>


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
    from handlers import identity, learning, watching
    from handlers.catalog import load_catalog, parse_catalog
    from models import RosterEntry, School, User
    from models.base import utcnow
    from web.database import get_database

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
                grade="2024级", phone=f"137{i:08d}"))
            if profile.status != "verified":
                raise BenchError(f"student {i} not verified against the roster ({profile.status})")
            enrollment = learning.enroll(session, user.id, COURSE_CODE)
            watches.append(watching.start_watch(session, enrollment, TOPIC_CODE, now))
        session.commit()
        students = []
        for user, watch in zip(users, watches):
            csrf = secrets.token_hex(16)
            students.append(Student(user.id, user.openid, watch.id, csrf, sign_session(app, user.id, user.openid, csrf)))
    return students


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
            body = urlencode({"watch_id": s.watch_id, "seq": last_seq + r, "position": f"{position + r * STEP:.2f}",
                              "csrf_token": s.csrf})
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


def _wrk(server: Server, lua: Path, path: Path, opts: Options, seconds: int, marker: str = "") -> WrkResult:
    return run_wrk(server, lua, path, duration=seconds, connections=opts.connections, threads=opts.wrk_threads,
                   marker=marker)


def _size(opts: Options, warm: WrkResult | None, floor_rps: float) -> int:
    """Beats to pre-build: enough for the run at three times the warm-up's pace (its first
    second is slow), never more than the floor could take."""
    if opts.requests:
        return opts.requests
    ceiling = int(floor_rps * opts.duration * 1.2) + 1000
    pace = warm.rps if warm and warm.requests else floor_rps
    return max(2000, min(int(pace * opts.duration * 3) + 1000, ceiling, opts.max_requests))


def _rounds(requests: int, students: int) -> int:
    return -(-requests // students)


def _problems(result: WrkResult) -> list[str]:
    problems = []
    if result.requests == 0:
        problems.append("no requests completed")
    if result.non200:
        problems.append(f"{result.non200} non-200 answers (first: {result.first_bad})")
    if result.socket_errors:
        problems.append(f"{result.socket_errors} socket errors/timeouts")
    return problems


def _row(db: str, scenario: str, result: WrkResult, **extra: Any) -> dict[str, Any]:
    row = {"db": db, "scenario": scenario, **asdict(result), **extra}
    row.pop("raw", None)
    return row


def floor_request(secret_key: str, work: Path) -> tuple[str, bytes, dict[str, str]]:
    """A heartbeat exactly as the app gets it (same path, cookie size, body), for the floor."""
    app = make_app(sqlite_url(work), secret_key, work / "instance")  # connects lazily: never opened
    student = Student(1, "obench000000", 1, "0" * 32, "")
    student = replace(student, cookie=sign_session(app, student.user_id, student.openid, student.csrf))
    (line,) = beats([student], {1: (0, 0.0)}, 1)
    return line


def measure_floor(opts: Options, lua: Path, work: Path, secret_key: str, deadline: Deadline) -> dict[str, Any]:
    path = work / "floor.txt"
    write_requests(path, [floor_request(secret_key, work)])
    with gunicorn(FLOOR_TARGET, opts.settings, log_dir=work, name="floor") as server:
        if opts.warmup:
            _wrk(server, lua, path, opts, opts.warmup)
        deadline.check("floor")
        result = _wrk(server, lua, path, opts, opts.duration)
    problems = _problems(result)
    if result.success != result.requests:
        problems.append("floor answered something other than 'success'")
    return _row("-", "floor", result, ratio=1.0, valid=not problems, problems=problems)


def preflight(server: Server, student: Student, state: DbState) -> None:
    """One beat by hand: a 200 JSON answer saying accepted, so the cookie, CSRF token and
    watch session all work before anything is measured."""
    ((target, body, headers),) = beats([student], state.sessions, 1)
    status, answer = http_post(server, target, body, headers=headers)
    if status != 200:
        raise BenchError(f"pre-flight: status {status}: {answer[:200]!r}\n{server.log_tail()}")
    try:
        data = json.loads(answer)
    except ValueError as exc:
        raise BenchError(f"pre-flight: not JSON: {answer[:200]!r}") from exc
    if data.get("accepted") is not True or ACCEPTED_MARKER.encode() not in answer:
        raise BenchError(f"pre-flight: the beat was not accepted: {answer[:200]!r}")


def measure_heartbeat(server: Server, db: str, url: str, students: Sequence[Student], opts: Options, lua: Path,
                      work: Path, floor_rps: float, deadline: Deadline) -> dict[str, Any]:
    preflight(server, students[0], read_state(url))
    warm = None
    if opts.warmup:
        warm_path = work / f"{db}-warm.txt"
        state = read_state(url)  # the pre-flight's answer came after its commit: nothing in flight
        write_requests(warm_path, beats(students, state.sessions,
                                        _rounds(int(floor_rps * opts.warmup * 1.2) + 500, len(students))))
        warm = _wrk(server, lua, warm_path, opts, opts.warmup, ACCEPTED_MARKER)
    deadline.check(f"{db} heartbeat")
    path = work / f"{db}-heartbeat.txt"
    # Built from what is stored right now, so every student's first beat follows its last one.
    before = settled_state(url)
    built = write_requests(path, beats(students, before.sessions, _rounds(_size(opts, warm, floor_rps), len(students))))
    result = _wrk(server, lua, path, opts, opts.duration, ACCEPTED_MARKER)
    after = settled_state(url)
    recorded = after.seq_sum - before.seq_sum
    accepted = result.marked
    acceptance = round(accepted / result.requests, 4) if result.requests else 0.0
    problems = _problems(result)
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
    return _row(db, "heartbeat", result, built=built, resent=result.reused, accepted=accepted,
                refused=result.requests - accepted, acceptance=acceptance,
                accepted_pct=f"{acceptance * 100:.2f}%", first_refusal=result.first_unmarked,
                db_beats_recorded=recorded,
                db_beats_progressed=round((after.watched_sum - before.watched_sum) / STEP),
                warmup_acceptance=round(warm.marked / warm.requests, 4) if warm and warm.requests else None,
                valid=not problems, problems=problems)


def _students_for(opts: Options) -> int:
    # With a multiple of wrk's thread count, each student's beats all land in one thread
    # (threads take every n-th line), whose connections share one cursor: a student's beats
    # go out in seq order, about students / threads requests apart.
    threads = max(1, min(opts.wrk_threads, opts.connections))
    return -(-opts.students // threads) * threads


def run(opts: Options, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the floor, then the heartbeat on each database; return every row and the verdicts."""
    from web.database import get_database

    deadline = Deadline(opts.max_seconds)
    started = time.time()
    secret_key = secrets.token_hex(32)
    n_students = _students_for(opts)
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xinwei-bench-hb-")))
        lua = write_lua(work)
        log(f"floor: {FLOOR_TARGET} under gunicorn ({opts.settings.describe()}) ...")
        floor = measure_floor(opts, lua, work, secret_key, deadline)
        rows.append(floor)
        floor_rps = floor["rps"]
        for db in opts.dbs:
            log(f"{db}: fresh database, migrate, {n_students} students, {opts.app_target} under gunicorn ...")
            try:
                with fresh_database(db, opts, work) as url:  # type: ignore[arg-type]
                    instance = work / f"instance-{db}"
                    app = make_app(url, secret_key, instance)
                    try:
                        students = prepare_students(app, n_students)
                    finally:
                        get_database(app).dispose()
                    env = {**app_env(url), "SECRET_KEY": secret_key, "XINWEI_INSTANCE_PATH": str(instance)}
                    with gunicorn(opts.app_target, opts.settings, env=env, log_dir=work, name=db) as server:
                        log(f"  {db} heartbeat ...")
                        row = measure_heartbeat(server, db, url, students, opts, lua, work, floor_rps, deadline)
                row["ratio"] = round(row["rps"] / floor_rps, 3) if floor_rps else None
                _verdict(row)
                rows.append(row)
            except BenchError as exc:
                # One database failing (say, PostgreSQL not running) still reports the other.
                errors[db] = str(exc)
                log(f"  {db} FAILED: {exc}")
                deadline.check(db)
    return {
        "bench": "heartbeat",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": machine(),
        "settings": {
            "gunicorn": asdict(opts.settings),
            "wrk": {"connections": opts.connections, "threads": opts.wrk_threads,
                    "duration_s": opts.duration, "warmup_s": opts.warmup},
            "students": n_students,
            "step_s": STEP,
            "video_seconds": VIDEO_SECONDS,
            "app_target": opts.app_target,
        },
        "targets": {"ratio": TARGET_RATIO, "min_acceptance": MIN_ACCEPTANCE},
        "rows": rows,
        "errors": errors,
    }


def _verdict(row: dict[str, Any]) -> None:
    row["target_ratio"] = TARGET_RATIO
    if not row["valid"]:
        row["verdict"] = "INVALID"
    elif row["ratio"] is None or row["ratio"] < TARGET_RATIO:
        row["verdict"] = "MISS ratio"
    else:
        row["verdict"] = "ok"


COLUMNS = [
    ("db", "db"), ("scenario", "scenario"), ("rps", "req/s"), ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"), ("max_ms", "max ms"), ("requests", "requests"), ("non200", "non-200"),
    ("socket_errors", "sock err"), ("resent", "resent"), ("accepted_pct", "accepted"), ("cpu_busy", "cpu busy"),
    ("ratio", "x floor"), ("target_ratio", "target"), ("verdict", "verdict"),
]


def report(payload: dict[str, Any]) -> str:
    s = payload["settings"]
    lines = [
        f"heartbeat bench: POST {PATH}, {s['students']} signed-in students, +{s['step_s']}s per beat, "
        f"app {s['app_target']}; gunicorn {GunicornSettings(**s['gunicorn']).describe()}; "
        f"wrk {s['wrk']['connections']} connections, {s['wrk']['threads']} threads, "
        f"{s['wrk']['duration_s']}s per database (+{s['wrk']['warmup_s']}s warm-up); "
        f"{payload['machine']['cores']} cores",
        "",
        table(payload["rows"], COLUMNS),
        "",
        f"target: heartbeat >= {TARGET_RATIO:.2f} x floor; 'accepted' is the share of beats the server "
        f"accepted (below {MIN_ACCEPTANCE:.2f}: INVALID)",
    ]
    for row in payload["rows"]:
        if row["scenario"] == "heartbeat":
            lines.append(f"  {row['db']}: {row['accepted']} accepted, {row['refused']} refused"
                         + (f" (first: {row['first_refusal']})" if row["refused"] else "")
                         + f"; in the database last_seq rose by {row['db_beats_recorded']}, "
                         f"progress by {row['db_beats_progressed']} beats' worth")
        for problem in row.get("problems", []):
            lines.append(f"  {row['db']} {row['scenario']}: {problem}")
    for db, error in payload["errors"].items():
        lines.append(f"  {db}: FAILED: {error}")
    return "\n".join(lines)


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


@contextmanager
def _stage_timer(totals: dict[str, float], order: list[str]) -> Iterator[None]:
    """Wrap the steps of a heartbeat so its time splits into named parts (each inclusive);
    `order` receives the labels in the order a heartbeat meets them."""
    from flask.sessions import SecureCookieSessionInterface
    from sqlalchemy.orm import Session

    import handlers.watching as watching_mod
    import telemetry
    import web.auth as auth_mod
    import web.ops as ops_mod
    import web.training as training_mod
    from web.session_cookie import LazyCookieSessionInterface

    patches: list[tuple[object, str, object, bool, str]] = []

    def wrap(owner: object, name: str, label: str) -> None:
        had = name in vars(owner) if isinstance(owner, type) else name in getattr(owner, "__dict__", {})
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - t

        patches.append((owner, name, original, had, label))
        setattr(owner, name, timed)

    # In the order a heartbeat meets them; indented labels are inside the one above.
    wrap(ops_mod.RequestTelemetry, "__call__", "whole request (WSGI middleware down)")
    wrap(LazyCookieSessionInterface, "open_session", "  session cookie: open (verify + decode)")
    wrap(auth_mod, "_user_still_exists", "  login_required: user check (own reader session)")
    wrap(telemetry, "hash_openid", "  login_required: hash_openid")
    wrap(training_mod, "csrf_ok", "  csrf_ok (parses the form)")
    wrap(training_mod, "get_session", "  get_session (new ORM session)")
    wrap(watching_mod, "heartbeat", "  watching.heartbeat (SELECT FOR UPDATE, rules, flush)")
    wrap(Session, "flush", "    Session.flush (the UPDATE)")
    wrap(Session, "commit", "  Session.commit")
    wrap(training_mod, "jsonify", "  jsonify")
    wrap(SecureCookieSessionInterface, "save_session", "  session cookie: save (re-sign, Set-Cookie)")
    wrap(Session, "close", "  Session.close (both sessions)")
    wrap(ops_mod.log, "info", "  access log line")
    order.extend(label for _, _, _, _, label in patches)
    try:
        yield
    finally:
        for owner, name, original, had, _label in reversed(patches):
            if had:
                setattr(owner, name, original)
            else:
                delattr(owner, name)  # an inherited or class-level attribute: uncover it again


@contextmanager
def _statement_counter(app, counts: dict[str, int], sample: list[str] | None = None) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Count statements, transaction ends and (PostgreSQL) server round trips; keep the
    first few in order. `main` is the app's engine; SQLite's readers have an engine of
    their own (deferred BEGIN), PostgreSQL's share `main`."""
    from sqlalchemy import event

    from web.database import get_database

    database = get_database(app)
    engines = {"main": database.engine}
    reader = database.readers.kw["bind"]
    if reader is not database.engine:
        engines["reader"] = reader

    def note(key: str, text: str) -> None:
        counts[key] = counts.get(key, 0) + 1
        if sample is not None:
            sample.append(text)

    listeners: list[tuple[Any, str, Callable[..., None]]] = []
    for label, engine in engines.items():
        def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any, label: str = label) -> None:
            note(f"{label} statements", f"{label}: " + " ".join(statement.split())[:140])

        def on_begin(_conn: Any, label: str = label) -> None:
            # psycopg sends BEGIN by itself before the first statement; SQLite's shows as a statement.
            if engine.dialect.name != "sqlite":
                note(f"{label} begin", f"{label}: BEGIN")

        def on_commit(_conn: Any, label: str = label) -> None:
            note(f"{label} commit", f"{label}: COMMIT")

        def on_rollback(_conn: Any, label: str = label) -> None:
            note(f"{label} rollback", f"{label}: ROLLBACK")

        for name, fn in (("before_cursor_execute", on_execute), ("begin", on_begin), ("commit", on_commit),
                         ("rollback", on_rollback)):
            event.listen(engine, name, fn)
            listeners.append((engine, name, fn))
    patched = None
    if database.engine.dialect.name == "postgresql":
        import psycopg

        # One wait per command sent: BEGIN, each statement, COMMIT, ROLLBACK.
        original = psycopg.Connection.wait

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts["server round trips"] = counts.get("server round trips", 0) + 1
            return original(self, *args, **kwargs)

        psycopg.Connection.wait = counted  # type: ignore[method-assign]
        patched = (psycopg.Connection, original)
    try:
        yield
    finally:
        for engine, name, fn in listeners:
            event.remove(engine, name, fn)
        if patched:
            patched[0].wait = patched[1]  # type: ignore[method-assign]


def profile(opts: Options, count: int = 2000, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Per-heartbeat cost vs the floor app in-process (Flask test client, no gunicorn), split
    into stages, statements per beat, and cProfile's top functions."""
    from bench.floor_app import create_app as create_floor
    from web.database import get_database

    secret_key = secrets.token_hex(32)
    n_students = max(opts.students, 1)
    results: dict[str, Any] = {"count": count, "students": n_students}
    with tempfile.TemporaryDirectory(prefix="xinwei-profile-hb-") as tmp:
        work = Path(tmp)
        target, body, headers = floor_request(secret_key, work)
        floor_client = create_floor().test_client(use_cookies=False)
        for _ in range(200):
            floor_client.post(target, data=body, headers=headers)
        t = time.perf_counter()
        for _ in range(count):
            floor_client.post(target, data=body, headers=headers)
        floor_us = (time.perf_counter() - t) / count * 1e6
        results["floor_us"] = round(floor_us, 1)
        log(f"in-process floor (bare Flask, test client, the same heartbeat request): {floor_us:.0f} us/request")
        for db in opts.dbs:
            with fresh_database(db, opts, work) as url:  # type: ignore[arg-type]
                app = make_app(url, secret_key, work / f"instance-{db}")
                try:
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
                        t = time.perf_counter()
                        for _ in range(count):
                            client.get("/healthz")
                        healthz_us = (time.perf_counter() - t) / count * 1e6
                        one: list[str] = []
                        with _statement_counter(app, {}, one):
                            drive(1)
                        counts: dict[str, int] = {}
                        with _statement_counter(app, counts):
                            t = time.perf_counter()
                            drive(count)
                            total_us = (time.perf_counter() - t) / count * 1e6
                        totals: dict[str, float] = {}
                        order: list[str] = []
                        with _stage_timer(totals, order):
                            t = time.perf_counter()
                            drive(count)
                            timed_us = (time.perf_counter() - t) / count * 1e6
                        prof = cProfile.Profile()
                        prof.enable()
                        drive(count)
                        prof.disable()
                finally:
                    get_database(app).dispose()
            by_own, by_cum = io.StringIO(), io.StringIO()
            pstats.Stats(prof, stream=by_own).sort_stats("tottime").print_stats(18)
            pstats.Stats(prof, stream=by_cum).sort_stats("cumulative").print_stats(40)
            stages = {k: round(totals[k] / count * 1e6, 1) for k in order if k in totals}
            per_beat = {k: round(v / count, 2) for k, v in sorted(counts.items())}
            results[db] = {"us_per_request": round(total_us, 1), "x_floor_cost": round(total_us / floor_us, 2),
                           "healthz_us": round(healthz_us, 1), "stages_us": stages, "timed_us": round(timed_us, 1),
                           "statements_per_beat": per_beat, "one_beat_sql": one,
                           "cprofile_tottime": by_own.getvalue(), "cprofile_cumulative": by_cum.getvalue()}
            log(f"\n{db}: {total_us:.0f} us/heartbeat in-process ({total_us / floor_us:.1f}x the floor's); "
                f"GET /healthz on the same app: {healthz_us:.0f} us")
            log("  per heartbeat: " + ", ".join(f"{v:g} {k}" for k, v in per_beat.items()))
            log("  one heartbeat's SQL, in order:")
            for line in one:
                log(f"    {line}")
            log(f"  stages (us/heartbeat, inclusive, with timers: {timed_us:.0f} us total):")
            for name, us in stages.items():
                log(f"    {us:8.1f}  {name}")
            log("  cProfile, top by own time:\n" + _trim_stats(by_own.getvalue()))
            log("  cProfile, top by cumulative time:\n" + _trim_stats(by_cum.getvalue()))
    return results


def _trim_stats(text: str) -> str:
    keep, started = [], False
    for line in text.splitlines():
        if line.strip().startswith("ncalls"):
            started = True
        if started and line.strip():
            keep.append("    " + line.replace(str(Path(sys.prefix)), "<venv>").replace(str(REPO), "<repo>"))
    return "\n".join(keep)


# --- command line ------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[Options, argparse.Namespace]:
    defaults = Options()
    p = argparse.ArgumentParser(prog="python -m bench.heartbeat", description=__doc__)
    p.add_argument("--duration", type=int, default=defaults.duration, help="seconds per database (default %(default)s)")
    p.add_argument("--warmup", type=int, default=defaults.warmup, help="warm-up seconds (default %(default)s)")
    p.add_argument("--connections", type=int, default=defaults.connections, help="wrk connections (default %(default)s)")
    p.add_argument("--wrk-threads", type=int, default=defaults.wrk_threads, help="wrk threads (default %(default)s)")
    p.add_argument("--worker-class", default=defaults.settings.worker_class, help="gunicorn worker class (default %(default)s)")
    p.add_argument("--workers", type=int, default=defaults.settings.workers, help="gunicorn workers (default 2 x cores + 1 = %(default)s)")
    p.add_argument("--threads", type=int, default=4, help="threads per worker for --worker-class gthread (default %(default)s)")
    p.add_argument("--db", default=",".join(DATABASES), help="databases, comma-separated (default %(default)s)")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL),
                   help="PostgreSQL server to create the bench database on (env BENCH_PG_URL)")
    p.add_argument("--pg-database", default=defaults.pg_database, help="dropped and recreated each run (default %(default)s)")
    p.add_argument("--students", type=int, default=defaults.students,
                   help="signed-in students, each with one watch session (default %(default)s)")
    p.add_argument("--requests", type=int, default=None, help="beats to pre-build (default: sized from the warm-up)")
    p.add_argument("--app-target", default=APP_TARGET, help="gunicorn app to bench (default %(default)s)")
    p.add_argument("--no-json", action="store_true", help="do not write bench/results/heartbeat-<timestamp>.json")
    p.add_argument("--profile", action="store_true", help="instead of wrk: in-process per-stage timings and cProfile")
    p.add_argument("--profile-requests", type=int, default=2000, help="heartbeats per profiled pass (default %(default)s)")
    args = p.parse_args(argv)
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    if not dbs or set(dbs) - set(DATABASES):
        p.error(f"--db takes {', '.join(DATABASES)}")
    if args.duration < 1 or args.connections < 1 or args.warmup < 0 or args.students < 1:
        p.error("--duration, --connections and --students must be >= 1, --warmup >= 0")
    settings = GunicornSettings(args.worker_class, args.workers, args.threads)
    opts = replace(defaults, duration=args.duration, warmup=args.warmup, connections=args.connections,
                   wrk_threads=args.wrk_threads, settings=settings, dbs=dbs, pg_url=args.pg_url,
                   pg_database=args.pg_database, students=args.students, requests=args.requests,
                   write_json=not args.no_json, app_target=args.app_target)
    return opts, args


def main(argv: Sequence[str] | None = None) -> int:
    opts, args = parse_args(argv)
    if args.profile:
        results = profile(opts, args.profile_requests)
        if opts.write_json:
            print(f"\nJSON: {write_json('heartbeat-profile', results)}")
        return 0
    payload = run(opts)
    print()
    print(report(payload))
    if opts.write_json:
        print(f"\nJSON: {write_json('heartbeat', payload)}")
    if any(r.get("verdict", "").startswith("MISS") for r in payload["rows"]):
        print("\nThe target was missed: `python -m bench.heartbeat --profile` shows where a heartbeat's time goes.")
    invalid = payload["errors"] or any(not r["valid"] for r in payload["rows"])
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
