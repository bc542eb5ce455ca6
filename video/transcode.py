"""Transcoding a lecture into an HLS ladder with PyAV: one decode, every rung encoded side by side.

What comes out, in one local folder (the caller publishes it whole, or not at all):
- `<rung>/index.m3u8` and `<rung>/seg-00001.ts`…: H.264 main profile and AAC, segments of
  `segment_seconds` whose keyframes fall at the same instants on every rung (a fixed GOP and no
  scene-cut keyframes), so a player switches rungs at any segment boundary;
- `master.m3u8`: the rungs, with bandwidth, resolution and codecs for the player's choice;
- `poster.jpg`: a frame a tenth of the way in;
- `fallback.mp4`: the lowest rung's stream copied into one progressive MP4 (+faststart), for
  browsers without HLS or Media Source Extensions.

The ladder is data (`parse_ladder`, from config), not code.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

# name:height:video kbit/s, lowest first. Each rung's width follows the source's aspect ratio.
# The lowest rung with its audio stays under 300 kbit/s, so a phone on a 400 kbit/s dormitory
# link plays it with room for the segments' overhead and the link's dips.
DEFAULT_LADDER = "360p:360:250,540p:540:700,720p:720:1400"
# Lectures are speech: mono AAC at 48 kbit/s is clear, and leaves the weak links' bits to the picture.
AUDIO_KBPS = 48
AUDIO_RATE = 48000
SEGMENT_SECONDS = 4
# x264 speed: "veryfast" keeps a 2-core worker above real time for the whole ladder, at a
# bitrate cost a 1.6 Mbit/s lecture (slides and a speaker) does not notice.
PRESET = "veryfast"
# The poster is what a phone shows before play, and it shares a weak link with the first segment:
# 640 px wide (a phone's player is 390 CSS px) and a JPEG of a few tens of KB.
POSTER_WIDTH = 640


@dataclass(frozen=True)
class Rung:
    name: str
    height: int
    video_kbps: int

    def size(self, width: int, height: int) -> tuple[int, int]:
        """This rung's picture for a `width`×`height` source: never upscaled, even sides."""
        target = min(self.height, height)
        scaled = round(width * target / height)
        return scaled - scaled % 2, target - target % 2


def parse_ladder(text: str) -> tuple[Rung, ...]:
    rungs = []
    for item in text.split(","):
        name, height, kbps = item.strip().split(":")
        rungs.append(Rung(name, int(height), int(kbps)))
    if not rungs or [r.height for r in rungs] != sorted(r.height for r in rungs):
        raise ValueError(f"a ladder lists its rungs lowest first: {text!r}")
    return tuple(rungs)


@dataclass(frozen=True)
class Rendition:
    rung: Rung
    width: int
    height: int
    bytes: int
    segments: int


@dataclass(frozen=True)
class Ladder:
    folder: Path
    seconds: float
    renditions: tuple[Rendition, ...]

    def files(self) -> Iterator[Path]:
        return (p for p in sorted(self.folder.rglob("*")) if p.is_file())


class _Output:
    """One rung: its HLS muxer, its video and audio encoders."""

    def __init__(self, folder: Path, rung: Rung, width: int, height: int, fps: Fraction, has_audio: bool) -> None:
        self.rung, self.width, self.height = rung, width, height
        folder.mkdir(parents=True)
        gop = max(1, round(fps * SEGMENT_SECONDS))
        self.container = av.open(str(folder / "index.m3u8"), "w", format="hls", options={
            "hls_time": str(SEGMENT_SECONDS), "hls_playlist_type": "vod", "hls_list_size": "0",
            "hls_segment_filename": str(folder / "seg-%05d.ts"), "hls_flags": "independent_segments"})
        self.video = self.container.add_stream("libx264", rate=fps)
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        kbps = rung.video_kbps
        self.video.bit_rate = kbps * 1000
        self.video.options = {
            "preset": PRESET, "profile": "main", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
            "maxrate": f"{round(kbps * 1.3)}k", "bufsize": f"{kbps * 2}k", "threads": "0",
            "x264-params": "nal-hrd=none:force-cfr=1"}
        self.audio = None
        if has_audio:
            self.audio = self.container.add_stream("aac", rate=AUDIO_RATE)
            self.audio.bit_rate = AUDIO_KBPS * 1000
            self.audio.layout = "mono"

    def video_frame(self, frame: av.VideoFrame) -> None:
        scaled = frame.reformat(self.width, self.height, format="yuv420p")
        scaled.pts, scaled.time_base = frame.pts, frame.time_base
        for packet in self.video.encode(scaled):
            self.container.mux(packet)

    def audio_frame(self, frame: av.AudioFrame) -> None:
        assert self.audio is not None
        for packet in self.audio.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.video.encode(None):
            self.container.mux(packet)
        if self.audio is not None:
            for packet in self.audio.encode(None):
                self.container.mux(packet)
        self.container.close()


def transcode(source: Path, folder: Path, ladder: tuple[Rung, ...], seconds: float,
              progress: Callable[[float], None] | None = None) -> Ladder:
    """Transcode `source` (already probed: `seconds` long) into `folder`, which must not exist.
    `progress(seconds_done)` is told as it goes. On any failure the folder is removed."""
    folder.mkdir(parents=True)
    try:
        return _transcode(source, folder, ladder, seconds, progress)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _transcode(source: Path, folder: Path, ladder: tuple[Rung, ...], seconds: float,
               progress: Callable[[float], None] | None) -> Ladder:
    with av.open(str(source)) as container:
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        audio = container.streams.audio[0] if container.streams.audio else None
        fps = Fraction(video.average_rate or video.guessed_rate or 25).limit_denominator(1001)
        width, height = video.codec_context.width, video.codec_context.height
        # Rungs above the source are left out (never upscaled); a small source still gets the lowest.
        rungs = [rung for rung in ladder if rung.height <= height] or [ladder[0]]
        outputs = [_Output(folder / rung.name, rung, *rung.size(width, height), fps, audio is not None)
                   for rung in rungs]
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE) if audio else None
        poster_at, poster, last_pts, told = seconds / 10, None, -1, 0.0
        streams = [video] + ([audio] if audio is not None else [])
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    if frame.time is None:
                        continue
                    # Constant frame rate out: each frame's slot on the output clock, duplicates dropped.
                    pts = round(frame.time * fps)
                    if pts <= last_pts:
                        continue
                    last_pts = pts
                    frame.pts, frame.time_base = pts, 1 / fps
                    for output in outputs:
                        output.video_frame(frame)
                    if poster is None and frame.time >= poster_at:
                        poster = frame.to_image()
                    if progress is not None and frame.time - told >= 5:
                        told = frame.time
                        progress(told)
                elif resampler is not None:
                    frame.pts = None  # the resampler and encoder count samples themselves
                    for resampled in resampler.resample(frame):
                        for output in outputs:
                            output.audio_frame(resampled)
        for output in outputs:
            output.close()
    _write_poster(poster, folder / "poster.jpg")
    remux_to_mp4(folder / ladder[0].name / "index.m3u8", folder / "fallback.mp4")
    renditions = tuple(_rendition(folder / o.rung.name, o) for o in outputs)
    _write_master(folder / "master.m3u8", renditions, fps, audio is not None)
    if progress is not None:
        progress(seconds)
    return Ladder(folder, seconds, renditions)


def _rendition(rung_folder: Path, output: _Output) -> Rendition:
    segments = sorted(rung_folder.glob("seg-*.ts"))
    return Rendition(output.rung, output.width, output.height, sum(s.stat().st_size for s in segments), len(segments))


def _write_poster(image: Image.Image | None, path: Path) -> None:
    if image is None:
        return
    if image.width > POSTER_WIDTH:
        image = image.resize((POSTER_WIDTH, round(image.height * POSTER_WIDTH / image.width)))
    image.convert("RGB").save(path, "JPEG", quality=75, optimize=True, progressive=True)


def remux_to_mp4(playlist: Path, path: Path) -> None:
    """A rung's packets, copied (not encoded again) into one MP4 that starts playing early (+faststart)."""
    with av.open(str(playlist)) as source, av.open(str(path), "w", format="mp4",
                                                    options={"movflags": "+faststart"}) as out:
        pairs = {s.index: out.add_stream_from_template(s) for s in source.streams if s.type in ("video", "audio")}
        for packet in source.demux(*[s for s in source.streams if s.index in pairs]):
            if packet.dts is None:
                continue
            packet.stream = pairs[packet.stream.index]
            out.mux(packet)


def _codecs(rendition: Rendition, with_audio: bool) -> str:
    # H.264 main profile; level 3.0 up to 540p, 3.1 for 720p (what these rungs need at 30 fps).
    video = "avc1.4d401e" if rendition.height <= 540 else "avc1.4d401f"
    return f"{video},mp4a.40.2" if with_audio else video


def _write_master(path: Path, renditions: tuple[Rendition, ...], fps: Fraction, with_audio: bool) -> None:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for r in renditions:
        peak = round((r.rung.video_kbps * 1.3 + (AUDIO_KBPS if with_audio else 0)) * 1000)
        average = round((r.rung.video_kbps + (AUDIO_KBPS if with_audio else 0)) * 1000)
        lines.append(f'#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},RESOLUTION={r.width}x{r.height},'
                     f'CODECS="{_codecs(r, with_audio)}",FRAME-RATE={float(fps):.3f},NAME="{r.rung.name}"')
        lines.append(f"{r.rung.name}/index.m3u8")
    path.write_text("\n".join(lines) + "\n")
