"""Subtitles for a lecture: an uploaded WebVTT file checked and normalized, or refused with a reason."""
from __future__ import annotations

import re
from dataclasses import dataclass

# What a subtitle file may be. A lecture of 4 hours with a cue every second is about 15 000 cues
# and well under 1 MiB; anything larger is the wrong file, not a longer lecture.
MAX_BYTES = 1024 * 1024
MAX_CUES = 20000
# A cue may start a little after the video's last frame: the probed duration and the subtitler's
# clock round differently.
VIDEO_SLACK_SECONDS = 1.0

# The syntax of the WebVTT spec (hours two or more digits, minutes and seconds 00-59, exactly three
# millisecond digits). The browser's parser also takes no space around "-->"; so do we, and the
# timing line is written back with the spaces the syntax asks for. ASCII: a full-width "０" is no digit.
_STAMP = r"(?:\d{2,}:)?[0-5]\d:[0-5]\d\.\d{3}"
_TIMING = re.compile(rf"[ \t]*(?P<start>{_STAMP})[ \t]*-->[ \t]*(?P<end>{_STAMP})(?:[ \t]+(?P<settings>.*?))?[ \t]*",
                     re.ASCII)
_HEADER = re.compile(r"WEBVTT(?:[ \t].*)?")
_NOTE = re.compile(r"NOTE(?:[ \t].*)?")
_STYLE_OR_REGION = re.compile(r"(STYLE|REGION)[ \t]*")
# What a subtitle file converted by hand often still has: the comma of SRT before the milliseconds.
_SRT_STAMP = re.compile(r"\d{2}:\d{2},\d{3}", re.ASCII)
# C0 controls but tab, LF and CR; DEL; C1 controls. None belongs in text a person typed: they mean a
# binary file, UTF-16 read as UTF-8 (NULs), or a file decoded with the wrong code page (C1).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class NotSubtitles(ValueError):
    """The file cannot be a lecture's subtitles; `message` says why, in Chinese, for the staff member.

    Codes: empty, too_big, encoding (not UTF-8), control (a control character: binary or UTF-16),
    not_webvtt (SRT gets its own hint), timing (a timing line that does not parse, end not after
    start, or text outside any cue), beyond_video, no_cues, too_many."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Subtitles:
    text: str  # normalized WebVTT: LF line endings, starts with "WEBVTT\n", ends with one "\n"
    cues: int
    last_end: float  # seconds: when the latest cue ends


def check_subtitles(data: bytes, video_seconds: float | None = None) -> Subtitles:
    """The uploaded `data` as WebVTT the player's <track> can take, or NotSubtitles saying what is
    wrong. With `video_seconds`, a cue that starts after the video has ended is refused too (the
    subtitles of another lecture)."""
    if not data:
        raise NotSubtitles("empty", "字幕文件是空的（0 字节），请重新选择 .vtt 字幕文件。")
    if len(data) > MAX_BYTES:
        raise NotSubtitles("too_big", "字幕文件超过 1 MB，请检查是否选错了文件。")
    text = _decode(data)
    # CRLF (Windows) and CR (old Mac) both end a line; from here on, only LF does.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise NotSubtitles("empty", "字幕文件里只有空白，没有内容，请重新选择 .vtt 字幕文件。")
    control = _CONTROL.search(text)
    if control:
        line = text.count("\n", 0, control.start()) + 1
        hint = "可能是 UTF-16 编码（记事本的“Unicode”），请另存为 UTF-8" if control.group() == "\x00" else \
            "这不是纯文本字幕文件"
        raise NotSubtitles("control", f"第 {line} 行含有不可见的控制字符（U+{ord(control.group()):04X}）：{hint}。")
    lines = text.split("\n")
    if not _HEADER.fullmatch(lines[0]):
        raise _not_webvtt(lines)
    return _parse(lines, video_seconds)


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise NotSubtitles("encoding", "字幕文件是 UTF-16 编码（记事本的“Unicode”），请另存为 UTF-8 编码后再上传。")
    try:
        # utf-8-sig: a BOM (what Windows editors put before UTF-8) is accepted and dropped.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if b"\x00" in data:
            # Chinese in UTF-16 without its BOM: invalid as UTF-8, and NULs between the ASCII.
            raise NotSubtitles("encoding", "字幕文件像是 UTF-16 编码（记事本的“Unicode”），"
                                           "请另存为 UTF-8 编码后再上传。") from None
        line = data[: error.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        raise NotSubtitles("encoding", f"字幕文件不是 UTF-8 编码（第 {line} 行起）：中文字幕常见的是 "
                                       "GBK 编码，请用文本编辑器“另存为”UTF-8 编码后再上传。") from None


def _not_webvtt(lines: list[str]) -> NotSubtitles:
    first = [line for line in lines if line.strip()][:2]
    if len(first) == 2 and first[0].strip().isascii() and first[0].strip().isdigit() and "-->" in first[1] \
            and _SRT_STAMP.search(first[1]):
        return NotSubtitles("not_webvtt", "这是 SRT 格式的字幕，不是 WebVTT：请先用字幕工具把 SRT 转换为 WebVTT"
                                          "（.vtt）再上传。")
    seen = f"“{_clip(lines[0])}”" if lines[0].strip() else "空行"
    return NotSubtitles("not_webvtt", f"WebVTT 字幕的第 1 行必须是“WEBVTT”，这个文件的第 1 行是{seen}。"
                                      "请上传 .vtt 格式的字幕。")


def _parse(lines: list[str], video_seconds: float | None) -> Subtitles:
    blocks = _blocks(lines)
    out: list[list[str]] = []
    cues, last_end = 0, 0.0
    for block in blocks:
        first_line, first = block[0]
        timed = 0 if "-->" in first else 1 if len(block) > 1 and "-->" in block[1][1] else None
        if timed is None:
            if _NOTE.fullmatch(first):
                out.append([line for _, line in block])
                continue
            kind = _STYLE_OR_REGION.fullmatch(first)
            if kind:
                # STYLE is dropped: ::cue CSS may load url()s, which would tell a third party who
                # watches which lecture; the browser's default look is the one we want anyway.
                # REGION (geometry only) is kept where the browser honours it, before the first cue;
                # after a cue the browser ignores either, so they are dropped unread.
                if kind.group(1) == "REGION" and cues == 0:
                    out.append([line for _, line in block])
                continue
            # The browser drops such a block without a word; a cue's second paragraph (a blank
            # line inside a cue) or a mistyped timing line would vanish from the screen unnoticed.
            raise NotSubtitles("timing", f"第 {first_line} 行：“{_clip(first)}”不属于任何字幕——前面缺少时间轴行"
                                         "（如 00:00:01.000 --> 00:00:04.000）。注意字幕文本中间不能有空行。")
        line_no, timing = block[timed]
        start, end, settings, stamps = _timing(line_no, timing)
        if video_seconds is not None and start > video_seconds + VIDEO_SLACK_SECONDS:
            raise NotSubtitles("beyond_video", f"第 {line_no} 行：这条字幕从 {stamps[0]} 开始，但视频只有 "
                                               f"{_clock(video_seconds)} 长。字幕与视频对不上，请检查是否选错了文件。")
        cues += 1
        if cues > MAX_CUES:
            raise NotSubtitles("too_many", f"字幕超过 {MAX_CUES} 条的上限，请检查文件或拆分后再上传。")
        last_end = max(last_end, end)
        timing_line = f"{stamps[0]} --> {stamps[1]}" + (f" {settings}" if settings else "")
        out.append([line for _, line in block[:timed]] + [timing_line] + [line for _, line in block[timed + 1:]])
    if cues == 0:
        raise NotSubtitles("no_cues", "文件里没有任何字幕（没有“开始时间 --> 结束时间”的字幕段）。")
    # The header is written as a bare "WEBVTT": the text after it and any header lines (Kind:,
    # Language:) are comments to the browser, shown nowhere.
    return Subtitles("WEBVTT\n\n" + "\n\n".join("\n".join(block) for block in out) + "\n", cues, last_end)


def _blocks(lines: list[str]) -> list[list[tuple[int, str]]]:
    """The blocks after the header, as (line number, line) pairs, split the way the browser's
    parser splits them: at blank lines, and before any "-->" line that is not a cue's first line or
    the line after its identifier (a cue followed by the next without a blank line is two cues)."""
    i = 1
    # The header runs to the first blank line; a "-->" line ends it early (the browser's rule).
    while i < len(lines) and lines[i].strip() and "-->" not in lines[i]:
        i += 1
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for number, line in enumerate(lines[i:], start=i + 1):
        # A line of spaces looks blank in every editor, so it is taken as blank.
        if not line.strip():
            if current:
                blocks.append(current)
                current = []
            continue
        if "-->" in line and current and not (len(current) == 1 and "-->" not in current[0][1]):
            blocks.append(current)
            current = []
        current.append((number, line))
    if current:
        blocks.append(current)
    return blocks


def _timing(line_no: int, line: str) -> tuple[float, float, str, tuple[str, str]]:
    """(start, end, settings, the two timestamps as written) of a cue's timing line."""
    found = _TIMING.fullmatch(line)
    if not found:
        if _SRT_STAMP.search(line):
            raise NotSubtitles("timing", f"第 {line_no} 行：时间“{_clip(line)}”中毫秒前应为小数点“.”，不是逗号“,”"
                                         "（逗号是 SRT 的写法），例如 00:00:01.000 --> 00:00:04.000。")
        raise NotSubtitles("timing", f"第 {line_no} 行：时间轴“{_clip(line)}”格式不对，应为“00:00:01.000 --> "
                                     "00:00:04.000”（时:分:秒.毫秒，分和秒为 00–59，毫秒为 3 位；小时可省略）。")
    start, end = _seconds(found["start"]), _seconds(found["end"])
    if end <= start:
        raise NotSubtitles("timing", f"第 {line_no} 行：结束时间 {found['end']} 必须晚于开始时间 {found['start']}。")
    # Settings (line:90% position:10% align:start …) are the browser's to read; unknown ones it
    # ignores, so they are kept as written, one space apart.
    return start, end, " ".join((found["settings"] or "").split()), (found["start"], found["end"])


def _seconds(stamp: str) -> float:
    clock, millis = stamp.split(".")
    total = 0
    for part in clock.split(":"):
        total = total * 60 + int(part)
    # Whole milliseconds summed as integers: 0.1 + 0.2 drift stays out of last_end.
    return (total * 1000 + int(millis)) / 1000


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _clip(line: str, limit: int = 40) -> str:
    line = line.strip()
    return line if len(line) <= limit else line[:limit] + "…"
