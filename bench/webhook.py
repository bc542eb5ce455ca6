"""The /wechat bench: signed CLICK "FAQ" events, plain and safe mode, under gunicorn, as ratios to the floor."""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.common import (
    DEFAULT_PG_URL,
    FLOOR_TARGET,
    REPO,
    BenchError,
    GunicornSettings,
    Server,
    WrkResult,
    app_env,
    count_rows,
    drop_pg_database,
    gunicorn,
    http_post,
    machine,
    migrate,
    recreate_pg_database,
    run_wrk,
    sqlite_url,
    table,
    write_json,
    write_lua,
    write_requests,
)

# The production entry point (logging configured, as gunicorn runs it), else the bare factory.
APP_TARGET = "wsgi:app" if (REPO / "wsgi.py").exists() else "app:create_app()"
MENU_KEY = "FAQ"  # a CLICK answered with a text reply and no other writes: the webhook's own cost
TARGET_RATIO = {"plain": 0.60, "safe": 0.50}  # of the floor's req/s, measured in the same run
P99_TARGET_MS = 50.0
DATABASES = ("sqlite", "postgresql")
SCENARIOS = ("plain", "safe", "duplicate")
EVENTS_TABLE = "inbound_events"


@dataclass
class Options:
    duration: int = 10  # seconds per measured scenario
    warmup: int = 2  # seconds of warm-up before each measured scenario (0: none)
    connections: int = 16
    wrk_threads: int = 2
    settings: GunicornSettings = field(default_factory=GunicornSettings.for_cores)
    dbs: Sequence[str] = DATABASES
    scenarios: Sequence[str] = SCENARIOS
    pg_url: str = DEFAULT_PG_URL  # server to create the bench database on
    pg_database: str = "xinwei_bench"
    requests: int | None = None  # distinct requests per scenario; None sizes them from the warm-up
    max_requests: int = 200_000
    duplicates: int = 64  # distinct events re-sent over and over in the duplicate scenario
    write_json: bool = True
    app_target: str = APP_TARGET
    max_seconds: float = 600.0  # the whole run stops with an error past this


def wechat_side():  # type: ignore[no-untyped-def]
    """WeChat's side for the dev account the app runs with (XINWEI_ENV=development)."""
    from config import DEV_SECRETS
    from wechat.simulate import WeChatSide

    return WeChatSide(DEV_SECRETS["WECHAT_TOKEN"], DEV_SECRETS["WECHAT_ENCODING_AES_KEY"], DEV_SECRETS["WECHAT_APP_ID"])


def click_deliveries(side, mode: str, count: int, tag: str) -> Iterator[tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    """`count` distinct CLICK FAQ deliveries, signed now: one openid each, so no two share a dedup key."""
    now = int(time.time())
    for i in range(count):
        delivery = side.deliver(side.event(f"o{tag}{i:08d}", "CLICK", MENU_KEY, created=now), mode=mode, timestamp=now)
        yield "/wechat?" + delivery.query, delivery.body


def preflight(server: Server, side, mode: str, tag: str) -> None:  # type: ignore[no-untyped-def]
    """One delivery by hand: the reply must open (and, in safe mode, be sealed) and be the FAQ."""
    from handlers.guide import FAQ

    (target, body), = click_deliveries(side, mode, 1, tag)
    status, answer = http_post(server, target, body)
    if status != 200:
        raise BenchError(f"pre-flight {mode}: status {status}: {answer[:200]!r}\n{server.log_tail()}")
    if mode == "safe" and b"<Encrypt>" not in answer:
        raise BenchError("pre-flight safe: the reply is not encrypted")
    fields = side.open_reply(answer)
    if not fields or fields.get("Content") != FAQ:
        raise BenchError(f"pre-flight {mode}: not the FAQ reply: {answer[:200]!r}")


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def check(self, step: str) -> None:
        if time.monotonic() > self.end:
            raise BenchError(f"bench exceeded {self.seconds:.0f}s (at {step})")


def _row(db: str, scenario: str, result: WrkResult, **extra: Any) -> dict[str, Any]:
    row = {"db": db, "scenario": scenario, **asdict(result), **extra}
    row.pop("raw", None)
    return row


def _wrk(server: Server, lua: Path, path: Path, opts: Options, seconds: int) -> WrkResult:
    return run_wrk(server, lua, path, duration=seconds, connections=opts.connections, threads=opts.wrk_threads)


def _size(opts: Options, warm: WrkResult | None, floor_rps: float) -> int:
    """Distinct requests to pre-build: enough for the run at three times the warm-up's pace (the
    first second of a warm-up is slow), never more than the floor could take."""
    if opts.requests:
        return opts.requests
    ceiling = int(floor_rps * opts.duration * 1.2) + 1000
    pace = warm.rps if warm and warm.requests else floor_rps
    return max(2000, min(int(pace * opts.duration * 3) + 1000, ceiling, opts.max_requests))


def measure_floor(opts: Options, lua: Path, work: Path, side, deadline: Deadline) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    # The same request the webhook gets in plain mode, so wrk and the wire cost the same.
    path = work / "floor.txt"
    write_requests(path, click_deliveries(side, "plain", 1, "floor"))
    with gunicorn(FLOOR_TARGET, opts.settings, log_dir=work, name="floor") as server:
        if opts.warmup:
            _wrk(server, lua, path, opts, opts.warmup)
        deadline.check("floor")
        result = _wrk(server, lua, path, opts, opts.duration)
    problems = _problems(result)
    if result.success != result.requests:
        problems.append("floor answered something other than 'success'")
    return _row("-", "floor", result, ratio=1.0, valid=not problems, problems=problems)


def _problems(result: WrkResult) -> list[str]:
    problems = []
    if result.requests == 0:
        problems.append("no requests completed")
    if result.non200:
        problems.append(f"{result.non200} non-200 answers (first: {result.first_bad})")
    if result.socket_errors:
        problems.append(f"{result.socket_errors} socket errors/timeouts")
    return problems


def measure_distinct(
    server: Server, mode: str, db: str, url: str, opts: Options, lua: Path, work: Path, side,  # type: ignore[no-untyped-def]
    floor_rps: float, run_tag: str, deadline: Deadline,
) -> dict[str, Any]:
    """Every request a new event, so every one runs dedup insert, handler, reply, commit."""
    tag = f"{run_tag}{db[0]}{mode[0]}"
    preflight(server, side, mode, tag + "p")
    warm = None
    if opts.warmup:
        warm_path = work / f"{db}-{mode}-warm.txt"
        write_requests(warm_path, click_deliveries(side, mode, int(floor_rps * opts.warmup * 1.2) + 500, tag + "w"))
        warm = _wrk(server, lua, warm_path, opts, opts.warmup)
    deadline.check(f"{db} {mode}")
    path = work / f"{db}-{mode}.txt"
    # Built right before the run: the webhook refuses timestamps older than its replay window.
    built = write_requests(path, click_deliveries(side, mode, _size(opts, warm, floor_rps), tag + "m"))
    before = count_rows(url, EVENTS_TABLE)
    result = _wrk(server, lua, path, opts, opts.duration)
    rows = count_rows(url, EVENTS_TABLE) - before
    problems = _problems(result)
    if result.reused:
        problems.append(f"{result.reused} requests re-sent after {built} ran out (duplicates): raise --requests")
    if result.xml != result.requests:
        problems.append(f"only {result.xml} of {result.requests} answers carried a reply")
    if mode == "safe" and result.sealed != result.xml:
        problems.append(f"{result.xml - result.sealed} safe-mode replies were not encrypted")
    # Each completed request must have run the handler; requests still in flight when wrk
    # stopped may add a few rows more (at most one per connection).
    if not result.reused and not result.requests <= rows <= result.requests + opts.connections:
        problems.append(f"{rows} dedup rows for {result.requests} requests: the handler path did not run")
    return _row(db, mode, result, built=built, rows_added=rows, resent=result.reused, valid=not problems,
                problems=problems)


def measure_duplicates(
    server: Server, db: str, url: str, opts: Options, lua: Path, work: Path, side, run_tag: str,  # type: ignore[no-untyped-def]
    deadline: Deadline,
) -> dict[str, Any]:
    """The same events re-sent (WeChat's retries): answered from the stored reply, handler skipped."""
    seeds = list(click_deliveries(side, "plain", opts.duplicates, f"{run_tag}{db[0]}d"))
    for target, body in seeds:
        status, answer = http_post(server, target, body)
        if status != 200 or not answer.startswith(b"<xml>"):
            raise BenchError(f"seeding duplicates: status {status}: {answer[:200]!r}")
    path = work / f"{db}-duplicate.txt"
    write_requests(path, seeds)
    if opts.warmup:
        _wrk(server, lua, path, opts, min(opts.warmup, 1))
    deadline.check(f"{db} duplicate")
    before = count_rows(url, EVENTS_TABLE)
    result = _wrk(server, lua, path, opts, opts.duration)
    rows = count_rows(url, EVENTS_TABLE) - before
    problems = _problems(result)
    if result.xml != result.requests:
        problems.append(f"only {result.xml} of {result.requests} answers carried the stored reply")
    if rows:
        problems.append(f"{rows} new dedup rows: a duplicate ran the handler")
    return _row(db, "duplicate", result, rows_added=rows, valid=not problems, problems=problems)


@contextmanager
def fresh_database(db: str, opts: Options, work: Path) -> Iterator[str]:
    """A migrated, empty database: a SQLite file in the run's temp dir, or a recreated PostgreSQL one."""
    if db == "sqlite":
        folder = work / "sqlite"
        folder.mkdir()
        url = sqlite_url(folder)
        migrate(url)
        yield url
        return
    if db != "postgresql":
        raise BenchError(f"unknown database {db!r}")
    url = recreate_pg_database(opts.pg_url, opts.pg_database)
    try:
        migrate(url)
        yield url
    finally:
        drop_pg_database(opts.pg_url, opts.pg_database)


def run(opts: Options, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the floor, then each database's scenarios; return every row and the verdicts."""
    deadline = Deadline(opts.max_seconds)
    side = wechat_side()
    run_tag = secrets.token_hex(3)
    started = time.time()
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="xinwei-bench-")))
        lua = write_lua(work)
        log(f"floor: {FLOOR_TARGET} under gunicorn ({opts.settings.describe()}) ...")
        floor = measure_floor(opts, lua, work, side, deadline)
        rows.append(floor)
        floor_rps = floor["rps"]
        for db in opts.dbs:
            log(f"{db}: fresh database, migrate, {opts.app_target} under gunicorn ...")
            try:
                with fresh_database(db, opts, work) as url, gunicorn(
                    opts.app_target, opts.settings, env=app_env(url), log_dir=work, name=db
                ) as server:
                    for scenario in opts.scenarios:
                        log(f"  {db} {scenario} ...")
                        if scenario == "duplicate":
                            row = measure_duplicates(server, db, url, opts, lua, work, side, run_tag, deadline)
                        else:
                            row = measure_distinct(
                                server, scenario, db, url, opts, lua, work, side, floor_rps, run_tag, deadline
                            )
                        row["ratio"] = round(row["rps"] / floor_rps, 3) if floor_rps else None
                        _verdict(row)
                        rows.append(row)
            except BenchError as exc:
                # One database failing (say, PostgreSQL not running) still reports the other.
                errors[db] = str(exc)
                log(f"  {db} FAILED: {exc}")
                deadline.check(db)
    return {
        "bench": "webhook",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": machine(),
        "settings": {
            "gunicorn": asdict(opts.settings),
            "wrk": {"connections": opts.connections, "threads": opts.wrk_threads,
                    "duration_s": opts.duration, "warmup_s": opts.warmup},
            "menu_key": MENU_KEY,
            "app_target": opts.app_target,
        },
        "targets": {"ratio": TARGET_RATIO, "p99_ms": P99_TARGET_MS},
        "rows": rows,
        "errors": errors,
    }


def _verdict(row: dict[str, Any]) -> None:
    target = TARGET_RATIO.get(row["scenario"])
    row["target_ratio"] = target
    if not row["valid"]:
        row["verdict"] = "INVALID"
    elif target is None:
        row["verdict"] = "info"
    else:
        misses = []
        if row["ratio"] is None or row["ratio"] < target:
            misses.append("ratio")
        if row["p99_ms"] >= P99_TARGET_MS:
            misses.append("p99")
        row["verdict"] = "MISS " + "+".join(misses) if misses else "ok"


COLUMNS = [
    ("db", "db"), ("scenario", "scenario"), ("rps", "req/s"), ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"), ("max_ms", "max ms"), ("requests", "requests"), ("non200", "non-200"),
    ("socket_errors", "sock err"), ("resent", "resent"), ("cpu_busy", "cpu busy"), ("ratio", "x floor"), ("target_ratio", "target"),
    ("verdict", "verdict"),
]


def report(payload: dict[str, Any]) -> str:
    s = payload["settings"]
    lines = [
        f"webhook bench: POST /wechat, CLICK {s['menu_key']}, app {s['app_target']}; gunicorn {GunicornSettings(**s['gunicorn']).describe()}; "
        f"wrk {s['wrk']['connections']} connections, {s['wrk']['threads']} threads, "
        f"{s['wrk']['duration_s']}s per scenario (+{s['wrk']['warmup_s']}s warm-up); "
        f"{payload['machine']['cores']} cores",
        "",
        table(payload["rows"], COLUMNS),
        "",
        f"targets: plain >= {TARGET_RATIO['plain']:.2f} x floor, safe >= {TARGET_RATIO['safe']:.2f} x floor, "
        f"p99 < {P99_TARGET_MS:.0f} ms; duplicate is for information (re-sent events, handler skipped)",
    ]
    for row in payload["rows"]:
        for problem in row.get("problems", []):
            lines.append(f"  {row['db']} {row['scenario']}: {problem}")
    for db, error in payload["errors"].items():
        lines.append(f"  {db}: FAILED: {error}")
    return "\n".join(lines)


# --- profile: where a webhook request's time goes, in-process ------------------------


@contextmanager
def _stage_timer(totals: dict[str, float]) -> Iterator[None]:
    """Wrap the webhook's stages so each request's time splits into named parts (inclusive)."""
    from sqlalchemy.orm import Session

    import wechat.dedup as dedup_mod
    import wechat.webhook as webhook_mod
    from wechat.crypto import MessageCrypto
    from wechat.router import Router

    patches: list[tuple[object, str, object]] = []

    def wrap(owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - t

        patches.append((owner, name, original))
        setattr(owner, name, timed)

    wrap(webhook_mod, "_check_query", "query signature + replay window")
    wrap(webhook_mod, "parse_xml", "XML parse")
    wrap(webhook_mod, "to_inbound", "to_inbound")
    wrap(webhook_mod, "signature_holds", "msg_signature")
    wrap(MessageCrypto, "decrypt", "AES decrypt")
    wrap(MessageCrypto, "encrypt", "AES encrypt")
    wrap(webhook_mod, "sign", "reply signature")
    wrap(webhook_mod, "get_session", "get_session")
    wrap(webhook_mod, "deliver", "dedup.deliver (all of it)")
    wrap(Session, "flush", "  ORM flush (insert + update)")
    wrap(Router, "dispatch", "  router + handler")
    wrap(dedup_mod, "render", "  render reply XML")
    wrap(Session, "commit", "session.commit")
    try:
        yield
    finally:
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


def profile(opts: Options, count: int = 2000, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Per-request cost of the webhook vs the floor app in-process (Flask test client, no gunicorn),
    split into stages, plus cProfile's top functions: where to look when a target is missed."""
    from app import create_app
    from bench.floor_app import create_app as create_floor

    side = wechat_side()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="xinwei-profile-") as tmp:
        work = Path(tmp)
        floor_client = create_floor().test_client()
        sample = list(click_deliveries(side, "plain", 1, "pf"))[0]
        for _ in range(200):
            floor_client.post(sample[0], data=sample[1], content_type="text/xml")
        t = time.perf_counter()
        for _ in range(count):
            floor_client.post(sample[0], data=sample[1], content_type="text/xml")
        floor_us = (time.perf_counter() - t) / count * 1e6
        results["floor_us"] = round(floor_us, 1)
        log(f"in-process floor (bare Flask, test client): {floor_us:.0f} us/request")
        for db in opts.dbs:
            with fresh_database(db, opts, work) as url:
                app = create_app({"DATABASE_URL": url, "XINWEI_ENV": "development"})
                client = app.test_client()
                for mode in ("plain", "safe"):
                    tag = f"{db[0]}{mode[0]}"
                    reqs = list(click_deliveries(side, mode, 3 * count + 200, "prof" + tag))
                    for target, body in reqs[:200]:  # warm caches, compile statements
                        client.post(target, data=body, content_type="text/xml")

                    def drive(batch: Sequence[tuple[str, bytes]]) -> None:
                        for target, body in batch:
                            resp = client.post(target, data=body, content_type="text/xml")
                            if resp.status_code != 200 or not resp.data.startswith(b"<xml>"):
                                raise BenchError(f"profile {db} {mode}: {resp.status_code} {resp.data[:100]!r}")

                    t = time.perf_counter()
                    drive(reqs[200 : 200 + count])
                    total_us = (time.perf_counter() - t) / count * 1e6
                    totals: dict[str, float] = {}
                    with _stage_timer(totals):
                        t = time.perf_counter()
                        drive(reqs[200 + count : 200 + 2 * count])
                        timed_us = (time.perf_counter() - t) / count * 1e6
                    prof = cProfile.Profile()
                    prof.enable()
                    drive(reqs[200 + 2 * count : 200 + 3 * count])
                    prof.disable()
                    out = io.StringIO()
                    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
                    stages = {k: round(v / count * 1e6, 1) for k, v in totals.items()}
                    key = f"{db}/{mode}"
                    results[key] = {"us_per_request": round(total_us, 1), "x_floor_cost": round(total_us / floor_us, 2),
                                    "stages_us": stages, "timed_us": round(timed_us, 1), "cprofile_top": out.getvalue()}
                    log(f"\n{key}: {total_us:.0f} us/request in-process ({total_us / floor_us:.1f}x the floor's); "
                        f"stages (us/request, inclusive, measured with timers: {timed_us:.0f} us total):")
                    for name, us in sorted(stages.items(), key=lambda kv: -kv[1]):
                        log(f"    {us:8.1f}  {name}")
                    log("  cProfile, top by own time:\n" + _trim_stats(out.getvalue()))
                get_db = __import__("web.database", fromlist=["get_database"]).get_database
                get_db(app).dispose()
    return results


def _trim_stats(text: str) -> str:
    keep, started = [], False
    for line in text.splitlines():
        if line.strip().startswith("ncalls"):
            started = True
        if started and line.strip():
            keep.append("    " + line.replace(str(Path(sys.prefix)), "<venv>"))
    return "\n".join(keep)


# --- command line ------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[Options, argparse.Namespace]:
    defaults = Options()
    p = argparse.ArgumentParser(prog="python -m bench.webhook", description=__doc__)
    p.add_argument("--duration", type=int, default=defaults.duration, help="seconds per scenario (default %(default)s)")
    p.add_argument("--warmup", type=int, default=defaults.warmup, help="warm-up seconds per scenario (default %(default)s)")
    p.add_argument("--connections", type=int, default=defaults.connections, help="wrk connections (default %(default)s)")
    p.add_argument("--wrk-threads", type=int, default=defaults.wrk_threads, help="wrk threads (default %(default)s)")
    p.add_argument("--worker-class", default=defaults.settings.worker_class, help="gunicorn worker class (default %(default)s)")
    p.add_argument("--workers", type=int, default=defaults.settings.workers, help="gunicorn workers (default 2 x cores + 1 = %(default)s)")
    p.add_argument("--threads", type=int, default=4, help="threads per worker for --worker-class gthread (default %(default)s)")
    p.add_argument("--db", default=",".join(DATABASES), help="databases, comma-separated (default %(default)s)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="scenarios, comma-separated (default %(default)s)")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL),
                   help="PostgreSQL server to create the bench database on (env BENCH_PG_URL)")
    p.add_argument("--pg-database", default=defaults.pg_database, help="dropped and recreated each run (default %(default)s)")
    p.add_argument("--requests", type=int, default=None, help="distinct requests per scenario (default: sized from the warm-up)")
    p.add_argument("--app-target", default=APP_TARGET, help="gunicorn app to bench (default %(default)s)")
    p.add_argument("--no-json", action="store_true", help="do not write bench/results/webhook-<timestamp>.json")
    p.add_argument("--profile", action="store_true", help="instead of wrk: in-process per-stage timings and cProfile")
    p.add_argument("--profile-requests", type=int, default=2000, help="requests per profiled pass (default %(default)s)")
    args = p.parse_args(argv)
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for name, chosen, allowed in (("--db", dbs, DATABASES), ("--scenarios", scenarios, SCENARIOS)):
        if not chosen or set(chosen) - set(allowed):
            p.error(f"{name} takes {', '.join(allowed)}")
    if args.duration < 1 or args.connections < 1 or args.warmup < 0:
        p.error("--duration and --connections must be >= 1, --warmup >= 0")
    settings = GunicornSettings(args.worker_class, args.workers, args.threads)
    opts = replace(defaults, duration=args.duration, warmup=args.warmup, connections=args.connections,
                   wrk_threads=args.wrk_threads, settings=settings, dbs=dbs, scenarios=scenarios,
                   pg_url=args.pg_url, pg_database=args.pg_database, requests=args.requests,
                   write_json=not args.no_json, app_target=args.app_target)
    return opts, args


def main(argv: Sequence[str] | None = None) -> int:
    opts, args = parse_args(argv)
    if args.profile:
        results = profile(opts, args.profile_requests)
        if opts.write_json:
            print(f"\nJSON: {write_json('webhook-profile', results)}")
        return 0
    payload = run(opts)
    print()
    print(report(payload))
    if opts.write_json:
        print(f"\nJSON: {write_json('webhook', payload)}")
    misses = [r for r in payload["rows"] if r.get("verdict", "").startswith("MISS")]
    if misses:
        print("\nA target was missed: `python -m bench.webhook --profile` shows where a request's time goes.")
    invalid = payload["errors"] or any(not r["valid"] for r in payload["rows"])
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
