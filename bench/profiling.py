"""In-process profiles for the benches: microseconds per call, stage timers, cProfile summaries."""
from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import BenchOptions, fresh_database
from bench.settings import REPO
from bench.wrk import RequestItem

# --- in-process profile ----------------------------------------------------------------


def us_per_call(fn: Callable[[], Any], count: int) -> float:
    """Microseconds per request of `fn`, which sends `count` of them."""
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) / count * 1e6


def profile_floor(item: RequestItem, count: int, log: Callable[[str], None], note: str = "") -> float:
    """The bare floor app in-process (Flask test client), sent `item` 200 times to warm up, then
    `count` times: microseconds per request, logged."""
    from bench.floor_app import create_app

    target, body = item[0], item[1]
    headers: Mapping[str, str] = item[2] if len(item) > 2 else {"Content-Type": "text/xml"}  # type: ignore[misc]
    client = create_app().test_client(use_cookies=False)

    def send(n: int) -> None:
        for _ in range(n):
            client.post(target, data=body, headers=headers)

    send(200)
    floor_us = us_per_call(lambda: send(count), count)
    log(f"in-process floor (bare Flask, test client{note}): {floor_us:.0f} us/request")
    return floor_us


@contextmanager
def profiled_app(db: str, opts: BenchOptions, work: Path, make_app: Callable[[str], Any]) -> Iterator[tuple[str, Any]]:
    """A fresh database and `make_app(url)` on it; the app's engines disposed at the end."""
    from database import get_database

    with fresh_database(db, opts, work) as url:
        app = make_app(url)
        try:
            yield url, app
        finally:
            get_database(app).dispose()


@contextmanager
def stage_timer(totals: dict[str, float], stages: Iterable[tuple[object, str, str]]) -> Iterator[None]:
    """Wrap each (owner, attribute, label) so its calls add their time to totals[label] (inclusive);
    afterwards each owner is as it was (an inherited attribute is uncovered again)."""
    patches: list[tuple[object, str, object, bool]] = []

    def wrap(owner: object, name: str, label: str) -> None:
        had = name in vars(owner) if isinstance(owner, type) else name in getattr(owner, "__dict__", {})
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - t

        patches.append((owner, name, original, had))
        setattr(owner, name, timed)

    try:
        for owner, name, label in stages:
            wrap(owner, name, label)
        yield
    finally:
        for owner, name, original, had in reversed(patches):
            if had:
                setattr(owner, name, original)
            else:
                delattr(owner, name)


def cprofiled(fn: Callable[[], Any]) -> cProfile.Profile:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    return prof


def top_stats(prof: cProfile.Profile, sort: str, limit: int) -> str:
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats(sort).print_stats(limit)
    return out.getvalue()


def trim_stats(text: str) -> str:
    """pstats' table without its preamble, indented, with the venv and repo paths shortened."""
    keep, started = [], False
    for line in text.splitlines():
        if line.strip().startswith("ncalls"):
            started = True
        if started and line.strip():
            keep.append("    " + line.replace(str(Path(sys.prefix)), "<venv>").replace(str(REPO), "<repo>"))
    return "\n".join(keep)


@contextmanager
def statement_counter(app, counts: dict[str, int], sample: list[str] | None = None) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Count statements, transaction ends and (PostgreSQL) server round trips; keep the
    first few in order. `main` is the app's engine; SQLite's readers have an engine of
    their own (deferred BEGIN), PostgreSQL's share `main`."""
    from sqlalchemy import event

    from database import get_database

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
