"""Probing and transcoding a lecture (video/): what is refused before anything is queued, and the HLS
ladder that comes out (aligned keyframes, the rungs' sizes and rates, poster, MP4 fallback)."""
from __future__ import annotations

from pathlib import Path

import av
import pytest

from content.videos import make_lecture
from video.probe import NotALecture, probe
from video.transcode import DEFAULT_LADDER, POSTER_WIDTH, parse_ladder, transcode

LADDER = parse_ladder(DEFAULT_LADDER)


@pytest.fixture(scope="module")
def lecture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lecture(tmp_path_factory.mktemp("lecture") / "lecture.mp4", seconds=14, width=1280, height=720)


def test_a_lecture_is_probed(lecture: Path) -> None:
    found = probe(lecture)
    assert (found.width, found.height, found.video_codec, found.audio_codec) == (1280, 720, "h264", "aac")
    assert 13.5 <= found.seconds <= 14.5 and found.fps == 25 and found.size_bytes == lecture.stat().st_size


def test_hostile_files_are_refused_with_a_reason(lecture: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("这不是视频\n" * 1000)
    truncated = tmp_path / "cut.mp4"
    data = lecture.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # an upload that broke off halfway
    audio_only = tmp_path / "voice.m4a"
    with av.open(str(lecture)) as source, av.open(str(audio_only), "w", format="mp4") as out:
        stream = out.add_stream_from_template(source.streams.audio[0])
        for packet in source.demux(source.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    short = make_lecture(tmp_path / "short.mp4", seconds=3, width=320, height=180, audio=False)
    banner = _plain_clip(tmp_path / "banner.mp4", 3856, 64, seconds=11)  # wider than 4K
    for path, code in ((empty, "empty"), (text, "not_video"), (truncated, "truncated"), (audio_only, "no_video"),
                       (short, "duration"), (banner, "resolution")):
        with pytest.raises(NotALecture) as refused:
            probe(path)
        assert refused.value.code == code, path.name
        assert any("\u4e00" <= c <= "\u9fff" for c in refused.value.message)  # a reason staff can read


def test_the_ladder(lecture: Path, tmp_path: Path) -> None:
    told: list[float] = []
    ladder = transcode(lecture, tmp_path / "out", LADDER, 14.0, told.append)
    assert [(r.rung.name, r.width, r.height) for r in ladder.renditions] == [
        ("360p", 640, 360), ("540p", 960, 540), ("720p", 1280, 720)]
    assert told[-1] == 14.0 and told == sorted(told)
    master = (tmp_path / "out" / "master.m3u8").read_text()
    assert master.count("#EXT-X-STREAM-INF") == 3 and "RESOLUTION=640x360" in master and 'mp4a.40.2' in master
    boundaries = []
    for rendition in ladder.renditions:
        folder = tmp_path / "out" / rendition.rung.name
        playlist = (folder / "index.m3u8").read_text()
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist and "#EXT-X-ENDLIST" in playlist
        durations = [float(line.split(":")[1].rstrip(",")) for line in playlist.splitlines()
                     if line.startswith("#EXTINF")]
        assert rendition.segments == len(durations) and all(d <= 4.5 for d in durations[:-1])
        boundaries.append([round(sum(durations[:i]), 2) for i in range(len(durations))])
        # Each segment starts on a keyframe.
        for segment in sorted(folder.glob("seg-*.ts")):
            with av.open(str(segment)) as part:
                first = next(p for p in part.demux(part.streams.video[0]) if p.size)
                assert first.is_keyframe, segment
        bits = rendition.bytes * 8 / 14.0 / 1000
        assert bits < rendition.rung.video_kbps * 1.6 + 100, (rendition.rung.name, bits)
    assert boundaries[0] == boundaries[1] == boundaries[2]  # a player may switch at any boundary
    with av.open(str(tmp_path / "out" / "fallback.mp4")) as fallback:
        assert fallback.streams.video[0].codec_context.height == 360 and fallback.streams.audio
        assert 13.5 <= fallback.duration / av.time_base <= 14.6
    with av.open(str(tmp_path / "out" / "poster.jpg")) as poster:
        assert poster.streams.video[0].codec_context.width == POSTER_WIDTH == 640  # a phone-sized poster


def test_a_failed_transcode_leaves_nothing_behind(tmp_path: Path, lecture: Path) -> None:
    """A transcode that breaks off half-way (here: the worker is told to stop at 5 s) removes its folder:
    there is never half a ladder to publish."""
    class Stopped(RuntimeError):
        pass

    def stop_at_five(seconds: float) -> None:
        if seconds >= 5:
            raise Stopped

    out = tmp_path / "out"
    with pytest.raises(Stopped):
        transcode(lecture, out, LADDER, 14.0, stop_at_five)
    assert not out.exists()


def _plain_clip(path: Path, width: int, height: int, seconds: int, fps: int = 1) -> Path:
    from PIL import Image

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(seconds * fps):
            frame = av.VideoFrame.from_image(Image.new("RGB", (width, height), (20, 60, 80 + index)))
            frame.pts = index
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
