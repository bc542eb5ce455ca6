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
