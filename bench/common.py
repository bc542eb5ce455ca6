"""Shared bench harness: gunicorn, wrk over pre-built requests, fresh databases, the run loop, report, flags, profile scaffolding."""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.databases import drop_pg_database, migrate, recreate_pg_database, sqlite_url
from bench.report import machine, write_json
from bench.servers import ANCHOR, ANCHOR_WRK_CPUS, GunicornSettings, Server, gunicorn
from bench.settings import APP_TARGET, DATABASES, DEFAULT_PG_URL, FLOOR_TARGET, BenchError
from bench.wrk import RequestItem, WrkResult, run_wrk, write_lua, write_requests


@dataclass
class BenchOptions:
    """What every bench takes from its command line; a bench subclasses it for its own fields and defaults."""

    duration: int = 10  # seconds per measurement
    warmup: int = 2  # seconds of warm-up before each measurement (0: none)
    connections: int = 16
    wrk_threads: int = 2
    settings: GunicornSettings = field(default_factory=GunicornSettings.for_cores)
    dbs: Sequence[str] = DATABASES
    pg_url: str = DEFAULT_PG_URL  # server to create the bench database on
    pg_database: str = "xinwei_bench"
    requests: int | None = None  # distinct requests per measurement; None sizes them from the warm-up
    max_requests: int = 200_000
    write_json: bool = True
    app_target: str = APP_TARGET
    max_seconds: float = 600.0  # the whole run stops with an error past this
    wrk_cpus: str = ""  # taskset CPU list for wrk ("" = not pinned)
    variants: Sequence[str] = ("default",)  # settings to run under, one run each: default, anchor


VARIANTS = ("default", "anchor", "both")


def for_variant(opts: BenchOptions, variant: str) -> BenchOptions:
    """`opts` under one named settings variant: `default` as given, `anchor` the peers' settings."""
    if variant == "default":
        return replace(opts, variants=("default",))
    if variant == "anchor":
        return replace(opts, settings=ANCHOR, wrk_cpus=ANCHOR_WRK_CPUS, variants=("anchor",))
    raise BenchError(f"unknown settings variant {variant!r}")


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def check(self, step: str) -> None:
        if time.monotonic() > self.end:
            raise BenchError(f"bench exceeded {self.seconds:.0f}s (at {step})")


@contextmanager
def fresh_database(db: str, opts: BenchOptions, work: Path) -> Iterator[str]:
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


@dataclass
class Run:
    """What every measurement of one run shares: options, temp dir, Lua script, deadline, the floor's req/s."""

    opts: BenchOptions
    work: Path
    lua: Path
    deadline: Deadline
    floor_rps: float = 0.0

    def wrk(self, server: Server, path: Path, seconds: int, marker: str = "") -> WrkResult:
        return run_wrk(server, self.lua, path, duration=seconds, connections=self.opts.connections,
                       threads=self.opts.wrk_threads, marker=marker, cpus=self.opts.wrk_cpus)

    def size(self, warm: WrkResult | None) -> int:
        """Distinct requests to pre-build: enough for the run at three times the warm-up's pace (the
        first second of a warm-up is slow), never more than the floor could take."""
        opts = self.opts
        if opts.requests:
            return opts.requests
        ceiling = int(self.floor_rps * opts.duration * 1.2) + 1000
        pace = warm.rps if warm and warm.requests else self.floor_rps
        return max(2000, min(int(pace * opts.duration * 3) + 1000, ceiling, opts.max_requests))


def result_row(db: str, scenario: str, result: WrkResult, **extra: Any) -> dict[str, Any]:
    row = {"db": db, "scenario": scenario, **asdict(result), **extra}
    row.pop("raw", None)
    return row


def wrk_problems(result: WrkResult) -> list[str]:
    """What makes any measurement INVALID, whatever it sent."""
    problems = []
    if result.requests == 0:
        problems.append("no requests completed")
    if result.non200:
        problems.append(f"{result.non200} non-200 answers (first: {result.first_bad})")
    if result.socket_errors:
        problems.append(f"{result.socket_errors} socket errors/timeouts")
    return problems


def measure_floor(ctx: Run, requests: Iterable[RequestItem]) -> dict[str, Any]:
    """The bare app under the same gunicorn settings, sent `requests` (the bench's own, so the wire costs the same)."""
    opts = ctx.opts
    path = ctx.work / "floor.txt"
    write_requests(path, requests)
    with gunicorn(FLOOR_TARGET, opts.settings, log_dir=ctx.work, name="floor") as server:
        if opts.warmup:
            ctx.wrk(server, path, opts.warmup)
        ctx.deadline.check("floor")
        result = ctx.wrk(server, path, opts.duration)
    problems = wrk_problems(result)
    if result.success != result.requests:
        problems.append("floor answered something other than 'success'")
    return result_row("-", "floor", result, ratio=1.0, valid=not problems, problems=problems)


def verdict(row: dict[str, Any], target: float | None, p99_ms: float | None = None) -> None:
    """`ok`, `MISS ratio`/`MISS p99`/`MISS ratio+p99`, `INVALID`, or `info` where there is no target."""
    row["target_ratio"] = target
    if not row["valid"]:
        row["verdict"] = "INVALID"
    elif target is None:
        row["verdict"] = "info"
    else:
        misses = []
        if row["ratio"] is None or row["ratio"] < target:
            misses.append("ratio")
        if p99_ms is not None and row["p99_ms"] >= p99_ms:
            misses.append("p99")
        row["verdict"] = "MISS " + "+".join(misses) if misses else "ok"


Measure = Callable[[Server], dict[str, Any]]


def run_bench(
    opts: BenchOptions,
    *,
    bench: str,
    tmp_prefix: str,
    floor_requests: Callable[[Path], Iterable[RequestItem]],
    prepare: Callable[[Run, str, str], tuple[Mapping[str, str], Sequence[tuple[str, Measure]]]],
    judge: Callable[[dict[str, Any]], None],
    settings: Mapping[str, Any],
    targets: Mapping[str, Any],
    db_note: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure the floor, then on each database (fresh, migrated): `prepare(run, db, url)` gives the
    app's environment and the (scenario, measure) pairs to run against it under gunicorn. Each row
    gets its ratio to the floor and `judge`'s verdict. One database failing still reports the others.
    Returns the payload: settings (gunicorn, wrk, then `settings`, then the app), targets, rows, errors."""
    deadline = Deadline(opts.max_seconds)
    started = time.time()
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix=tmp_prefix) as tmp:
        work = Path(tmp)
        ctx = Run(opts, work, write_lua(work), deadline)
        log(f"floor: {FLOOR_TARGET} under gunicorn ({opts.settings.describe()}) ...")
        floor = measure_floor(ctx, floor_requests(work))
        rows.append(floor)
        ctx.floor_rps = floor_rps = floor["rps"]
        for db in opts.dbs:
            log(f"{db}: fresh database, migrate, {db_note}{opts.app_target} under gunicorn ...")
            try:
                with fresh_database(db, opts, work) as url:
                    env, scenarios = prepare(ctx, db, url)
                    with gunicorn(opts.app_target, opts.settings, env=env, log_dir=work, name=db) as server:
                        for scenario, measure in scenarios:
                            log(f"  {db} {scenario} ...")
                            row = measure(server)
                            row["ratio"] = round(row["rps"] / floor_rps, 3) if floor_rps else None
                            judge(row)
                            rows.append(row)
            except BenchError as exc:
                # One database failing (say, PostgreSQL not running) still reports the other.
                errors[db] = str(exc)
                log(f"  {db} FAILED: {exc}")
                deadline.check(db)
    return {
        "bench": bench,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": machine(),
        "settings": {
            "gunicorn": asdict(opts.settings),
            "wrk": {"connections": opts.connections, "threads": opts.wrk_threads,
                    "duration_s": opts.duration, "warmup_s": opts.warmup, "cpus": opts.wrk_cpus},
            "variant": opts.variants[0],
            **settings,
            "app_target": opts.app_target,
        },
        "targets": dict(targets),
        "rows": rows,
        "errors": errors,
    }


Arg = tuple[str, Mapping[str, Any]]


def parse_options(
    argv: Sequence[str] | None,
    defaults: BenchOptions,
    *,
    prog: str,
    doc: str | None,
    name: str,
    helps: Mapping[str, str],
    after_db: Sequence[Arg] = (),
    after_pg: Sequence[Arg] = (),
    lists: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    at_least_one: Sequence[str] = (),
) -> tuple[Any, argparse.Namespace]:
    """The flags every bench takes, plus its own (`after_db`, `after_pg`: placed there in --help).
    `helps` words the help of duration, warmup, requests and profile-requests. `lists`: comma-separated
    flags besides --db, as flag -> (options field, allowed values). `at_least_one`: int flags (and
    options fields) that must be >= 1. Returns `defaults` with the flags applied, and the namespace."""
    p = argparse.ArgumentParser(prog=prog, description=doc)
    p.add_argument("--duration", type=int, default=defaults.duration, help=helps["duration"])
    p.add_argument("--warmup", type=int, default=defaults.warmup, help=helps["warmup"])
    p.add_argument(
        "--connections", type=int, default=defaults.connections, help="wrk connections (default %(default)s)"
    )
    p.add_argument("--wrk-threads", type=int, default=defaults.wrk_threads, help="wrk threads (default %(default)s)")
    p.add_argument(
        "--worker-class", default=defaults.settings.worker_class, help="gunicorn worker class (default %(default)s)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=defaults.settings.workers,
        help="gunicorn workers (default 2 x cores + 1 = %(default)s)",
    )
    p.add_argument(
        "--threads", type=int, default=4, help="threads per worker for --worker-class gthread (default %(default)s)"
    )
    p.add_argument(
        "--settings", choices=VARIANTS, default="both",
        help="default: the flags above, unpinned; anchor: the peers' settings (2 gthread workers x 4 threads "
             "pinned to cpu 0, wrk pinned to cpu 1); both: one run each (default %(default)s)",
    )
    p.add_argument("--db", default=",".join(DATABASES), help="databases, comma-separated (default %(default)s)")
    for flag, kwargs in after_db:
        p.add_argument(flag, **kwargs)
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL),
                   help="PostgreSQL server to create the bench database on (env BENCH_PG_URL)")
    p.add_argument(
        "--pg-database", default=defaults.pg_database, help="dropped and recreated each run (default %(default)s)"
    )
    for flag, kwargs in after_pg:
        p.add_argument(flag, **kwargs)
    p.add_argument("--requests", type=int, default=None, help=helps["requests"])
    p.add_argument("--app-target", default=APP_TARGET, help="gunicorn app to bench (default %(default)s)")
    p.add_argument("--no-json", action="store_true", help=f"do not write bench/results/{name}-<timestamp>.json")
    p.add_argument("--profile", action="store_true", help="instead of wrk: in-process per-stage timings and cProfile")
    p.add_argument("--profile-requests", type=int, default=2000, help=helps["profile_requests"])
    args = p.parse_args(argv)
    chosen: dict[str, list[str]] = {}
    for flag, (key, allowed) in {"--db": ("dbs", DATABASES), **(lists or {})}.items():
        values = [v.strip() for v in getattr(args, flag[2:].replace("-", "_")).split(",") if v.strip()]
        if not values or set(values) - set(allowed):
            p.error(f"{flag} takes {', '.join(allowed)}")
        chosen[key] = values
    counted = ["--duration", "--connections", *(f"--{key}" for key in at_least_one)]
    if (args.duration < 1 or args.connections < 1 or args.warmup < 0
            or any(getattr(args, key) < 1 for key in at_least_one)):
        p.error(f"{', '.join(counted[:-1])} and {counted[-1]} must be >= 1, --warmup >= 0")
    opts = replace(defaults, duration=args.duration, warmup=args.warmup, connections=args.connections,
                   wrk_threads=args.wrk_threads,
                   settings=GunicornSettings(args.worker_class, args.workers, args.threads),
                   pg_url=args.pg_url, pg_database=args.pg_database, requests=args.requests,
                   write_json=not args.no_json, app_target=args.app_target,
                   variants=("default", "anchor") if args.settings == "both" else (args.settings,),
                   **chosen, **{key: getattr(args, key) for key in at_least_one})
    return opts, args


def bench_main(
    argv: Sequence[str] | None,
    name: str,
    parse_args: Callable[[Sequence[str] | None], tuple[Any, argparse.Namespace]],
    run: Callable[[Any], dict[str, Any]],
    report: Callable[[dict[str, Any]], str],
    profile: Callable[[Any, int], dict[str, Any]],
    miss_hint: str,
) -> int:
    """A bench's command line: --profile, or a run with its report and JSON; 1 if anything was INVALID or failed."""
    opts, args = parse_args(argv)
    if args.profile:
        results = profile(opts, args.profile_requests)
        if opts.write_json:
            print(f"\nJSON: {write_json(f'{name}-profile', results)}")
        return 0
    invalid = missed = False
    for variant in opts.variants:
        payload = run(for_variant(opts, variant))
        print(f"\n[{variant} settings]")
        print(report(payload))
        if opts.write_json:
            print(f"\nJSON: {write_json(f'{name}-{variant}', payload)}")
        missed = missed or any(r.get("verdict", "").startswith("MISS") for r in payload["rows"])
        invalid = invalid or bool(payload["errors"]) or any(not r["valid"] for r in payload["rows"])
    if missed:
        print("\n" + miss_hint)
    return 1 if invalid else 0


# --- smoke tests -----------------------------------------------------------------------


def _expect(condition: bool, what: Any) -> None:
    if not condition:
        raise AssertionError(what)


def smoke_run(
    options: Callable[..., BenchOptions],
    run: Callable[..., dict[str, Any]],
    *,
    pg_database: str,
    expect: set[str],
    **fields: Any,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """For the smoke tests: one run of a bench, about a second per row with one worker, on SQLite,
    or with TEST_DATABASE_URL set (the suite's PostgreSQL pass) on a database of its own there
    (`pg_database` plus a random suffix); `fields` are the bench's own options. Checks what any
    row must show (rows for the floor and the `expect`ed scenarios, all valid, real numbers, the
    floor all 'success') and returns the payload and the rows by scenario."""
    pg_url = os.environ.get("TEST_DATABASE_URL")
    opts = options(
        duration=1,  # wrk's shortest run
        warmup=0,
        connections=2,
        wrk_threads=1,
        settings=GunicornSettings("sync", 1),
        dbs=["postgresql"] if pg_url else ["sqlite"],
        write_json=False,
        max_seconds=120,
        **({"pg_url": pg_url, "pg_database": f"{pg_database}_{uuid.uuid4().hex[:8]}"} if pg_url else {}),
        **fields,
    )
    payload = run(opts, log=lambda _line: None)
    _expect(payload["errors"] == {}, payload["errors"])
    rows = {row["scenario"]: row for row in payload["rows"]}
    _expect(set(rows) == {"floor", *expect}, sorted(rows))
    for name, row in rows.items():
        _expect(row["valid"], (name, row["problems"]))
        _expect(row["requests"] > 0 and row["non200"] == 0 and row["socket_errors"] == 0, (name, row))
        _expect(isinstance(row["rps"], float) and row["rps"] > 0, (name, row["rps"]))
        _expect(row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"], (name, row["p50_ms"], row["p99_ms"]))
    _expect(rows["floor"]["success"] == rows["floor"]["requests"], rows["floor"])
    return payload, rows
