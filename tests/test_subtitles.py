"""A lecture's subtitles (video/subtitles.py): what WebVTT is accepted and how it comes out, and each
refusal with its code and its Chinese reason. Pure: no app, no database."""
from __future__ import annotations

import re

import pytest

from video import subtitles
from video.subtitles import MAX_BYTES, MAX_CUES, NotSubtitles, Subtitles, check_subtitles

SAMPLE = ("WEBVTT\n\n1\n00:00:01.000 --> 00:00:04.000\n同学们好。\n\n"
          "2\n00:00:05.500 --> 00:00:09.250\n今天讲安全生产。\n")


def refused(data: bytes, code: str, video_seconds: float | None = None) -> str:
    """The message of the refusal, after checking its code and that it speaks Chinese."""
    with pytest.raises(NotSubtitles) as caught:
        check_subtitles(data, video_seconds)
    assert caught.value.code == code, caught.value.message
    assert re.search(r"[\u4e00-\u9fff]", caught.value.message)
    return caught.value.message


def test_a_plain_file_is_accepted_as_it_is() -> None:
    found = check_subtitles(SAMPLE.encode())
    assert found == Subtitles(SAMPLE, 2, 9.25)


def test_the_returned_count_and_last_end_are_the_latest_cue_not_the_last_written() -> None:
    data = "WEBVTT\n\n00:10.000 --> 01:02:03.456\n长的\n\n00:20.000 --> 00:30.000\n后写的\n\n00:00.000 --> 00:00.001\n"
    found = check_subtitles(data.encode())
    assert (found.cues, found.last_end) == (3, 3723.456)


def test_a_bom_is_stripped() -> None:
    found = check_subtitles(b"\xef\xbb\xbf" + SAMPLE.encode())
    assert found.text == SAMPLE and found.text.startswith("WEBVTT\n")


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_crlf_and_cr_become_lf(newline: str) -> None:
    found = check_subtitles(SAMPLE.replace("\n", newline).encode())
    assert found.text == SAMPLE and "\r" not in found.text


def test_the_output_is_normalized() -> None:
    # Header text and header lines dropped, runs of blank lines (and lines of spaces) folded into one,
    # the timing line written with single spaces, one newline at the end.
    data = "WEBVTT - 第一讲\nKind: captions\n\n\n\n00:01.000-->00:02.000   line:90%    align:start\n你好\n  \n\n\n"
    found = check_subtitles(data.encode())
    assert found.text == "WEBVTT\n\n00:01.000 --> 00:02.000 line:90% align:start\n你好\n"


def test_timings_without_hours_and_with_many_hours() -> None:
    found = check_subtitles(b"WEBVTT\n\n00:01.000 --> 59:59.999\na\n\n100:00:00.000 --> 100:00:01.000\nb\n")
    assert (found.cues, found.last_end) == (2, 360001.0)


def test_cue_settings_are_kept() -> None:
    data = b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000 line:90% position:10% align:start\n<b>\xe5\xad\x97</b>\n"
    assert check_subtitles(data).text == data.decode()


def test_identifiers_and_note_blocks_are_kept() -> None:
    data = ("WEBVTT\n\nNOTE 由字幕组校对\n多行注释\n\nintro\n00:01.000 --> 00:02.000\n开场\n\n"
            "NOTE\n\n00:03.000 --> 00:04.000\n结束\n")
    found = check_subtitles(data.encode())
    assert found.text == data and found.cues == 2


def test_style_is_dropped_and_region_kept() -> None:
    data = ("WEBVTT\n\nSTYLE\n::cue { background: url(https://tracker.example/x.png) }\n\n"
            "REGION\nid:left width:40%\n\n00:01.000 --> 00:02.000 region:left\n左边\n\nSTYLE\n::cue { color: red }\n")
    found = check_subtitles(data.encode())
    assert found.text == "WEBVTT\n\nREGION\nid:left width:40%\n\n00:01.000 --> 00:02.000 region:left\n左边\n"
    assert "url(" not in found.text


def test_cues_without_a_blank_line_between_are_separate_cues() -> None:
    # The browser's parser ends a cue's text at a "-->" line; so does the count.
    data = b"WEBVTT\n00:01.000 --> 00:02.000\none\n00:03.000 --> 00:04.000\ntwo\nid\n"
    found = check_subtitles(data)
    assert found.cues == 2
    assert found.text == "WEBVTT\n\n00:01.000 --> 00:02.000\none\n\n00:03.000 --> 00:04.000\ntwo\nid\n"


def test_a_cue_may_have_no_text() -> None:
    assert check_subtitles(b"WEBVTT\n\n00:01.000 --> 00:02.000\n").cues == 1


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n", b"\xef\xbb\xbf\n"])
def test_empty(data: bytes) -> None:
    refused(data, "empty")


def test_a_big_file_near_the_cap_is_accepted_and_one_over_is_refused() -> None:
    cue = "{:02d}:{:02d}.000 --> {:02d}:{:02d}.500\n" + "这是一条比较长的字幕文本，把文件撑到接近上限。" * 3 + "\n\n"
    count = 0
    body = ["WEBVTT\n\n"]
    size = len(body[0].encode())
    while True:
        minute, second = divmod(count, 60)
        piece = cue.format(minute % 60, second, minute % 60, second)
        if size + len(piece.encode()) > MAX_BYTES - 1:
            break
        body.append(piece)
        size += len(piece.encode())
        count += 1
    data = "".join(body).encode()
    assert MAX_BYTES - 300 < len(data) < MAX_BYTES and count <= MAX_CUES
    assert check_subtitles(data).cues == count
    message = refused(data + b"x" * (MAX_BYTES + 1 - len(data)), "too_big")
    assert "1 MB" in message


def test_gbk_chinese_is_refused_with_a_hint_to_save_as_utf8() -> None:
    message = refused("WEBVTT\n\n00:01.000 --> 00:02.000\n同学们好\n".encode("gbk"), "encoding")
    assert "第 4 行" in message and "GBK" in message and "UTF-8" in message


def test_utf16_is_refused_with_its_name() -> None:
    assert "UTF-16" in refused(SAMPLE.encode("utf-16"), "encoding")


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x0c", "\x7f", "\x85"])
def test_control_characters_are_refused(char: str) -> None:
    message = refused(f"WEBVTT\n\n00:01.000 --> 00:02.000\na{char}b\n".encode(), "control")
    assert "第 4 行" in message


def test_utf16_without_a_bom_is_named() -> None:
    assert "UTF-16" in refused(SAMPLE.encode("utf-16-le"), "encoding")  # the Chinese is invalid UTF-8
    ascii_only = "WEBVTT\n\n00:01.000 --> 00:02.000\nhello\n"
    assert "UTF-16" in refused(ascii_only.encode("utf-16-le"), "control")  # valid UTF-8, full of NULs


@pytest.mark.parametrize("first", ["webvtt", "WEBVTTX", " WEBVTT", "WEBVTT-x", "字幕"])
def test_not_webvtt(first: str) -> None:
    message = refused(f"{first}\n\n00:01.000 --> 00:02.000\na\n".encode(), "not_webvtt")
    assert "WEBVTT" in message and "SRT" not in message


def test_srt_gets_its_own_hint() -> None:
    srt = "1\r\n00:00:01,000 --> 00:00:04,000\r\n同学们好\r\n\r\n2\r\n00:00:05,000 --> 00:00:06,000\r\n再见\r\n"
    message = refused(srt.encode(), "not_webvtt")
    assert "SRT" in message and "WebVTT" in message


@pytest.mark.parametrize(("timing", "hint"), [
    ("00:00:01.000 --> 00:00:02.0000", "格式不对"),  # four millisecond digits
    ("00:00:01.00 --> 00:00:02.000", "格式不对"),  # two
    ("00:60.000 --> 01:00.000", "格式不对"),  # minute 60 written as seconds
    ("00:00:01.000 --> 00:60:00.000", "格式不对"),
    ("0:00:01.000 --> 0:00:02.000", "格式不对"),  # one-digit hours
    ("00:00:01.000 --> 00:00:02.000line:90%", "格式不对"),  # settings must be spaced off
    ("00:00:01.000 -> 00:00:02.000 -->", "格式不对"),
    ("00:00:01,000 --> 00:00:02,000", "逗号"),  # SRT's comma under a WEBVTT header
    ("00:01,000 --> 00:02,000", "逗号"),
    ("00:00:02.000 --> 00:00:02.000", "必须晚于"),
    ("00:00:03.000 --> 00:00:02.000", "必须晚于"),
])
def test_a_bad_timing_line_is_refused_with_its_line(timing: str, hint: str) -> None:
    message = refused(f"WEBVTT\n\n00:00.000 --> 00:00.500\nok\n\n{timing}\n文本\n".encode(), "timing")
    assert "第 6 行" in message and hint in message


def test_text_outside_any_cue_is_refused() -> None:
    # A blank line inside a cue: the browser would drop the second paragraph without a word.
    data = "WEBVTT\n\n00:01.000 --> 00:02.000\n第一段\n\n第二段\n".encode()
    message = refused(data, "timing")
    assert "第 6 行" in message and "空行" in message


def test_a_cue_after_the_video_is_refused() -> None:
    data = b"WEBVTT\n\n00:01.000 --> 00:02.000\na\n\n00:00:11.500 --> 00:00:12.000\nb\n"
    assert check_subtitles(data, video_seconds=10.5).cues == 2  # within the one-second slack
    assert check_subtitles(data).cues == 2
    message = refused(data, "beyond_video", video_seconds=10.4)
    assert "第 6 行" in message and "00:00:10" in message


@pytest.mark.parametrize("data", [b"WEBVTT\n", b"WEBVTT - title\n\nNOTE nothing yet\n\n",
                                  b"WEBVTT\n\nSTYLE\n::cue { color: red }\n"])
def test_no_cues(data: bytes) -> None:
    refused(data, "no_cues")


def cue_lines(n: int) -> bytes:
    return ("WEBVTT\n\n" + "".join(f"{i // 60 % 60:02d}:{i % 60:02d}.000 --> {i // 60 % 60:02d}:{i % 60:02d}.500\n\n"
                                    for i in range(n))).encode()


def test_too_many_cues() -> None:
    refused(cue_lines(MAX_CUES + 1), "too_many")


def test_exactly_the_cap_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    # The boundary on a small cap: parsing 20 000 cues once (above) is enough for the run's time.
    monkeypatch.setattr(subtitles, "MAX_CUES", 3)
    assert check_subtitles(cue_lines(3)).cues == 3
    refused(cue_lines(4), "too_many")
