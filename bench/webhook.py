"""The /wechat bench: signed CLICK "FAQ" events, plain and safe mode, under gunicorn, as ratios to the floor."""
from __future__ import annotations

import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common, databases, profiling, servers, wrk
from bench import report as bench_report
from bench.common import BenchOptions, Run
from bench.servers import Server
from bench.settings import BenchError

MENU_KEY = "FAQ"  # a CLICK answered with a text reply and no other writes: the webhook's own cost
TARGET_RATIO = {"plain": 0.60, "safe": 0.50}  # of the floor's req/s, measured in the same run
P99_TARGET_MS = 50.0
SCENARIOS = ("plain", "safe", "duplicate")
# Optional: a student's text message (plain mode), stored in the inbox with its conversation and
# checked against the keyword auto-replies; run it with --scenarios text (information only).
OPTIONAL_SCENARIOS = ("text",)
TEXT = "老师好，我的证书上学号填错了，怎么改？"
EVENTS_TABLE = "inbound_events"


@dataclass
class Options(BenchOptions):
    """The shared options (durations per scenario) plus the scenarios and the duplicates' pool."""

    scenarios: Sequence[str] = SCENARIOS
    duplicates: int = 64  # distinct events re-sent over and over in the duplicate scenario


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


def text_deliveries(side, mode: str, count: int, tag: str) -> Iterator[tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    """`count` text messages, each from a new student (a user, a message and a conversation written)."""
    now = int(time.time())
    for i in range(count):
        delivery = side.deliver(side.text(f"o{tag}{i:08d}", TEXT, msg_id=i + 1, created=now), mode="plain",
                                timestamp=now)
        yield "/wechat?" + delivery.query, delivery.body


def preflight(server: Server, side, mode: str, tag: str) -> None:  # type: ignore[no-untyped-def]
    """One delivery by hand: the reply must open (and, in safe mode, be sealed) and be the FAQ."""
    from handlers.guide import FAQ
    from handlers.inbox.student import ACKNOWLEDGEMENT

    if mode == "text":
        (target, body), = text_deliveries(side, mode, 1, tag)
        status, answer = servers.http_post(server, target, body)
        fields = side.open_reply(answer) if status == 200 else None
        if not fields or fields.get("Content") != ACKNOWLEDGEMENT:
            raise BenchError(f"pre-flight text: status {status}: {answer[:200]!r}\n{server.log_tail()}")
        return
    (target, body), = click_deliveries(side, mode, 1, tag)
    status, answer = servers.http_post(server, target, body)
    if status != 200:
        raise BenchError(f"pre-flight {mode}: status {status}: {answer[:200]!r}\n{server.log_tail()}")
    if mode == "safe" and b"<Encrypt>" not in answer:
        raise BenchError("pre-flight safe: the reply is not encrypted")
    fields = side.open_reply(answer)
    if not fields or not str(fields.get("Content", "")).startswith(FAQ):
        raise BenchError(f"pre-flight {mode}: not the FAQ reply: {answer[:200]!r}")


def measure_distinct(
    ctx: Run, server: Server, mode: str, db: str, url: str, side, run_tag: str,  # type: ignore[no-untyped-def]
) -> dict[str, Any]:
    """Every request a new event, so every one runs dedup insert, handler, reply, commit."""
    opts = ctx.opts
    tag = f"{run_tag}{db[0]}{mode[0]}"
    deliveries = text_deliveries if mode == "text" else click_deliveries
    preflight(server, side, mode, tag + "p")
    warm = None
    if opts.warmup:
        warm_path = ctx.work / f"{db}-{mode}-warm.txt"
        warm_count = int(ctx.floor_rps * opts.warmup * 1.2) + 500
        wrk.write_requests(warm_path, deliveries(side, mode, warm_count, tag + "w"))
        warm = ctx.wrk(server, warm_path, opts.warmup)
    ctx.deadline.check(f"{db} {mode}")
    path = ctx.work / f"{db}-{mode}.txt"
    # Built right before the run: the webhook refuses timestamps older than its replay window.
    built = wrk.write_requests(path, deliveries(side, mode, ctx.size(warm), tag + "m"))
    before = databases.count_rows(url, EVENTS_TABLE)
    result = ctx.wrk(server, path, opts.duration)
    rows = databases.count_rows(url, EVENTS_TABLE) - before
    problems = common.wrk_problems(result)
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
    return common.result_row(db, mode, result, built=built, rows_added=rows, resent=result.reused,
                             valid=not problems, problems=problems)


def measure_duplicates(
    ctx: Run, server: Server, db: str, url: str, side, run_tag: str,  # type: ignore[no-untyped-def]
) -> dict[str, Any]:
    """The same events re-sent (WeChat's retries): answered from the stored reply, handler skipped."""
    opts: Options = ctx.opts  # type: ignore[assignment]
    seeds = list(click_deliveries(side, "plain", opts.duplicates, f"{run_tag}{db[0]}d"))
    for target, body in seeds:
        status, answer = servers.http_post(server, target, body)
        if status != 200 or not answer.startswith(b"<xml>"):
            raise BenchError(f"seeding duplicates: status {status}: {answer[:200]!r}")
    path = ctx.work / f"{db}-duplicate.txt"
    wrk.write_requests(path, seeds)
    if opts.warmup:
        ctx.wrk(server, path, min(opts.warmup, 1))
    ctx.deadline.check(f"{db} duplicate")
    before = databases.count_rows(url, EVENTS_TABLE)
    result = ctx.wrk(server, path, opts.duration)
    rows = databases.count_rows(url, EVENTS_TABLE) - before
    problems = common.wrk_problems(result)
    if result.xml != result.requests:
        problems.append(f"only {result.xml} of {result.requests} answers carried the stored reply")
    if rows:
        problems.append(f"{rows} new dedup rows: a duplicate ran the handler")
    return common.result_row(db, "duplicate", result, rows_added=rows, valid=not problems, problems=problems)


def run(opts: Options, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the floor, then each database's scenarios; return every row and the verdicts."""
    side = wechat_side()
    run_tag = secrets.token_hex(3)

    def prepare(ctx: Run, db: str, url: str) -> tuple[dict[str, str], list[tuple[str, common.Measure]]]:
        def measure(scenario: str) -> common.Measure:
            if scenario == "duplicate":
                return lambda server: measure_duplicates(ctx, server, db, url, side, run_tag)
            return lambda server: measure_distinct(ctx, server, scenario, db, url, side, run_tag)

        return databases.app_env(url), [(scenario, measure(scenario)) for scenario in opts.scenarios]

    return common.run_bench(
        opts, bench="webhook", tmp_prefix="xinwei-bench-",
        # The floor gets the request the webhook gets in plain mode, so wrk and the wire cost the same.
        floor_requests=lambda _work: click_deliveries(side, "plain", 1, "floor"),
        prepare=prepare,
        judge=lambda row: common.verdict(row, TARGET_RATIO.get(row["scenario"]), P99_TARGET_MS),
        settings={"menu_key": MENU_KEY},
        targets={"ratio": TARGET_RATIO, "p99_ms": P99_TARGET_MS},
        log=log,
    )


COLUMNS = bench_report.columns()
TARGETS = (f"targets: plain >= {TARGET_RATIO['plain']:.2f} x floor, safe >= {TARGET_RATIO['safe']:.2f} x floor, "
           f"p99 < {P99_TARGET_MS:.0f} ms; duplicate is for information (re-sent events, handler skipped)")


def report(payload: dict[str, Any]) -> str:
    what = f"webhook bench: POST /wechat, CLICK {payload['settings']['menu_key']}"
    return bench_report.report(payload, what=what, per="scenario", cols=COLUMNS, targets=TARGETS)


# --- profile: where a webhook request's time goes, in-process ------------------------


def _stages() -> list[tuple[object, str, str]]:
    """The webhook's stages, timed so each request's time splits into named parts (inclusive)."""
    from sqlalchemy.orm import Session

    import wechat.dedup as dedup_mod
    import wechat.webhook as webhook_mod
    from wechat.crypto import MessageCrypto
    from wechat.router import Router

    return [
        (webhook_mod, "_check_query", "query signature + replay window"),
        (webhook_mod, "parse_xml", "XML parse"),
        (webhook_mod, "to_inbound", "to_inbound"),
        (webhook_mod, "signature_holds", "msg_signature"),
        (MessageCrypto, "decrypt", "AES decrypt"),
        (MessageCrypto, "encrypt", "AES encrypt"),
        (webhook_mod, "sign", "reply signature"),
        (webhook_mod, "get_session", "get_session"),
        (webhook_mod, "deliver", "dedup.deliver (all of it)"),
        (Session, "flush", "  ORM flush (insert + update)"),
        (Router, "dispatch", "  router + handler"),
        (dedup_mod, "render", "  render reply XML"),
        (Session, "commit", "session.commit"),
    ]


def profile(opts: Options, count: int = 2000, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Per-request cost of the webhook vs the floor app in-process (Flask test client, no gunicorn),
    split into stages, plus cProfile's top functions: where to look when a target is missed."""
    from app import create_app

    side = wechat_side()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="xinwei-profile-") as tmp:
        work = Path(tmp)
        floor_us = profiling.profile_floor(next(click_deliveries(side, "plain", 1, "pf")), count, log)
        results["floor_us"] = round(floor_us, 1)
        for db in opts.dbs:
            def make_app(url: str):  # type: ignore[no-untyped-def]
                return create_app({"DATABASE_URL": url, "XINWEI_ENV": "development"})

            with profiling.profiled_app(db, opts, work, make_app) as (_url, app):
                client = app.test_client()
                # The text message is profiled when it is asked for (--scenarios ...,text).
                for mode in ("plain", "safe", *(m for m in OPTIONAL_SCENARIOS if m in opts.scenarios)):
                    tag = f"{db[0]}{mode[0]}"
                    deliveries = text_deliveries if mode == "text" else click_deliveries
                    reqs = list(deliveries(side, mode, 4 * count + 201, "prof" + tag))
                    for target, body in reqs[:200]:  # warm caches, compile statements
                        client.post(target, data=body, content_type="text/xml")

                    def drive(batch: Sequence[tuple[str, bytes]]) -> None:
                        for target, body in batch:
                            resp = client.post(target, data=body, content_type="text/xml")
                            if resp.status_code != 200 or not resp.data.startswith(b"<xml>"):
                                raise BenchError(f"profile {db} {mode}: {resp.status_code} {resp.data[:100]!r}")

                    one: list[str] = []
                    with profiling.statement_counter(app, {}, one):
                        drive(reqs[200:201])
                    counts: dict[str, int] = {}
                    with profiling.statement_counter(app, counts):
                        drive(reqs[201 : 201 + count])
                    total_us = profiling.us_per_call(lambda: drive(reqs[201 + count : 201 + 2 * count]), count)
                    totals: dict[str, float] = {}
                    with profiling.stage_timer(totals, _stages()):
                        timed_us = profiling.us_per_call(
                            lambda: drive(reqs[201 + 2 * count : 201 + 3 * count]), count)
                    prof = profiling.cprofiled(lambda: drive(reqs[201 + 3 * count : 201 + 4 * count]))
                    top = profiling.top_stats(prof, "tottime", 15)
                    stages = {k: round(v / count * 1e6, 1) for k, v in totals.items()}
                    key = f"{db}/{mode}"
                    per_request = {k: round(v / count, 2) for k, v in sorted(counts.items())}
                    results[key] = {"us_per_request": round(total_us, 1), "x_floor_cost": round(total_us / floor_us, 2),
                                    "stages_us": stages, "timed_us": round(timed_us, 1), "cprofile_top": top,
                                    "statements_per_request": per_request, "one_request_sql": one}
                    log(f"\n{key}: {total_us:.0f} us/request in-process ({total_us / floor_us:.1f}x the floor's)")
                    log("  per request: " + ", ".join(f"{v:g} {k}" for k, v in per_request.items()))
                    log("  one request's SQL, in order:")
                    for line in one:
                        log(f"    {line}")
                    log(f"  stages (us/request, inclusive, measured with timers: {timed_us:.0f} us total):")
                    for name, us in sorted(stages.items(), key=lambda kv: -kv[1]):
                        log(f"    {us:8.1f}  {name}")
                    log("  cProfile, top by own time:\n" + profiling.trim_stats(top))
    return results


# --- command line ------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[Options, Any]:
    return common.parse_options(
        argv, Options(), prog="python -m bench.webhook", doc=__doc__, name="webhook",
        helps={"duration": "seconds per scenario (default %(default)s)",
               "warmup": "warm-up seconds per scenario (default %(default)s)",
               "requests": "distinct requests per scenario (default: sized from the warm-up)",
               "profile_requests": "requests per profiled pass (default %(default)s)"},
        after_db=[("--scenarios", {"default": ",".join(SCENARIOS),
                                   "help": "scenarios, comma-separated (default %(default)s)"})],
        lists={"--scenarios": ("scenarios", SCENARIOS + OPTIONAL_SCENARIOS)},
    )


def main(argv: Sequence[str] | None = None) -> int:
    hint = "A target was missed: `python -m bench.webhook --profile` shows where a request's time goes."
    return common.bench_main(argv, "webhook", parse_args, run, report, profile, hint)


if __name__ == "__main__":
    sys.exit(main())
