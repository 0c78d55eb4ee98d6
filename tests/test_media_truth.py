"""Every frame read at time t is the frame a sequential decode shows at t (open GOP, High 4:4:4,
B-frames, MPEG-4 in AVI, MPEG-TS, variable frame rate, edit lists, rotation, parameter sets that change
mid-stream); decode errors are reported, never swallowed; inputs are read as local files, never
fetched; the ffmpeg vqa runs is the one it says (VQA_FFMPEG, PATH, bundled)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from pipelines.errors import MediaError
from pipelines.stages import ffmpeg_bin, seek
from pipelines.stages.media import decode, decode_ranges, extract_audio, probe, read_frame_at, read_frames_at
from pipelines.stages.seek import x264_build
from tests.synth import CODEC_VARIANTS, make_codec_variant

FPS, W = 12.5, 96
VARIANTS = [*CODEC_VARIANTS, "vfr", "edit_list", "rotated", "pps_change"]
EXT = {"mpeg4_avi": ".avi", "mpegts": ".ts"}


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    folder = tmp_path_factory.mktemp("variants")
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            made[kind] = make_codec_variant(folder / f"{kind}{EXT.get(kind, '.mp4')}", kind)
        return made[kind]

    return get


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("kind", VARIANTS)
def test_random_access_shows_what_the_sequential_decode_shows(variant, kind):
    path = str(variant(kind))
    info = probe(path)
    seq = list(decode(path, fps=FPS, width=W, info=info))
    times = [t for t, _ in seq]
    assert len(seq) >= 60 and times == sorted(times)
    shown = {round(t, 6): f for t, f in seq}
    warnings: list[str] = []

    picks = times[3::5]  # one pass for many times (the order given is kept)
    for t, f in zip(picks[::-1], read_frames_at(path, picks[::-1], width=W, info=info, warnings=warnings)):
        assert mad(f, shown[round(t, 6)]) < 0.5, (kind, t)
    for t in picks[1::3]:  # one read per time, as the answer's keyframes are read
        assert mad(read_frame_at(path, t, width=W, info=info, warnings=warnings), shown[round(t, 6)]) < 0.5, (kind, t)
    start = times[len(times) // 2] - 0.03  # the zoom's range decode
    got = list(decode(path, fps=FPS, width=W, info=info, start=start, duration=1.2, warnings=warnings))
    assert [round(t, 6) for t, _ in got] == [round(t, 6) for t in times if start <= t < start + 1.2]
    for t, f in got:
        assert mad(f, shown[round(t, 6)]) < 0.5, (kind, t)

    if kind == "pps_change":  # reads from the keyframe at 4 s decode with the wrong parameter sets
        assert any("gave decode errors" in w and "read again" in w for w in warnings), warnings
    else:
        assert warnings == []


@pytest.mark.parametrize("kind", VARIANTS)
def test_a_zoom_round_read_at_once_gives_each_range_decode(variant, kind, monkeypatch):
    """The zoom's ranges read by one ffmpeg per core (``decode_ranges``) are, time for time and pixel for
    pixel, what a decode of each range gives; only a range the batched read cannot vouch for is read
    again on its own (here: the spliced file's decode errors)."""
    path = str(variant(kind))
    info = probe(path)
    d = info.duration
    ranges = [(0.0, 0.6), (0.21 * d, 0.21 * d + 0.9), (0.5 * d - 0.04, 0.5 * d + 0.5), (0.52 * d, 0.52 * d + 1.3),
              (0.8 * d, 0.8 * d + 0.2), (d - 0.5, d + 2.0)]  # overlapping, touching the start and the end
    each = [list(decode(path, fps=FPS, width=W, info=info, start=a, duration=max(b - a, 1 / FPS)))
            for a, b in ranges]
    alone = []
    monkeypatch.setattr(seek, "frames_at", lambda *a, **k: alone.append(a[1]) or real_frames_at(*a, **k))
    warnings: list[str] = []
    got = decode_ranges(path, ranges, fps=FPS, width=W, info=info, warnings=warnings)
    assert [[round(t, 6) for t, _ in g] for g in got] == [[round(t, 6) for t, _ in g] for g in each]
    for g, e in zip(got, each):
        assert all(np.array_equal(f, ef) for (_, f), (_, ef) in zip(g, e)), kind
    if kind == "pps_change":
        assert alone and any("read again" in w for w in warnings), (alone, warnings)
    elif kind in SEEK_NOISE:  # a seek logs errors (an open GOP's leading frames): each range is read alone
        assert len(alone) == len(ranges) - 1 and warnings == [], (kind, alone, warnings)
    else:
        assert alone == [] and warnings == [], (kind, alone, warnings)


real_frames_at = seek.frames_at
SEEK_NOISE = {"open_gop", "high444", "rotated", "mpegts"}  # open GOPs: what a seek into them logs


def test_a_frame_held_past_the_lookback_is_read_on_its_own(tmp_path, monkeypatch):
    """A batched read keeps only LOOKBACK seconds before a range; a frame shown for longer (a slide held
    6 s in a variable-rate file) is then not among them, so that range is read on its own, and right."""
    path = tmp_path / "held.mp4"
    expr = "if(lt(N\\,25)\\,N/25\\,if(lt(N\\,26)\\,1\\,7+(N-26)/25))"  # frame 25 shown from 1 s to 7 s
    subprocess.run([ffmpeg_bin.ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                    "-i", "testsrc2=size=160x90:rate=25:duration=4", "-vf", f"setpts='{expr}/TB'",
                    "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "veryfast", "-g", "200",
                    "-pix_fmt", "yuv420p", str(path)], check=True)
    info = probe(str(path))
    ranges = [(5.0, 5.5), (7.5, 8.0)]
    each = [list(decode(str(path), fps=4, width=W, info=info, start=a, duration=b - a)) for a, b in ranges]
    alone = []
    monkeypatch.setattr(seek, "frames_at", lambda *a, **k: alone.append(a[1]) or real_frames_at(*a, **k))
    got = decode_ranges(str(path), ranges, fps=4, width=W, info=info)
    assert [[t for t, _ in g] for g in got] == [[t for t, _ in g] for g in each] == [[5.0, 5.25], [7.5, 7.75]]
    for g, e in zip(got, each):
        assert all(np.array_equal(f, ef) for (_, f), (_, ef) in zip(g, e))
    assert alone == [[5.0, 5.25]]  # the held slide's range alone; the other came from the batched read


def test_x264_build_is_read_from_the_first_sei(variant):
    assert x264_build(str(variant("open_gop"))) >= 100
    assert x264_build(str(variant("mpeg4_avi"))) is None


def test_decode_errors_are_reported_not_swallowed(variant, tmp_path):
    good = variant("bframes")
    data = bytearray(good.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 3000] = bytes((i * 131 + 7) % 256 for i in range(3000))  # damage inside the media data
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    info = probe(str(bad))
    warnings: list[str] = []
    seq = list(decode(str(bad), fps=FPS, width=W, info=info, warnings=warnings))
    assert seq and any("decode error" in w and "damaged.mp4" in w for w in warnings), warnings
    # every time is read; where the damage is, the read says so too
    reads: list[str] = []
    for t, _ in seq[::4]:
        read_frame_at(str(bad), t, width=W, info=info, warnings=reads)
    assert reads and all("damaged.mp4: decode errors" in w for w in reads), reads


def test_three_asks_choose_the_same_keyframes_and_frames(cli, variant, tmp_path):
    video = str(variant("vfr"))
    assert cli("index", video, "--profile", "tiny", "--no-captions").exit_code == 0
    runs = []
    for i in range(3):
        out = tmp_path / f"frames{i}"
        res = cli("ask", video, "What moves?", "--profile", "tiny", "--json", "--seed", "5", "--save-frames", str(out))
        assert res.exit_code == 0, res.stderr
        body = json.loads(res.stdout)
        assert not [t for t in body["trace"] if "media" in t], body["trace"]
        runs.append(([k["t"] for k in body["keyframes"]], [p.read_bytes() for p in sorted(out.iterdir())]))
    assert runs[0][0] and runs[0] == runs[1] == runs[2]


class _Recorder(BaseHTTPRequestHandler):
    requests: list[str] = []
    body = b""

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args):  # quiet
        return


def test_a_local_file_named_like_a_url_is_read_locally(cli, variant, tmp_path, monkeypatch):
    remote = variant("mpeg4_avi")  # what a fetch would get: another video, another length
    _Recorder.requests, _Recorder.body = [], remote.read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        local = tmp_path / "http:" / f"127.0.0.1:{port}" / "video.mp4"
        local.parent.mkdir(parents=True)
        make_codec_variant(local, "open_gop", seconds=2.0)
        monkeypatch.chdir(tmp_path)
        name = f"http:/127.0.0.1:{port}/video.mp4"
        info = probe(name)
        assert abs(info.duration - 2.0) < 0.1  # the local file's, not the served one's (6 s)
        assert len(list(decode(name, fps=5, width=64, info=info))) == 10
        read_frame_at(name, 1.0, width=64, info=info)
        list(decode(name, fps=5, width=64, info=info, start=0.5, duration=0.5))
        extract_audio(name)
        x264_build(name)
        res = cli("index", name, "--profile", "tiny", "--no-captions")
        assert res.exit_code == 0, res.stderr
        assert _Recorder.requests == []
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fresh_choice():
    ffmpeg_bin.ffmpeg_choice.cache_clear()
    yield
    ffmpeg_bin.ffmpeg_choice.cache_clear()


def _bundled() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def test_vqa_ffmpeg_names_the_binary_and_doctor_says_which(cli, fresh_choice, monkeypatch):
    monkeypatch.setenv("VQA_FFMPEG", _bundled())
    choice = ffmpeg_bin.ffmpeg_choice()
    assert choice.path == _bundled() and choice.source == "VQA_FFMPEG"
    printed = subprocess.run([_bundled(), "-version"], capture_output=True, text=True).stdout.split()[2]
    assert choice.version == printed and choice.release and choice.release >= ffmpeg_bin.MIN_VERSION
    res = cli("doctor")
    line = next(ln for ln in res.stdout.splitlines() if "ffmpeg" in ln and "ffprobe" not in ln)
    assert printed in line and "VQA_FFMPEG" in line and _bundled() in line


def test_a_path_ffmpeg_that_does_not_run_is_passed_over(fresh_choice, monkeypatch, tmp_path):
    fake_dir = tmp_path / "bin"
    fake_dir.mkdir()
    (fake_dir / "ffmpeg").symlink_to("/bin/false" if os.path.exists("/bin/false") else "/usr/bin/false")
    monkeypatch.delenv("VQA_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", f"{fake_dir}{os.pathsep}{os.environ['PATH']}")
    choice = ffmpeg_bin.ffmpeg_choice()
    assert choice.path == _bundled() and "does not run" in choice.note


def _release(path: str) -> tuple[int, int] | None:
    return ffmpeg_bin.version_of(path)[1]


def test_a_path_ffmpeg_older_than_the_threaded_one_gives_way_to_the_bundled(fresh_choice, monkeypatch):
    system = shutil.which("ffmpeg", path="/usr/bin:/usr/local/bin:/bin")
    if not system or not (ffmpeg_bin.MIN_VERSION <= (_release(system) or (99, 0)) < ffmpeg_bin.THREADED_VERSION):
        pytest.skip("needs a system ffmpeg from 4.2 to 6.x (Debian 12 has 5.1)")
    if (_release(_bundled()) or (0, 0)) < ffmpeg_bin.THREADED_VERSION:
        pytest.skip("the bundled ffmpeg is older than 7.0")
    monkeypatch.delenv("VQA_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", f"{os.path.dirname(system)}{os.pathsep}{os.environ['PATH']}")
    choice = ffmpeg_bin.ffmpeg_choice()
    assert choice.path == _bundled() and choice.source.startswith("bundled")
    assert system in choice.note and f"VQA_FFMPEG={system}" in choice.note  # says which one it passed over
    monkeypatch.setenv("VQA_FFMPEG", system)  # and the user can still have it
    ffmpeg_bin.ffmpeg_choice.cache_clear()
    assert ffmpeg_bin.ffmpeg_choice().path == system


def test_a_threaded_path_ffmpeg_is_kept(fresh_choice, monkeypatch, tmp_path):
    if (_release(_bundled()) or (0, 0)) < ffmpeg_bin.THREADED_VERSION:
        pytest.skip("the bundled ffmpeg is older than 7.0")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").symlink_to(_bundled())  # a real ffmpeg >= 7.0 on PATH
    monkeypatch.delenv("VQA_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    choice = ffmpeg_bin.ffmpeg_choice()
    assert choice.path == str(bin_dir / "ffmpeg") and choice.source == "PATH" and choice.note == ""


def test_a_missing_vqa_ffmpeg_is_one_line(cli, fresh_choice, monkeypatch, tmp_path, variant):
    monkeypatch.setenv("VQA_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    with pytest.raises(MediaError, match="VQA_FFMPEG names no such file"):
        ffmpeg_bin.ffmpeg_choice()
    res = cli("doctor")
    assert "no-such-ffmpeg" in res.stdout + res.stderr and "Traceback" not in res.stdout + res.stderr


def _scenes(path: Path, **params) -> list:
    from pipelines.stages.segment import SceneParams, SceneSegmenter

    info = probe(str(path))
    seg = SceneSegmenter(SceneParams(**params), source=str(path))
    for t, f in decode(str(path), fps=seg.params.fps, width=384, info=info):
        seg.feed(t, f)
    return seg.finish(info.duration)


@pytest.mark.parametrize("rate,durations", [(25, [2.44, 1.72, 3.08, 2.2]), (30, [2.0333333, 2.5333333, 2.1])])
def test_a_cut_starts_on_the_first_frame_of_the_new_shot(tmp_path, rate, durations):
    """Cuts between the 10 fps analysis samples: each scene starts on its shot's first frame (within one
    frame), not on the next analysed sample."""
    from tests.synth import make_scenes_video

    path = tmp_path / f"cuts{rate}.mp4"
    cuts = make_scenes_video(path, durations, rate=rate, audio=False, labels=False)
    starts = [s.start for s in _scenes(path)[1:]]
    assert len(starts) == len(cuts), (starts, cuts)
    for found, cut in zip(starts, cuts):
        assert abs(found - cut) <= 1.0 / rate + 1e-6, (starts, cuts)
    unrefined = [s.start for s in _scenes(path, refine=False)[1:]]
    assert max(abs(a - b) for a, b in zip(unrefined, cuts)) > 1.0 / rate  # what the analysis grid alone gives


@pytest.mark.parametrize("event", ["flash", "occlusion", "none"])
def test_a_flash_or_an_occlusion_does_not_split_a_shot(tmp_path, event):
    from tests.synth import make_one_shot_video

    path = make_one_shot_video(tmp_path / f"{event}.mp4", event)
    scenes = _scenes(path)
    assert [(round(s.start, 2), round(s.end, 2)) for s in scenes] == [(0.0, 8.0)]


def test_a_faint_cut_in_moving_footage_is_a_cut(tmp_path):
    """Two shots whose backgrounds differ by a grey level or two while a square moves: the detector's
    content score stays under its threshold and the picture is not still, yet the change stands far above
    every change around it (``spike_ratio``): a cut, on the new shot's first frame."""
    from tests.synth import make_box_shots_video

    path = tmp_path / "faint.mp4"
    cuts = make_box_shots_video(path, [(3.04, "0x3c3c3c", "0xd02020"), (3.0, "0x696969", "0xd02020")])
    starts = [s.start for s in _scenes(path)[1:]]
    assert len(starts) == 1 and abs(starts[0] - cuts[0]) <= 0.04 + 1e-6, (starts, cuts)
    assert [s.start for s in _scenes(path, spike_min=float("inf"))[1:]] == []  # detector and still rule alone


def test_a_thing_jumping_across_a_still_picture_is_no_cut(tmp_path):
    """A large square jumping every half second over a frozen picture (like a hand in a video that repeats
    frames): each jump stands far above the nothing around it, but changes a part of the picture
    (``spike_area``), not the whole of it as a cut does."""
    from tests.synth import make_jumping_box_video

    path = make_jumping_box_video(tmp_path / "jumps.mp4")
    cuts = [round(s.start, 2) for s in _scenes(path)[1:]]
    assert cuts == [round(s.start, 2) for s in _scenes(path, spike_min=float("inf"))[1:]]  # the rule adds none
    assert len(cuts) <= 1, cuts
    jumps = [round(s.start, 2) for s in _scenes(path, spike_area=0.0)[1:]]  # without the area test: each jump
    assert len(jumps) >= 8, jumps


def test_a_short_shot_between_two_alike_shots_is_no_flash(tmp_path):
    """A half-second shot between two shots of grey backgrounds: the picture after it is nearer the one
    before it than the short shot is, but still another shot (``flash_back_max``), not the same one coming
    back after a flash; both cuts stay, and the short shot is a scene (a needle a search must see). The
    flash and the occlusion tests above keep the rule's other side."""
    from tests.synth import make_box_shots_video

    path = tmp_path / "short.mp4"
    cuts = make_box_shots_video(path, [(3.04, "0x3c3c3c", "0xd02020"), (0.52, "0x2040d0", "0xe0c020"),
                                       (3.0, "0x8c8c8c", "0xd02020")])
    starts = [s.start for s in _scenes(path)[1:]]
    assert len(starts) == 2 and all(abs(a - b) <= 0.04 + 1e-6 for a, b in zip(starts, cuts)), (starts, cuts)
    assert [s.start for s in _scenes(path, flash_back_max=float("inf"))[1:]] == []  # the relative test alone


def test_a_slide_change_is_a_cut_even_when_little_changes(tmp_path):
    """New text on the same white background (and one line added to a slide) changes ~1% of the
    picture: far below the detectors' thresholds for moving footage, yet a new scene of a lecture."""
    from tests.synth import make_slides_video

    path = tmp_path / "slides.mp4"
    changes = make_slides_video(path, [("Welcome\\n- what we cover", 3.04), ("Second topic\\n- one line", 2.52),
                                       ("Second topic\\n- one line\\n- a line appears", 2.2), ("Questions", 3.0)])
    starts = [s.start for s in _scenes(path)[1:]]
    assert len(starts) == len(changes) and all(abs(a - b) <= 0.04 + 1e-6 for a, b in zip(starts, changes)), (
        starts, changes)
