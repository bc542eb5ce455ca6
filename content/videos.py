"""Demo topic videos: small H.264 MP4 title cards with a running timer, generated from the catalog."""
from __future__ import annotations

import math
import os
import re
import tempfile
import tomllib
from array import array
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
from PIL import Image, ImageDraw, ImageFont

FONT_PATH = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
DEMO_PREFIX = "demo:"
DEMO_NAME = re.compile(r"[a-z0-9-]+")

BACKGROUND = (22, 58, 74)
PANEL = (30, 78, 98)
TEXT = (245, 245, 240)
MUTED = (170, 200, 205)
BAR_TRACK = (60, 96, 110)
BAR_FILL = (242, 176, 60)

# x264 settings. One keyframe a second so a resume or a seek lands within a second of the
# asked position. Main profile, level 3.0: every phone browser (and WeChat's) decodes it.
# One thread plus bitexact flags make the same inputs give the same bytes on every run.
ENCODER_OPTIONS = {
    "preset": "medium",
    "crf": "30",
    "profile": "main",
    "level": "3.0",
    "threads": "1",
}
# +faststart moves the moov atom before mdat, so a phone starts playing before the download ends;
# +bitexact leaves the FFmpeg version and dates out of the file.
MUXER_OPTIONS = {"movflags": "+faststart", "fflags": "+bitexact"}


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont:
    # Index 0 of the collection is WenQuanYi Zen Hei (1 and 2 are its Mono and Sharp faces).
    return ImageFont.truetype(FONT_PATH, size, index=0)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    """Break `text` into lines no wider than `max_width`, character by character (Chinese has no
    spaces), with lines of even length: the narrowest width that needs no more lines than
    `max_width` does, so a long title never ends on one orphaned character."""

    def greedy(limit: int) -> list[str]:
        lines: list[str] = []
        for paragraph in text.splitlines() or [""]:
            line = ""
            for char in paragraph:
                if line and draw.textlength(line + char, font=font) > limit:
                    lines.append(line)
                    line = char
                else:
                    line += char
            lines.append(line)
        return lines

    best = greedy(max_width)
    low, high = 1, max_width
    while low < high:
        middle = (low + high) // 2
        if len(greedy(middle)) <= len(best):
            high = middle
        else:
            low = middle + 1
    return greedy(high)


def _clock(seconds: int) -> str:
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def _title_card(title: str, subtitle: str, width: int, height: int) -> Image.Image:
    """The static part of every frame: title and subtitle centred above the timer area."""
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    margin = width // 16
    draw.rectangle((margin // 2, margin // 2, width - margin // 2, height * 3 // 4), fill=PANEL)
    title_font = _font(max(14, height // 11))
    subtitle_font = _font(max(11, height // 20))
    title_lines = _wrap(draw, title, title_font, width - 2 * margin)[:3]
    subtitle_lines = _wrap(draw, subtitle, subtitle_font, width - 2 * margin)[:2]
    title_step = title_font.size * 13 // 10
    subtitle_step = subtitle_font.size * 13 // 10
    block = len(title_lines) * title_step + subtitle_font.size // 2 + len(subtitle_lines) * subtitle_step
    y = (height * 3 // 4 + margin // 2 - block) // 2
    for line in title_lines:
        draw.text((width // 2, y), line, font=title_font, fill=TEXT, anchor="mt")
        y += title_step
    y += subtitle_font.size // 2
    for line in subtitle_lines:
        draw.text((width // 2, y), line, font=subtitle_font, fill=MUTED, anchor="mt")
        y += subtitle_step
    return image


def _frame(card: Image.Image, elapsed: float, seconds: int) -> Image.Image:
    """One frame: the card plus the playback position as text and as a bar."""
    image = card.copy()
    draw = ImageDraw.Draw(image)
    width, height = image.size
    margin = width // 16
    font = _font(max(12, height // 16))
    label = f"{_clock(int(elapsed))} / {_clock(seconds)}"
    draw.text((width // 2, height * 4 // 5), label, font=font, fill=TEXT, anchor="mt")
    top = height * 11 // 12 - 4
    bottom = top + max(6, height // 45)
    draw.rectangle((margin, top, width - margin, bottom), fill=BAR_TRACK)
    filled = margin + round((width - 2 * margin) * min(1.0, elapsed / seconds))
    if filled > margin:
        draw.rectangle((margin, top, filled, bottom), fill=BAR_FILL)
    return image


def make_demo_clip(path: Path, *, title: str, subtitle: str, seconds: int,
                   width: int = 640, height: int = 360, fps: int = 12) -> Path:
    """Write a `seconds`-long H.264 MP4 (yuv420p, moov first) showing a title card and a running timer.

    `title` (up to three lines) and `subtitle` (up to two) wrap to the width; a newline forces a break.
    The same arguments give the same bytes.
    """
    path = Path(path)
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    if width % 2 or height % 2 or width < 64 or height < 64:
        raise ValueError("width and height must be even and at least 64 (yuv420p halves chroma)")
    if fps <= 0:
        raise ValueError("fps must be positive")
    path.parent.mkdir(parents=True, exist_ok=True)
    card = _title_card(title, subtitle, width, height)
    # Written beside the target and renamed into place: a reader (or a re-run of
    # ensure_demo_clips) never sees half a file under the final name.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".mp4.part", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp_name, mode="w", format="mp4", options=MUXER_OPTIONS) as container:
            stream = container.add_stream("libx264", rate=fps, options=ENCODER_OPTIONS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            # Frames count in 1/fps; kept apart from stream.time_base, which the MP4 muxer
            # changes (to 1/12288) when it writes the header.
            frame_time_base = Fraction(1, fps)
            stream.time_base = frame_time_base
            stream.codec_context.gop_size = fps
            stream.codec_context.flags |= av.codec.context.Flags.bitexact
            previous: tuple[int, int] | None = None
            video_frame: av.VideoFrame | None = None
            for index in range(seconds * fps):
                elapsed = index / fps
                # Frames only differ when the label or the bar's pixel edge moves; reuse the rest.
                key = (int(elapsed), round((width - 2 * (width // 16)) * elapsed / seconds))
                if key != previous or video_frame is None:
                    video_frame = av.VideoFrame.from_image(_frame(card, elapsed, seconds)).reformat(
                        format="yuv420p")
                    previous = key
                video_frame.pts = index
                video_frame.time_base = frame_time_base
                container.mux(stream.encode(video_frame))
            container.mux(stream.encode(None))
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def demo_name(url: str) -> str | None:
    """The clip name of a "demo:<name>" video url, None for any other url; a malformed name raises."""
    if not url.startswith(DEMO_PREFIX):
        return None
    name = url[len(DEMO_PREFIX):]
    if not DEMO_NAME.fullmatch(name):
        raise ValueError(f"demo video name must match [a-z0-9-]+: {url!r}")
    return name


def ensure_demo_clips(catalog_dir: Path, out_dir: Path) -> list[Path]:
    """Create `out_dir/<name>.mp4` for every "demo:<name>" topic video of the catalog that lacks one.

    Returns the clips this call created, in catalog order (so a re-run returns []). Existing
    files are left alone: a re-run is fast and rewrites nothing. A name used by two topics
    is generated once, from the first. Files are renamed into place when complete, so
    concurrent runs (two hosts starting) at worst render a clip twice, never serve half of one.
    """
    out_dir = Path(out_dir)
    created: list[Path] = []
    seen: set[str] = set()
    for course_file in sorted(Path(catalog_dir).glob("*.toml")):
        with course_file.open("rb") as fh:
            data = tomllib.load(fh)
        course_title = str(data.get("course", {}).get("title", ""))
        for topic in data.get("topics", []):
            video = topic.get("video") or {}
            where = f"{course_file.name}: topic {topic.get('code')!r}"
            try:
                name = demo_name(str(video.get("url", "")))
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            if name is None or name in seen:
                continue
            seen.add(name)
            seconds = video.get("seconds")
            if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
                raise ValueError(f"{where}: video seconds must be a positive whole number, got {seconds!r}")
            target = out_dir / f"{name}.mp4"
            if not target.exists():
                make_demo_clip(target, title=f"{course_title}\n{topic.get('title', '')}",
                               subtitle=f"专题 {topic.get('code', name)} · 演示视频", seconds=seconds)
                created.append(target)
    return created


def make_lecture(path: Path, *, seconds: int, width: int = 1280, height: int = 720, fps: int = 25,
                 audio: bool = True, title: str = "心理委员培训 · 示例讲座") -> Path:
    """A lecture-like MP4 for tests and benches: a slide that changes every 20 s, a moving pointer and
    a running clock (motion the encoder must follow, like a speaker's slides), and a voice-band tone.
    Encoded fast and at a high rate: it stands for a camera's or a screen recorder's file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    slides = [_title_card(f"{title}\n第 {n + 1} 页", "讲座内容示例", width, height) for n in range(4)]
    font = _font(max(14, height // 18))
    rate = 16000
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "18"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=rate) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for index in range(seconds * fps):
            t = index / fps
            image = slides[int(t // 20) % len(slides)].copy()
            draw = ImageDraw.Draw(image)
            x = int((width - 40) * (0.5 + 0.45 * math.sin(t * 0.7)))
            y = int((height - 40) * (0.5 + 0.4 * math.cos(t * 0.5)))
            draw.ellipse((x, y, x + 40, y + 40), fill=BAR_FILL)
            draw.text((width // 30, height - height // 10), f"{int(t // 60):02d}:{t % 60:05.2f}", fill=TEXT, font=font)
            frame = av.VideoFrame.from_image(image)
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
            if sound is not None and index % fps == 0:  # one second of tone per second of picture
                samples = array("h", (int(6000 * math.sin(2 * math.pi * (220 + 40 * math.sin(t)) * (s / rate)))
                                      for s in range(rate)))
                chunk = av.AudioFrame(format="s16", layout="mono", samples=rate)
                chunk.planes[0].update(samples.tobytes())
                chunk.sample_rate, chunk.pts = rate, int(t * rate)
                for packet in sound.encode(chunk):
                    container.mux(packet)
        for stream in (video, sound):
            if stream is not None:
                for packet in stream.encode(None):
                    container.mux(packet)
    return path
