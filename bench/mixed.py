"""The mixed-load bench: heartbeats, webhook events and H5 pages in the capacity plan's proportions, open-loop, CPU split by process.

One gunicorn host (the anchor settings: 2 gthread workers x 4 threads pinned to cpu 0) on a fresh
PostgreSQL database with Redis, sent a fixed total rate split across the routes by MIX. Requests go
out at their scheduled times whatever the server is doing, and each one's latency runs from the
time it was due to the end of its answer, so queueing counts (no coordinated omission). The
generator is this process: asyncio streams, HTTP/1.1 keep-alive, pinned to cpu 1.

Over the measured window it reads from /proc the CPU time of the gunicorn master and its workers,
of the PostgreSQL processes, and of the generator, and reports CPU ms per request for each: what
docs/capacity.md quotes instead of its estimates. `--find-max` steps the rate up until a route's
p99 reaches 50 ms or errors appear; the highest passing rate is the per-host figure.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import http.client
import math
import multiprocessing
import os
import random
import re
import resource
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from bench import common, databases, heartbeat, servers, webhook
from bench import report as bench_report
from bench.common import BenchOptions, Deadline
from bench.heartbeat import Student
from bench.servers import ANCHOR, ANCHOR_WRK_CPUS, GunicornSettings, Server
from bench.settings import DEFAULT_PG_URL, REPO, BenchError

# Shares of the requests one web host gets at the evening peak (docs/capacity.md, "The peaks"):
# - heartbeat: 30,000 students playing, one beat per 15 s, is 2,000 beats/s: the bulk of it.
# - click: menu taps, 167/s on average in the minute after a push, in bursts of ~500/s; at a
#   total of ~2,350/s (2,000 / 0.85) 0.08 is ~190/s, the average with part of a burst.
# - text: "a few per second" (students write far less than they tap); 0.01 (~23/s) is generous.
# - page: H5 page views are not in the plan. A watcher loads the home, course and topic pages
#   around each ~15-minute topic: 30,000 x ~4 pages / 900 s is ~130/s, 0.06 of the total.
MIX: dict[str, float] = {"heartbeat": 0.85, "click": 0.08, "text": 0.01, "page": 0.06}
ROUTES = tuple(MIX)
LABELS = {"heartbeat": f"POST {heartbeat.PATH}", "click": f"POST /wechat CLICK {webhook.MENU_KEY}",
          "text": "POST /wechat text message", "page": "GET H5 pages (home, course, topic)"}
# The pages a signed-in student loads, as the server finally answers them: /h5/progress redirects
# to the course page, so the course page is requested directly.
# The pages are those of the real course (content/courses/xinwei-mooc.toml: 14 topics, a pool of
# 50 questions), loaded beside the heartbeat bench's one-topic course: a page's cost grows with
# the catalog it shows, and the tiny course would understate it.
PAGE_COURSE = REPO / "content" / "courses" / "xinwei-mooc.toml"
PAGE_COURSE_CODE = "xinwei-mooc"
PAGES = ("/h5/", f"/h5/courses/{PAGE_COURSE_CODE}", f"/h5/courses/{PAGE_COURSE_CODE}/topics/t01")
# Android WeChat's browser: the home page shows what it shows inside WeChat.
USER_AGENT = "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 Mobile Safari/537.36 MicroMessenger/8.0.47"
P99_TARGET_MS = 50.0
# A route's p99 is judged only over at least this many answers in the window: over fewer, it is
# the slowest answer, and one request the machine's other work delayed decided a whole step (it
# did: a single 54 ms page out of 36 failed 50 req/s, with cpu 0 17 % busy). Errors always count.
MIN_JUDGED = 100
REDIS_URL = "redis://127.0.0.1:6379/12"
# Each student beats about once a second at the highest rate of the run: its beats are then far
# apart compared with any latency that passes the target, so two of them are never in flight at
# once (they could arrive out of seq order and be refused as stale). Preparing a student costs
# ~23 ms on PostgreSQL, so the bench does not prepare the 15 s a real player's period would need.
BEAT_INTERVAL_S = 1.0
MIN_BEAT_INTERVAL_S = 0.5  # below this (too few students for the rate) the bench refuses to run
MIN_STUDENTS, MAX_STUDENTS = 20, 3000
# A beat moves the position by the wall time since the student's last one: a player at 1x. The
# watch clock credits 2x (handlers/learning/watching.py), so every beat is believed.
PLAY_RATE = 1.0
PAGE_STUDENTS = 100  # students who also load pages (each first visited /h5/ once, as a browser)
# The schedule is INVALID when the generator ends further behind than this.
MAX_LAG_MS = 50.0
# A reused keep-alive connection idle longer than this is closed and a new one opened: gunicorn's
# gthread worker closes idle connections after its keepalive (2 s), and a request written into
# a connection the server is closing would fail for a reason that is not the app's.
IDLE_CLOSE_S = 1.0
EVENTS_TABLE = webhook.EVENTS_TABLE
SETTLE_S = 30.0
ARRIVALS = ("poisson", "even")


@dataclass
class Options(BenchOptions):
    """The shared options, with the anchor settings by default, plus the load's own."""

    duration: int = 20  # measured seconds (per step with --find-max)
    warmup: int = 3  # seconds at the same mix before each measurement, not counted
    connections: int = 64  # the generator's connection pool
    settings: GunicornSettings = ANCHOR
    dbs: Sequence[str] = ("postgresql",)
    pg_database: str = "xinwei_bench_mixed"
    max_seconds: float = 300.0
    gen_cpus: str = ANCHOR_WRK_CPUS  # the generator's CPUs ("" = not pinned); used with >= 2 cores
    # Requests per second, all routes together. The plan's figure for one core: a 4-core host must
    # carry the whole evening peak (~2,350/s) when the other host is lost, i.e. ~590/s per core;
    # the anchor settings give the app one core.
    rate: float = 600.0
    mix: Mapping[str, float] = field(default_factory=lambda: dict(MIX))
    students: int | None = None  # None: sized from the highest rate (BEAT_INTERVAL_S)
    redis: bool = True
    arrivals: str = "poisson"
    timeout_s: float = 10.0  # per request, from its scheduled time
    seed: int | None = None
    find_max: bool = False
    # The anchor settings held ~170 requests/s of this mix on the 2-core dev machine; rates
    # grow by a factor from start_rate (50, 75, 110, 170, 255, ...: ten steps reach 2,000), then
    # `refine` halvings between the last pass and the first failure narrow it to ~10 %.
    start_rate: float = 50.0
    rate_factor: float = 1.5
    max_rate: float = 2000.0  # the students are sized for this
    refine: int = 2


# --- CPU, from /proc ----------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")
# A backend's title: "postgres: 15/main: <user> <database> 127.0.0.1(43210) idle" (or [local]).
_CLIENT = re.compile(r"\d+\.\d+\.\d+\.\d+\(\d+\)|\[local\]|::1\(\d+\)")


def _stat(pid: int) -> tuple[str, int, float, float] | None:
    """comm, ppid, own CPU seconds (utime + stime, all threads), reaped children's (cutime + cstime)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    head, _, tail = raw.rpartition(")")
    fields = tail.split()
    # fields[0] is the state (field 3 of stat(5)): utime is field 14, so fields[11].
    return (head.partition("(")[2], int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK,
            (int(fields[13]) + int(fields[14])) / CLK_TCK)


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class CpuSample:
    at: float
    groups: dict[str, dict[int, float]]  # group -> pid -> CPU seconds
    reaped: dict[str, float]  # group -> CPU of children already exited, as their parent counts it
    generator: float
    cores: dict[str, tuple[int, int]]  # "cpu0" -> (busy ticks, total ticks)


def cpu_sample(master_pid: int, database: str | None, generator: float) -> CpuSample:
    """Every process of interest, grouped: `app` (the gunicorn master and its descendants),
    `db` (PostgreSQL: `database`'s backends and the server's background processes), `db_other`
    (backends of other databases: the server is shared with other work on this machine);
    `generator` is the load generator's CPU seconds, read by the caller in its own process."""
    table: dict[int, tuple[str, int, float, float]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = stat
    groups: dict[str, dict[int, float]] = {"app": {}, "db": {}, "db_other": {}}
    reaped = {"app": 0.0, "db": 0.0}
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    todo = [master_pid] if master_pid in table else []
    while todo:
        pid = todo.pop()
        groups["app"][pid] = table[pid][2]
        todo.extend(children.get(pid, []))
    if master_pid in table:
        reaped["app"] = table[master_pid][3]
    for pid, (comm, ppid, own, dead) in table.items():
        if not comm.startswith("postgres") or pid in groups["app"]:
            continue
        title = _title(pid)
        words = title.split()
        if database is not None and database in words:
            groups["db"][pid] = own
        elif database is None or _CLIENT.search(title):
            groups["db_other"][pid] = own  # (with SQLite, all of PostgreSQL is someone else's)
        else:
            groups["db"][pid] = own  # the postmaster, WAL writer, checkpointer, autovacuum: shared
            if not table.get(ppid, ("",))[0].startswith("postgres"):
                reaped["db"] += dead  # the postmaster: backends that exited count here
    return CpuSample(time.monotonic(), groups, reaped, generator, _core_ticks())


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _core_ticks() -> dict[str, tuple[int, int]]:
    cores = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        name, *values = line.split()
        ticks = [int(v) for v in values[:8]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        cores[name] = (sum(ticks) - idle, sum(ticks))
    return cores


def cpu_split(before: CpuSample, after: CpuSample) -> dict[str, Any]:
    """CPU seconds per group between two samples: a process that appeared in between counts
    whole (it started in the window); one that exited counts through its parent's reaped time."""
    seconds = {}
    for group, now in after.groups.items():
        then = before.groups[group]
        seconds[group] = sum(cpu - then.get(pid, 0.0) for pid, cpu in now.items())
    for group in after.reaped:
        seconds[group] += after.reaped[group] - before.reaped[group]
    seconds["generator"] = after.generator - before.generator
    busy = {}
    for name, (b1, t1) in after.cores.items():
        b0, t0 = before.cores.get(name, (b1, t1))
        busy[name] = round((b1 - b0) / (t1 - t0), 3) if t1 > t0 else None
    window = after.at - before.at
    machine_s = (busy.get("cpu") or 0.0) * window * (len(busy) - 1)
    seconds["other"] = max(0.0, machine_s - seconds["app"] - seconds["db"] - seconds["db_other"] - seconds["generator"])
    return {"window_s": round(window, 3), "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "cores_busy": busy, "pids": {k: len(v) for k, v in after.groups.items()}}


# --- the requests -----------------------------------------------------------------------


def http_request(method: str, path: str, host: str, headers: Mapping[str, str], body: bytes = b"") -> bytes:
    """One HTTP/1.1 request as bytes, keep-alive (HTTP/1.1's default)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    if method != "GET" or body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def beat_requests(students: Sequence[Student], state: Mapping[int, tuple[int, float]], count: int, step: float,
                  host: str) -> list[bytes]:
    """`count` beats, round-robin over the students (as bench.heartbeat's `beats`), each continuing
    its student's stored seq and moving `step` seconds of video further: the k-th beat of the
    schedule is the (k // n + 1)-th of student k % n, so a student's beats go out in seq order."""
    out = []
    n = len(students)
    for k in range(count):
        s = students[k % n]
        r = k // n + 1
        last_seq, position = state[s.watch_id]
        body = urlencode({"watch_id": s.watch_id, "seq": last_seq + r, "position": f"{position + r * step:.3f}",
                          "beat": s.token}).encode()
        out.append(http_request("POST", heartbeat.PATH, host, {"Content-Type": heartbeat.FORM, "Cookie": s.cookie},
                                body))
    return out


def page_requests(cookies: Sequence[str], count: int, host: str) -> list[bytes]:
    return [http_request("GET", PAGES[k % len(PAGES)], host,
                         {"Cookie": cookies[k % len(cookies)], "User-Agent": USER_AGENT, "Accept": "text/html"})
            for k in range(count)]


def webhook_requests(deliveries: Any, host: str) -> list[bytes]:
    return [http_request("POST", target, host, {"Content-Type": "text/xml"}, body) for target, body in deliveries]


def _answered(route: str, status: int, body: bytes) -> str:
    """'' when the answer is the real one; else what is wrong with it (an error)."""
    if status != 200:
        return f"status {status}"
    if route == "heartbeat":
        return "" if heartbeat.ACCEPTED_MARKER.encode() in body else "beat not accepted"
    if route in ("click", "text"):
        return "" if body.startswith(b"<xml>") else "no reply XML"
    return "" if b"<html" in body[:300].lower() else "not HTML"


def arrival_times(rate: float, start: float, seconds: float, rng: random.Random, kind: str, at_least: int) -> list[float]:
    """Send times in [start, start + seconds) for one route at `rate`/s: a Poisson process (the
    route's users act independently) or evenly spaced with a random phase."""
    if seconds <= 0 or rate <= 0:
        return []
    if kind == "even":
        n = max(at_least, round(rate * seconds))
        phase = rng.random()
        return [start + (i + phase) * seconds / n for i in range(n)]
    times, t = [], rng.expovariate(rate)
    while t < seconds:
        times.append(start + t)
        t += rng.expovariate(rate)
    # A route whose share is too small for a short window still gets one request: every route
    # is then measured (the smoke test's 2 s at 40/s would expect 0.8 text messages).
    while len(times) < at_least:
        times.append(start + rng.random() * seconds)
    return sorted(times)


@dataclass
class Item:
    at: float  # seconds after the schedule's start
    route: int
    data: bytes
    measured: bool


# --- the generator ----------------------------------------------------------------------


class _Closed(Exception):
    """The server closed the connection before answering anything."""


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Status, whether the connection stays open, body (Content-Length, chunked, or to EOF)."""
    line = await reader.readline()
    if not line:
        raise _Closed
    version, status = line.split(None, 2)[:2]
    keep = version == b"HTTP/1.1"
    length, chunked = None, False
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b"\n"):
            break
        if not header:
            raise ConnectionResetError("connection closed in the headers")
        name, _, value = header.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            keep = value != b"close"
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
    if chunked:
        parts = []
        while size := int((await reader.readline()).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        return int(status), keep, b"".join(parts)
    if length is None:
        return int(status), False, await reader.read()
    return int(status), keep, await reader.readexactly(length)


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used: float


@dataclass
class GenResult:
    latency: list[float | None]  # per item: seconds from its scheduled time to its whole answer
    problem: list[str]  # per item: '' or what went wrong
    first_body: dict[int, bytes]  # per route: the first wrong answer's start
    max_lag_ms: float
    end_lag_ms: float
    retried: int
    samples: list[CpuSample]
    connections_opened: int


async def _generate(port: int, items: Sequence[Item], connections: int, timeout_s: float,
                    marks: Sequence[float], sampler: Executor, sample: Callable[[float], CpuSample]) -> GenResult:
    """Send `items` at their times (open loop) over at most `connections` keep-alive connections;
    take a CPU `sample` at each of `marks` (seconds after the start) in `sampler`, a process of its
    own: scanning /proc took 5-20 ms, during which this loop would send nothing."""
    loop = asyncio.get_running_loop()
    latency: list[float | None] = [None] * len(items)
    problem = ["not sent"] * len(items)
    first_body: dict[int, bytes] = {}
    idle: list[_Conn] = []
    slots = asyncio.Semaphore(connections)
    counts = {"retried": 0, "opened": 0}
    pending: list[asyncio.Future[CpuSample]] = []

    async def one(i: int, due: float) -> None:
        item = items[i]
        conn: _Conn | None = None
        try:
            async with asyncio.timeout_at(due + timeout_s), slots:
                for attempt in (0, 1):
                    conn = None
                    while idle:  # the most recently used first: few connections stay warm
                        conn = idle.pop()
                        if loop.time() - conn.used < IDLE_CLOSE_S:
                            break
                        conn.writer.close()
                        conn = None
                    reused = conn is not None
                    if conn is None:
                        reader, writer = await asyncio.open_connection("127.0.0.1", port)
                        counts["opened"] += 1
                        conn = _Conn(reader, writer, loop.time())
                    try:
                        conn.writer.write(item.data)
                        status, keep, body = await _read_response(conn.reader)
                    except (_Closed, ConnectionError) as exc:
                        conn.writer.close()
                        conn = None
                        # A kept-alive connection the server closed just before our request came:
                        # once more on a new connection (counted); a new one failing is an error.
                        if reused and attempt == 0 and isinstance(exc, (_Closed, ConnectionResetError)):
                            counts["retried"] += 1
                            continue
                        raise
                    done = loop.time()
                    latency[i] = done - due
                    problem[i] = _answered(ROUTES[item.route], status, body)
                    if problem[i] and item.route not in first_body:
                        first_body[item.route] = body[:160]
                    if keep:
                        conn.used = done
                        idle.append(conn)
                    else:
                        conn.writer.close()
                    conn = None
                    return
        except TimeoutError:
            problem[i] = "timeout"
        except (OSError, asyncio.IncompleteReadError, _Closed, ValueError, IndexError) as exc:
            problem[i] = f"socket error: {type(exc).__name__}"
        if conn is not None:  # cancelled mid-answer: the answer may still come, never reuse it
            conn.writer.close()

    start = loop.time() + 0.05
    def take() -> None:
        pending.append(loop.run_in_executor(sampler, sample, own_cpu()))

    for mark in marks:
        loop.call_at(start + mark, take)
    tasks = []
    max_lag = lag = 0.0
    for i, item in enumerate(items):
        due = start + item.at
        now = loop.time()
        if due > now:
            await asyncio.sleep(due - now)
            now = loop.time()
        lag = now - due
        max_lag = max(max_lag, lag)
        tasks.append(loop.create_task(one(i, due)))
    last = start + max([*marks, items[-1].at if items else 0.0])
    if loop.time() < last:
        await asyncio.sleep(last - loop.time())
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s + 5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for conn in idle:
        conn.writer.close()
    samples = list(await asyncio.gather(*pending))
    return GenResult(latency, problem, first_body, round(max_lag * 1000, 2), round(lag * 1000, 2), counts["retried"],
                     samples, counts["opened"])


def _run_apart(coroutine: Any) -> Any:
    """asyncio.run in a thread of its own (which inherits this thread's CPU pinning): the caller's
    thread may already run an event loop (the suite's browser tests keep Playwright's open)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


@contextmanager
def pinned_to(cpus: str) -> Iterator[None]:
    """This process pinned to `cpus` for the load (the server has the other core), then restored."""
    saved = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


@contextmanager
def no_gc() -> Iterator[None]:
    """The garbage collector off for the load: this process holds the whole app's modules (it
    prepared the students), and a full collection over them stalled the schedule by ~200 ms,
    which the open-loop latencies then charged to the server. What is already allocated is frozen
    out of later collections; the load allocates little that lives long."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


# --- one measurement ----------------------------------------------------------------------


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest rank."""
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def route_rows(items: Sequence[Item], result: GenResult, mix: Mapping[str, float], seconds: float,
               timeout_s: float) -> list[dict[str, Any]]:
    """Per route, and `all`: what was sent in the measured window, and how it was answered. A
    request that timed out counts in the percentiles at the timeout (its latency is at least that)."""
    rows = []
    for r, route in enumerate([*ROUTES, "all"]):
        picked = [i for i, item in enumerate(items) if item.measured and (route == "all" or item.route == r)]
        completed = [result.latency[i] for i in picked if result.latency[i] is not None]
        timed_out = sum(1 for i in picked if result.problem[i] == "timeout")
        done = sorted([latency * 1000 for latency in completed] + [timeout_s * 1000] * timed_out)  # type: ignore[operator]
        problems: dict[str, int] = {}
        for i in picked:
            if result.problem[i]:
                kind = result.problem[i]
                problems[kind] = problems.get(kind, 0) + 1
        row: dict[str, Any] = {"route": route, "what": LABELS.get(route, "all routes"),
                               "share": round(sum(mix.values()) if route == "all" else mix[route], 3),
                               "sent": len(picked), "completed": len(completed),
                               "rps": round(len(completed) / seconds, 1) if seconds else 0.0,
                               "errors": sum(problems.values()), "problems": problems}
        if done:
            row.update(p50_ms=round(_percentile(done, 0.50), 2), p90_ms=round(_percentile(done, 0.90), 2),
                       p99_ms=round(_percentile(done, 0.99), 2), max_ms=round(done[-1], 2))
        if route != "all" and r in result.first_body:
            row["first_bad"] = result.first_body[r].decode(errors="replace")
        rows.append(row)
    return rows


def timeline(items: Sequence[Item], result: GenResult, warmup: float, duration: float) -> list[dict[str, Any]]:
    """Per second of the measured window (by send time): requests, errors and the slowest one
    (route, ms), so a stall (a checkpoint, another process) shows as one bad second, a lack of
    capacity as many."""
    seconds: list[dict[str, Any]] = [{"s": s, "sent": 0, "errors": 0, "max_ms": 0.0, "max_route": ""}
                                     for s in range(math.ceil(duration))]
    for i, item in enumerate(items):
        if not item.measured:
            continue
        second = seconds[min(len(seconds) - 1, int(item.at - warmup))]
        second["sent"] += 1
        second["errors"] += bool(result.problem[i])
        latency = result.latency[i]
        if latency is not None and latency * 1000 > second["max_ms"]:
            second["max_ms"], second["max_route"] = round(latency * 1000, 1), ROUTES[item.route]
    return seconds


@dataclass
class Bench:
    """What the measurements of one run share: the server, the students, the database."""

    opts: Options
    server: Server
    url: str
    db: str
    students: list[Student]
    page_cookies: list[str]
    side: Any
    tag: str
    deadline: Deadline
    log: Callable[[str], None]
    phase: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def schedule(self, rate: float, warmup: float, duration: float, state: heartbeat.DbState,
                 rng: random.Random) -> tuple[list[Item], float]:
        """The phase's requests in send order, and the heartbeats' step (video seconds per beat)."""
        mix = self.opts.mix
        times: dict[str, list[tuple[float, bool]]] = {}
        for route in ROUTES:
            share_rate = rate * mix[route]
            warm = arrival_times(share_rate, 0.0, warmup, rng, self.opts.arrivals, 0)
            measured = arrival_times(share_rate, warmup, duration, rng, self.opts.arrivals, 1 if mix[route] else 0)
            times[route] = [(t, False) for t in warm] + [(t, True) for t in measured]
        interval = len(self.students) / (rate * mix["heartbeat"]) if mix["heartbeat"] else math.inf
        # At most 10 s a beat: a session holds at most 60 s of earning (2 x 60 s of video), and a
        # slow step with many students would otherwise claim more than that.
        step = round(min(interval * PLAY_RATE, 10.0), 3)
        self.phase += 1
        tag = f"{self.tag}{self.phase}"
        data = {
            "heartbeat": beat_requests(self.students, state.sessions, len(times["heartbeat"]), step, self.host),
            "click": webhook_requests(webhook.click_deliveries(self.side, "plain", len(times["click"]), tag + "c"),
                                      self.host),
            "text": webhook_requests(webhook.text_deliveries(self.side, "plain", len(times["text"]), tag + "t"),
                                     self.host),
            "page": page_requests(self.page_cookies, len(times["page"]), self.host),
        }
        items = [Item(t, r, data[route][k], measured)
                 for r, route in enumerate(ROUTES) for k, (t, measured) in enumerate(times[route])]
        items.sort(key=lambda item: item.at)
        return items, step

    def measure(self, rate: float, duration: float, warmup: float) -> dict[str, Any]:
        """One open-loop phase at `rate`: warm-up, then the measured window; every route's figures,
        the CPU split, the database's own account of the beats and deliveries, the verdict."""
        opts = self.opts
        self.deadline.check(f"{rate:.0f} req/s")
        if time.monotonic() + warmup + duration + opts.timeout_s + 15 > self.deadline.end:
            raise BenchError(f"not enough time left for {rate:.0f} req/s within {self.deadline.seconds:.0f}s")
        hb_rate = rate * opts.mix["heartbeat"]
        interval = len(self.students) / hb_rate if hb_rate else math.inf
        if interval < MIN_BEAT_INTERVAL_S:
            raise BenchError(f"{len(self.students)} students beat every {interval:.2f}s at {rate:.0f} req/s "
                             f"(< {MIN_BEAT_INTERVAL_S}s): raise --students")
        seed = opts.seed if opts.seed is not None else secrets.randbits(32)
        # What the beats continue from. After an overloaded step the server is still working
        # through requests the generator gave up on: wait for it (longer than the default).
        before = heartbeat.settled_state(self.url, SETTLE_S)
        items, step = self.schedule(rate, warmup, duration, before, random.Random(seed))
        events_before = databases.count_rows(self.url, EVENTS_TABLE)
        database = opts.pg_database if self.db == "postgresql" else None
        cpus = opts.gen_cpus if (os.cpu_count() or 1) >= 2 else ""
        # The sampler is forked before the load (and pinned with this process): its /proc scans
        # are not this process's CPU, and forking mid-run would stall the schedule.
        with pinned_to(cpus), ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as sampler, \
                no_gc():
            sampler.submit(int).result()
            result = _run_apart(_generate(self.server.port, items, opts.connections, opts.timeout_s,
                                          [warmup, warmup + duration], sampler,
                                          functools.partial(cpu_sample, self.server.pid, database)))
        after = heartbeat.settled_state(self.url, SETTLE_S)
        events = databases.count_rows(self.url, EVENTS_TABLE) - events_before
        rows = route_rows(items, result, opts.mix, duration, opts.timeout_s)
        by_route = {row["route"]: row for row in rows}
        cpu = cpu_split(result.samples[0], result.samples[1]) if len(result.samples) == 2 else None
        problems, misses = [], []
        # The database's account, over the whole phase (warm-up too): every accepted beat moved
        # its session's seq and position; every answered delivery left its dedup row.
        beats = [i for i, item in enumerate(items) if ROUTES[item.route] == "heartbeat"]
        accepted = sum(1 for i in beats if result.latency[i] is not None and not result.problem[i])
        recorded = after.seq_sum - before.seq_sum
        progressed = round((after.watched_sum - before.watched_sum) / step) if step else 0
        hooks = [i for i, item in enumerate(items) if ROUTES[item.route] in ("click", "text")]
        answered = sum(1 for i in hooks if result.latency[i] is not None and not result.problem[i])
        checks = {"beats_sent": len(beats), "beats_accepted": accepted, "db_seq_rise": recorded,
                  "db_progress_beats": progressed, "step_s": step, "beat_interval_s": round(interval, 3),
                  "sessions_completed": after.completed, "sessions_inactive": after.inactive,
                  "deliveries_sent": len(hooks), "deliveries_answered": answered, "db_dedup_rows": events}
        if not accepted <= recorded <= len(beats):
            problems.append(f"last_seq rose by {recorded} for {accepted} accepted of {len(beats)} beats")
        if progressed < 0.99 * accepted:
            problems.append(f"watched seconds rose by {progressed} beats' worth for {accepted} accepted beats")
        if after.completed or after.inactive:
            problems.append(f"{after.completed} sessions completed, {after.inactive} inactive: not the steady path")
        if not answered <= events <= len(hooks):
            problems.append(f"{events} dedup rows for {answered} answered of {len(hooks)} deliveries")
        if result.end_lag_ms > MAX_LAG_MS:
            problems.append(f"the generator ended {result.end_lag_ms:.0f} ms behind its schedule "
                            f"(> {MAX_LAG_MS:.0f} ms): it measured itself, not the server")
        if cpu is None:
            problems.append("the CPU samples were not taken")
        for row in rows[:-1]:
            if row["sent"] and not row["completed"]:
                problems.append(f"{row['route']}: nothing completed")
            if row["errors"]:
                misses.append(f"{row['route']}: {row['errors']} errors ("
                              + ", ".join(f"{n} {kind}" for kind, n in row["problems"].items()) + ")")
            row["judged"] = row["completed"] >= MIN_JUDGED
            if row["judged"] and row.get("p99_ms") is not None and row["p99_ms"] >= P99_TARGET_MS:
                misses.append(f"{row['route']}: p99 {row['p99_ms']:.1f} ms >= {P99_TARGET_MS:.0f} ms")
        verdict = "INVALID" if problems else "MISS" if misses else "ok"
        total = by_route["all"]["completed"]
        usage = None
        if cpu is not None and total:
            seconds, window = cpu["seconds"], cpu["window_s"]
            pinned_cores = len(opts.settings.cpus.split(",")) if opts.settings.cpus else (os.cpu_count() or 1)
            usage = {
                "app_ms_per_request": round(seconds["app"] * 1000 / total, 3),
                "db_ms_per_request": round(seconds["db"] * 1000 / total, 3) if database else None,
                "generator_ms_per_request": round(seconds["generator"] * 1000 / total, 3),
                "app_share_of_cores": round(seconds["app"] / window / pinned_cores, 3),
                "app_cores": opts.settings.cpus or f"all {pinned_cores}",
                "db_cores_used": round(seconds["db"] / window, 3) if database else None,
            }
        return {"rate": rate, "duration_s": duration, "warmup_s": warmup, "seed": seed, "routes": rows,
                "timeline": timeline(items, result, warmup, duration),
                "throughput_rps": by_route["all"]["rps"], "cpu": cpu, "cpu_per_request": usage,
                "generator": {"max_lag_ms": result.max_lag_ms, "end_lag_ms": result.end_lag_ms,
                              "retried": result.retried, "connections_opened": result.connections_opened},
                "db_checks": checks, "problems": problems, "misses": misses, "verdict": verdict}


# --- setting up -------------------------------------------------------------------------


def redis_reachable(url: str = REDIS_URL) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=0.5):
            return True
    except OSError:
        return False


def give_consent(app: Any, students: Sequence[Student]) -> None:
    """The privacy notice's consents, as a student who went through the profile form has them:
    without them every H5 page redirects to the consent page (web/privacy.py consent_gate)."""
    from database import get_database
    from handlers.privacy import consent
    from models.base import utcnow

    with get_database(app).sessions() as session:
        for s in students:
            consent.give(session, s.user_id, (consent.NOTICE, consent.SCHOOL_SHARING), utcnow())
        session.commit()


def load_page_course(app: Any) -> None:
    """The real course the page views show (the students enrol in it on their first visit)."""
    from database import get_database
    from handlers.catalog.loader import load_catalog, parse_catalog

    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(PAGE_COURSE.read_text(encoding="utf-8"), PAGE_COURSE.name),
                     PAGE_COURSE.name)
        session.commit()


def browser_cookies(server: Server, students: Sequence[Student]) -> list[str]:
    """Each student's first page (/h5/), as a browser: the cookie it is handed back (the session
    now remembers the consents, so later pages skip that query) is the one its next pages send."""
    cookies = []
    for s in students:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("GET", PAGES[0], headers={"Cookie": s.cookie, "User-Agent": USER_AGENT})
            resp = conn.getresponse()
            body = resp.read()
            given = [c.split(";", 1)[0] for c in resp.headers.get_all("Set-Cookie") or []]
        finally:
            conn.close()
        problem = _answered("page", resp.status, body)
        if problem:
            raise BenchError(f"pre-flight GET {PAGES[0]}: {problem}: {body[:200]!r}\n{server.log_tail()}")
        name = s.cookie.split("=", 1)[0]
        cookies.append(next((c for c in given if c.startswith(name + "=")), s.cookie))
    return cookies


def preflight_pages(server: Server, cookie: str) -> None:
    for path in PAGES:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("GET", path, headers={"Cookie": cookie, "User-Agent": USER_AGENT})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        problem = _answered("page", resp.status, body)
        if problem:
            raise BenchError(f"pre-flight GET {path}: {problem} ({resp.getheader('Location')}): {body[:200]!r}")


def student_count(opts: Options) -> int:
    """--students, else one beat a second each at --rate; for --find-max, the shortest interval
    allowed at --max-rate (every student prepared costs time before the first step)."""
    if opts.students:
        return opts.students
    if opts.find_max:
        wanted = math.ceil(opts.max_rate * opts.mix["heartbeat"] * MIN_BEAT_INTERVAL_S)
    else:
        wanted = math.ceil(opts.rate * opts.mix["heartbeat"] * BEAT_INTERVAL_S)
    return max(MIN_STUDENTS, min(MAX_STUDENTS, wanted))


def _round5(rate: float) -> float:
    return float(max(5, round(rate / 5) * 5))


def find_max_rates(opts: Options) -> list[float]:
    rates, rate = [], opts.start_rate
    while rate <= opts.max_rate + 1e-9:
        if not rates or _round5(rate) > rates[-1]:
            rates.append(_round5(rate))
        rate *= opts.rate_factor
    return rates


def run(opts: Options, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One database, fresh and migrated; students; the app under gunicorn; then one measurement at
    `opts.rate`, or with `find_max` the steps of `_find_max`. Returns everything, with the per-host
    figure for --find-max; a failure (PostgreSQL down, the deadline) is in `errors`, with the steps
    measured before it."""
    from database import get_database

    if abs(sum(opts.mix.values()) - 1.0) > 1e-6 or set(opts.mix) != set(ROUTES):
        raise BenchError(f"the mix must give {', '.join(ROUTES)} shares adding up to 1: {dict(opts.mix)}")
    deadline = Deadline(opts.max_seconds)
    started = time.time()
    (db,) = opts.dbs
    secret_key = secrets.token_hex(32)
    n_students = student_count(opts)
    redis = opts.redis and redis_reachable()
    notes = []
    if opts.redis and not redis:
        notes.append(f"Redis not reachable at {REDIS_URL}: the app ran without it (queue and tokens on files)")
        log(notes[-1])
    steps: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="xinwei-bench-mixed-") as tmp:
        work = Path(tmp)
        try:
            log(f"{db}: fresh database, migrate, {n_students} students ...")
            with common.fresh_database(db, opts, work) as url:
                instance = work / "instance"
                app = heartbeat.make_app(url, secret_key, instance)
                try:
                    students = heartbeat.prepare_students(app, n_students)
                    give_consent(app, students)
                    load_page_course(app)
                finally:
                    get_database(app).dispose()
                env = {**databases.app_env(url), "SECRET_KEY": secret_key, "XINWEI_INSTANCE_PATH": str(instance)}
                if redis:
                    env["REDIS_URL"] = REDIS_URL  # after app_env, which drops an inherited one
                deadline.check("setup")
                log(f"{opts.app_target} under gunicorn ({opts.settings.describe()}) ...")
                with servers.gunicorn(opts.app_target, opts.settings, env=env, log_dir=work, name="mixed") as server:
                    side = webhook.wechat_side()
                    tag = secrets.token_hex(3)
                    heartbeat.preflight(server, students[0], heartbeat.read_state(url))
                    webhook.preflight(server, side, "plain", tag + "pc")
                    webhook.preflight(server, side, "text", tag + "pt")
                    cookies = browser_cookies(server, students[:PAGE_STUDENTS])
                    preflight_pages(server, cookies[0])
                    bench = Bench(opts, server, url, db, students, cookies, side, tag, deadline, log)
                    if not opts.find_max:
                        log(f"  {opts.rate:.0f} req/s for {opts.duration}s (+{opts.warmup}s warm-up) ...")
                        steps.append(bench.measure(opts.rate, opts.duration, opts.warmup))
                    else:
                        _find_max(bench, steps, notes)
        except BenchError as exc:
            errors[db] = str(exc)
            log(f"  {db} FAILED: {exc}")
    passing = [s["rate"] for s in steps if s["verdict"] == "ok"]
    return {
        "bench": "mixed",
        "mode": "find-max" if opts.find_max else "run",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": bench_report.machine(),
        "settings": {
            "db": db, "gunicorn": opts.settings, "app_target": opts.app_target, "redis": redis,
            "generator": {"connections": opts.connections, "cpus": opts.gen_cpus if (os.cpu_count() or 1) >= 2 else "",
                          "arrivals": opts.arrivals, "timeout_s": opts.timeout_s},
            "rate": None if opts.find_max else opts.rate, "duration_s": opts.duration, "warmup_s": opts.warmup,
            "find_max": {"rates": find_max_rates(opts), "factor": opts.rate_factor, "refine": opts.refine}
            if opts.find_max else None,
            "mix": dict(opts.mix), "students": n_students, "page_students": min(n_students, PAGE_STUDENTS),
        },
        "targets": {"p99_ms": P99_TARGET_MS, "errors": 0, "max_lag_ms": MAX_LAG_MS},
        "steps": steps,
        "per_host_rps": max(passing) if opts.find_max and passing else None,
        "notes": notes,
        "errors": errors,
    }


def _find_max(bench: Bench, steps: list[dict[str, Any]], notes: list[str]) -> None:
    """Up by `rate_factor` until a step is not ok (if the first is not, down by halves, twice at
    most), then `refine` halvings of the gap between the last pass and the first failure. At most
    ~10 + 2 + 2 steps, each bounded, and the run's deadline over all."""
    opts = bench.opts

    def ok_at(rate: float, why: str) -> bool | None:
        if time.monotonic() + opts.warmup + opts.duration + opts.timeout_s + 20 > bench.deadline.end:
            notes.append(f"stopped before {rate:.0f} req/s: the step would end past --max-seconds "
                         f"{bench.deadline.seconds:.0f}")
            return None
        hb_rate = rate * opts.mix["heartbeat"]
        if hb_rate and len(bench.students) / hb_rate < MIN_BEAT_INTERVAL_S:
            notes.append(f"stopped before {rate:.0f} req/s: {len(bench.students)} students are too few (--students)")
            return None
        bench.log(f"  step {rate:.0f} req/s{why} for {opts.duration}s (+{opts.warmup}s warm-up) ...")
        step = bench.measure(rate, opts.duration, opts.warmup)
        steps.append(step)
        bench.log(f"    {step['verdict']}: {step['throughput_rps']:.0f} req/s, worst p99 {_worst_p99(step):.1f} ms")
        return step["verdict"] == "ok"

    passed = failed = None
    for rate in find_max_rates(opts):
        ok = ok_at(rate, "")
        if ok is None:
            return
        if not ok:
            failed = rate
            break
        passed = rate
    if failed is None:
        notes.append(f"every step passed up to --max-rate {opts.max_rate:.0f}: the figure is at least that")
        return
    for _ in range(2 if passed is None else 0):
        rate = _round5(failed / 2)
        if rate >= failed:
            break
        ok = ok_at(rate, " (down)")
        if ok is None:
            return
        if ok:
            passed = rate
            break
        failed = rate
    if passed is None:
        return
    for _ in range(opts.refine):
        middle = _round5((passed + failed) / 2)
        if not passed < middle < failed:
            break
        ok = ok_at(middle, " (between)")
        if ok is None:
            return
        if ok:
            passed = middle
        else:
            failed = middle


def _worst_p99(step: Mapping[str, Any]) -> float:
    return max((row.get("p99_ms") or 0.0) for row in step["routes"][:-1])


# --- report -----------------------------------------------------------------------------

ROUTE_COLUMNS = [("route", "route"), ("share", "share"), ("sent", "sent"), ("completed", "completed"),
                 ("rps", "req/s"), ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"),
                 ("max_ms", "max ms"), ("errors", "errors")]
CPU_COLUMNS = [("who", "process"), ("cpu_s", "cpu s"), ("ms_per_request", "ms/request"), ("cores", "cores used")]
STEP_COLUMNS = [("rate", "asked/s"), ("throughput_rps", "got/s"), ("heartbeat", "beat p99"), ("click", "click p99"),
                ("text", "text p99"), ("page", "page p99"), ("errors", "errors"), ("app_ms", "app ms/req"),
                ("db_ms", "db ms/req"), ("gen_ms", "gen ms/req"), ("app_share", "app core"), ("lag", "end lag ms"),
                ("verdict", "verdict")]


def _heading(payload: Mapping[str, Any]) -> str:
    s = payload["settings"]
    gen = s["generator"]
    what = (f"step up from {s['find_max']['rates'][0]:.0f} req/s, {s['duration_s']}s per step"
            if s["find_max"] else f"{s['rate']:.0f} req/s for {s['duration_s']}s")
    db = "PostgreSQL" if s["db"] == "postgresql" else "SQLite"
    return (f"mixed bench: open loop ({gen['arrivals']} arrivals), {what} (+{s['warmup_s']}s warm-up at the same mix); "
            f"mix " + ", ".join(f"{k} {v:.2f}" for k, v in s["mix"].items()) + "; "
            f"app {s['app_target']}, gunicorn {GunicornSettings(**_settings_dict(s['gunicorn'])).describe()}; "
            f"{db}{' + Redis' if s['redis'] else ', no Redis'}; generator {gen['connections']} connections"
            f"{', pinned to cpu ' + gen['cpus'] if gen['cpus'] else ''}; {s['students']} students "
            f"({s['page_students']} loading pages); {payload['machine']['cores']} cores")


def _settings_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {k: getattr(value, k) for k in ("worker_class", "workers", "threads", "cpus")}


def _cpu_rows(step: Mapping[str, Any]) -> list[dict[str, Any]]:
    cpu, total = step["cpu"], step["routes"][-1]["completed"]
    if cpu is None or not total:
        return []
    seconds, window = cpu["seconds"], cpu["window_s"]
    who = [("app", "app: gunicorn master + workers"), ("db", "database: PostgreSQL, this database + server processes"),
           ("generator", "load generator (this process)"), ("db_other", "PostgreSQL, other databases' backends"),
           ("other", "everything else on the machine")]
    if step["cpu_per_request"] and step["cpu_per_request"]["db_ms_per_request"] is None:
        who = [w for w in who if w[0] != "db"]  # SQLite: inside the app's processes
    return [{"who": label, "cpu_s": seconds[key], "ms_per_request": round(seconds[key] * 1000 / total, 3),
             "cores": round(seconds[key] / window, 3)} for key, label in who]


def report_step(step: Mapping[str, Any], db: str) -> list[str]:
    lines = [bench_report.table(step["routes"], ROUTE_COLUMNS)]
    usage = step["cpu_per_request"]
    if step["cpu"] is not None:
        cpu = step["cpu"]
        lines += ["", f"CPU over the measured {cpu['window_s']:.1f}s (/proc utime+stime; 10 ms ticks):",
                  bench_report.table(_cpu_rows(step), CPU_COLUMNS)]
        if db != "postgresql":
            lines.append("  (SQLite: the database's work is inside the app's processes)")
        lines.append("  cores busy: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu["cores_busy"].items() if k != "cpu"
                                                     and v is not None))
        if usage:
            lines.append(f"  app: {usage['app_ms_per_request']:.3f} ms CPU per request, "
                         f"{usage['app_share_of_cores']:.0%} of cpu {usage['app_cores']}")
    g, c = step["generator"], step["db_checks"]
    lines.append(f"generator: max lag {g['max_lag_ms']:.1f} ms, at the end {g['end_lag_ms']:.1f} ms; "
                 f"{g['connections_opened']} connections opened, {g['retried']} requests re-sent on a new connection")
    if g["max_lag_ms"] > MAX_LAG_MS:
        lines.append(f"  (the generator fell {g['max_lag_ms']:.0f} ms behind at some point: the latencies of requests "
                     "due then include its own delay, so they are pessimistic)")
    lines.append(f"database: {c['beats_accepted']} of {c['beats_sent']} beats accepted (warm-up included), last_seq rose "
                 f"by {c['db_seq_rise']}, progress by {c['db_progress_beats']} beats' worth ({c['step_s']}s of video each, "
                 f"a beat per student every {c['beat_interval_s']}s); {c['db_dedup_rows']} dedup rows for "
                 f"{c['deliveries_answered']} answered deliveries")
    for row in step["routes"]:
        if row.get("first_bad"):
            lines.append(f"  {row['route']}: first wrong answer: {row['first_bad'][:120]!r}")
    few = [f"{row['route']} ({row['completed']}, p99 {row['p99_ms']:.1f} ms)" for row in step["routes"][:-1]
           if 0 < row["completed"] < MIN_JUDGED]
    if few:
        lines.append(f"  p99 not judged, fewer than {MIN_JUDGED} answers: {', '.join(few)} (their p99 is their "
                     "slowest answer; a longer --duration or a higher rate gives them more)")
    reasons = step["problems"] + step["misses"]
    lines.append(f"verdict: {step['verdict']}" + (" (" + "; ".join(reasons) + ")" if reasons else ""))
    return lines


def report(payload: Mapping[str, Any]) -> str:
    lines = [_heading(payload), ""]
    db = payload["settings"]["db"]
    if payload["mode"] == "run":
        for step in payload["steps"]:
            lines += report_step(step, db)
    else:
        rows = []
        for step in sorted(payload["steps"], key=lambda step: step["rate"]):
            # * marks a p99 over fewer than MIN_JUDGED answers: shown, not judged.
            p99 = {row["route"]: row.get("p99_ms") if row.get("judged", True) or row.get("p99_ms") is None
                   else f"{row['p99_ms']:.1f}*" for row in step["routes"]}
            usage = step["cpu_per_request"] or {}
            rows.append({"rate": step["rate"], "throughput_rps": step["throughput_rps"], **p99,
                         "errors": step["routes"][-1]["errors"], "app_ms": usage.get("app_ms_per_request"),
                         "db_ms": usage.get("db_ms_per_request"), "gen_ms": usage.get("generator_ms_per_request"),
                         "app_share": usage.get("app_share_of_cores"), "lag": step["generator"]["end_lag_ms"],
                         "verdict": step["verdict"]})
        lines.append(bench_report.table(rows, STEP_COLUMNS))
        lines.append(f"  * over fewer than {MIN_JUDGED} answers: the slowest one, shown but not judged")
        for step in payload["steps"]:
            for reason in step["problems"] + step["misses"]:
                lines.append(f"  {step['rate']:.0f}/s: {reason}")
        figure = payload["per_host_rps"]
        lines.append("")
        lines.append(f"per-host figure: {figure:.0f} req/s, the highest step with every judged p99 < "
                     f"{P99_TARGET_MS:.0f} ms and no errors" if figure else "per-host figure: none (no step passed)")
        if payload["steps"]:
            best = max(payload["steps"], key=lambda s: s["rate"] if s["verdict"] == "ok" else -1)
            lines += ["", f"at {best['rate']:.0f} req/s:"] + report_step(best, db)
    lines += [f"note: {note}" for note in payload["notes"]]
    if db == "postgresql":
        lines.append("note: PostgreSQL runs on this machine, unpinned, shared with other work; its background "
                     "processes count as this database's, other databases' backends are listed apart")
    for name, error in payload["errors"].items():
        lines.append(f"{name}: FAILED: {error}")
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Options:
    defaults = Options()
    p = argparse.ArgumentParser(prog="python -m bench.mixed", description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=defaults.rate, help="requests/s, all routes (default %(default)s)")
    p.add_argument("--duration", type=int, default=None,
                   help="measured seconds (default 20; 15 per step with --find-max)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up seconds (default 3; 2 per step with --find-max)")
    p.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL),
                   help="PostgreSQL server to create the bench database on (env BENCH_PG_URL)")
    p.add_argument("--pg-database", default=defaults.pg_database, help="dropped and recreated (default %(default)s)")
    p.add_argument("--no-redis", action="store_true", help=f"run the app without REDIS_URL ({REDIS_URL})")
    p.add_argument("--students", type=int, default=None,
                   help=f"signed-in watching students (default: one beat a second each at the highest rate, "
                        f"{MIN_STUDENTS}..{MAX_STUDENTS})")
    p.add_argument("--connections", type=int, default=defaults.connections, help="generator connections (default %(default)s)")
    p.add_argument("--worker-class", default=None, help=f"gunicorn worker class (default {ANCHOR.worker_class})")
    p.add_argument("--workers", type=int, default=None, help=f"gunicorn workers (default {ANCHOR.workers})")
    p.add_argument("--threads", type=int, default=None, help=f"threads per gthread worker (default {ANCHOR.threads})")
    p.add_argument("--no-pin", action="store_true", help="pin neither the server (cpu 0) nor the generator (cpu 1)")
    p.add_argument("--mix", default=None,
                   help="route=share,... (routes left out get 0; shares add up to 1), e.g. heartbeat=1 for the "
                        "beats alone (default " + ",".join(f"{k}={v}" for k, v in MIX.items()) + ")")
    p.add_argument("--arrivals", choices=ARRIVALS, default=defaults.arrivals, help="per route (default %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="the schedule's random seed (default: a new one)")
    p.add_argument("--find-max", action="store_true", help="step the rate up until a p99 or an error fails")
    p.add_argument("--start-rate", type=float, default=defaults.start_rate, help="--find-max (default %(default)s)")
    p.add_argument("--rate-factor", type=float, default=defaults.rate_factor,
                   help="--find-max: each step's rate over the last (default %(default)s)")
    p.add_argument("--max-rate", type=float, default=defaults.max_rate, help="--find-max (default %(default)s)")
    p.add_argument("--refine", type=int, default=defaults.refine,
                   help="--find-max: halvings between the last pass and the first failure (default %(default)s)")
    p.add_argument("--max-seconds", type=float, default=defaults.max_seconds,
                   help="the whole run stops with an error past this (default %(default)s)")
    p.add_argument("--app-target", default=defaults.app_target, help="gunicorn app (default %(default)s)")
    p.add_argument("--no-json", action="store_true", help="do not write bench/results/mixed-<timestamp>.json")
    args = p.parse_args(argv)
    duration = args.duration if args.duration is not None else 15 if args.find_max else defaults.duration
    warmup = args.warmup if args.warmup is not None else 2 if args.find_max else defaults.warmup
    if duration < 1 or warmup < 0 or args.rate <= 0 or args.connections < 1 or (args.students is not None and args.students < 1) \
            or args.start_rate <= 0 or args.rate_factor <= 1.05 or args.refine < 0:
        p.error("--duration, --connections, --students and the rates must be >= 1, --warmup and --refine >= 0, "
                "--rate-factor > 1.05")
    mix = dict(MIX)
    if args.mix:
        try:
            given = {k.strip(): float(v) for k, v in (part.split("=") for part in args.mix.split(",") if part.strip())}
        except ValueError:
            p.error("--mix takes route=share,...")
        if set(given) - set(ROUTES) or abs(sum(given.values()) - 1.0) > 1e-6 or min(given.values()) < 0:
            p.error(f"--mix: routes {', '.join(ROUTES)}, shares >= 0 adding up to 1")
        mix = {route: given.get(route, 0.0) for route in ROUTES}
    settings = ANCHOR
    settings = replace(settings, worker_class=args.worker_class or settings.worker_class,
                       workers=args.workers or settings.workers, threads=args.threads or settings.threads,
                       cpus="" if args.no_pin else settings.cpus)
    return replace(defaults, mix=mix, rate=args.rate, duration=duration, warmup=warmup, dbs=(args.db,), pg_url=args.pg_url,
                   pg_database=args.pg_database, redis=not args.no_redis, students=args.students,
                   connections=args.connections, settings=settings, gen_cpus="" if args.no_pin else defaults.gen_cpus,
                   arrivals=args.arrivals, seed=args.seed, find_max=args.find_max, start_rate=args.start_rate,
                   rate_factor=args.rate_factor, refine=args.refine, max_rate=args.max_rate, max_seconds=args.max_seconds,
                   app_target=args.app_target, write_json=not args.no_json)


def main(argv: Sequence[str] | None = None) -> int:
    """0 when the run measured (a MISS included); 1 on errors, INVALID or failure; with --find-max,
    1 only when no step passed or the run failed (a failing step is how it finds the figure)."""
    opts = parse_args(argv)
    payload = run(opts)
    print()
    print(report(payload))
    if opts.write_json:
        print(f"\nJSON: {bench_report.write_json('mixed', payload)}")
    if payload["errors"] or not payload["steps"]:
        return 1
    if opts.find_max:
        return 0 if payload["per_host_rps"] else 1
    step = payload["steps"][0]
    return 1 if step["verdict"] == "INVALID" or step["routes"][-1]["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
