"""bench/video: a generated lecture transcoded into the whole HLS ladder (× real time on this machine, bytes
and bit rate per rung), then played in a throttled Chromium, ladder against single file (bench/video_delivery.py).

    .venv/bin/python -m bench.video --minutes 10 --window 60
    .venv/bin/python -m bench.video --minutes 10 --window 0      # the transcode only

Targets: the ladder transcodes at >= 1x real time; at 400 kbit/s the ladder's first frame comes in
under 4 s with a rebuffer ratio under 1 %; at 1.5 Mbit/s in under 2 s.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from content.videos import make_lecture
from video.probe import probe
from video.transcode import DEFAULT_LADDER, parse_ladder, remux_to_mp4, transcode

RESULTS = Path(__file__).resolve().parent / "results"


def run(seconds: int = 600, width: int = 1280, height: int = 720, ladder: str = DEFAULT_LADDER,
        window: float = 0, networks: tuple[tuple[str, int], ...] | None = None, browser: object = None,
        ) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-video-") as folder:
        work = Path(folder)
        started = time.perf_counter()
        source = make_lecture(work / "lecture.mp4", seconds=seconds, width=width, height=height)
        generated = time.perf_counter() - started
        found = probe(source)
        cpu_before, started = os.times(), time.perf_counter()
        made = transcode(source, work / "ladder", parse_ladder(ladder), found.seconds)
        wall = time.perf_counter() - started
        cpu_after = os.times()
        cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
        fallback = (work / "ladder" / "fallback.mp4").stat().st_size
        delivery = None
        if window > 0:
            from bench import video_delivery
            # Today's path: one progressive MP4 of the top rung's picture, the same bytes per second.
            top = made.renditions[-1].rung.name
            single = work / "single.mp4"
            remux_to_mp4(work / "ladder" / top / "index.m3u8", single)
            rows = [{"name": r.rung.name, "width": r.width, "height": r.height, "kbps": r.rung.video_kbps,
                     "bytes": r.bytes, "segments": r.segments} for r in made.renditions]
            (work / "ladder" / "renditions.json").write_text(json.dumps(rows))
            delivery = video_delivery.measure(work / "ladder", single, found.seconds, window,
                                              networks or video_delivery.NETWORKS, browser)
        return {
            "seconds": round(found.seconds, 1), "source": f"{width}x{height}", "source_mb": round(found.size_bytes / 1e6, 1),
            "generate_s": round(generated, 1), "transcode_s": round(wall, 1),
            "x_real_time": round(found.seconds / wall, 2), "cpu_s": round(cpu, 1), "cores": os.cpu_count(),
            "rungs": [{"name": r.rung.name, "size": f"{r.width}x{r.height}", "target_kbps": r.rung.video_kbps,
                       "mb": round(r.bytes / 1e6, 2), "kbps": round(r.bytes * 8 / found.seconds / 1000),
                       "segments": r.segments} for r in made.renditions],
            "fallback_mb": round(fallback / 1e6, 2),
            "delivery_window_s": window or None,
            "delivery": delivery,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--window", type=float, default=60, help="seconds of playback per network and path")
    parser.add_argument("--networks", default="400k,1.5M,5M", help="a subset of 400k, 1.5M, 5M")
    args = parser.parse_args()
    from bench.video_delivery import NETWORKS
    chosen = tuple(n for n in NETWORKS if n[0] in args.networks.split(","))
    result = run(seconds=int(args.minutes * 60), window=args.window, networks=chosen)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "video.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
